"""Prediction over an in-memory image of any size, tile by tile with a halo.

Each tile is predicted on itself plus ``halo`` pixels of context on every side
(zeros, i.e. the training mean, beyond the image) and the halo is cropped
off, so tile borders see the same context as tile interiors.
"""

from __future__ import annotations

import numpy as np
import torch

from unet.errors import UNetError
from unet.model import UNet, autocast


def _windows(h: int, w: int, tile: int) -> list[tuple[int, int]]:
    return [(r, c) for r in range(0, h, tile) for c in range(0, w, tile)]


@torch.inference_mode()
def predict_image(
    model: UNet,
    image: np.ndarray,
    device: torch.device,
    tile: int = 512,
    halo: int = 32,
    batch_size: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Class map (uint8) and winning-class probability (float32) of a
    normalised (bands, H, W) image."""
    m = model.config.multiple
    if (tile + 2 * halo) % m:
        raise UNetError(f"tile {tile} + 2 x halo {halo} must be a multiple of {m} for this U-Net")
    bands, h, w = image.shape
    side = tile + 2 * halo
    padded = np.zeros((bands, h + side, w + side), dtype=np.float32)
    padded[:, halo : halo + h, halo : halo + w] = image
    classes = np.empty((h, w), dtype=np.uint8)
    confidence = np.empty((h, w), dtype=np.float32)
    windows = _windows(h, w, tile)
    for start in range(0, len(windows), batch_size):
        group = windows[start : start + batch_size]
        x = np.stack([padded[:, r : r + side, c : c + side] for r, c in group])
        cls, conf = predict_batch(model, x, device, crop=halo)
        for i, (r, c) in enumerate(group):
            th, tw = min(tile, h - r), min(tile, w - c)
            classes[r : r + th, c : c + tw] = cls[i, :th, :tw]
            confidence[r : r + th, c : c + tw] = conf[i, :th, :tw]
    return classes, confidence


@torch.inference_mode()
def predict_batch(
    model: UNet, x: np.ndarray, device: torch.device, crop: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Class (uint8) and winning probability (float32) of a normalised (n, bands, h, w)
    batch, ``crop`` pixels (the halo) cut off every side."""
    model.eval()
    batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    if device.type == "cuda":
        batch = batch.contiguous(memory_format=torch.channels_last)
    with autocast(device):
        logits = model(batch)
    h, w = x.shape[2:]
    probs = torch.softmax(logits.float(), dim=1)[:, :, crop : h - crop, crop : w - crop]
    conf, cls = probs.max(dim=1)
    return cls.to(torch.uint8).cpu().numpy(), conf.cpu().numpy()
