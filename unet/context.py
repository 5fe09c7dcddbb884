"""How far around a pixel a trained U-Net actually looks.

``UNetConfig.receptive_radius`` is what the architecture *can* see (51 px at
depth 3, 107 at depth 4); a trained model's output depends on much less. A
tile's halo must give what it does depend on, or the map changes where tile
borders fall. So the margin is measured on the trained model, once, and kept
in its checkpoint: the model predicts a block of pixels (every alignment
against its pools) from windows with ever wider margins around it, cut as a
run cuts them, until every class probability lies within ``TOLERANCE`` of its
prediction from all it can see. That counts what the window's edge does to
the features inside (zero padding where the neighbours' activations were,
carried far by the deepest levels), which the gradient against the inputs
does not; and it is measured on windows as wide as the model sees
(:func:`window_side`), read as its inputs are: on training chips, narrower,
the far context is padding, and a depth-4 model measured there needed 46 px
where 16 windows of the imagery show 88.

A U-Net is not shift-invariant: max-pools and strided up-convolutions see the
image on a lattice of ``2**depth`` px, and shifting the lattice moves
decisions (measured on the demo model: 0.2% of pixels change class when the
tile windows move by 4 px, whatever the halo). A run therefore feeds the model
windows that start on a lattice fixed in the CRS (:func:`lattice_offset`), which
costs ``2**depth`` px of halo on top of the margin (:func:`halo_needed`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unet.model import UNet, UNetConfig

__all__ = [
    "TOLERANCE", "context_radius", "context_record", "halo_needed", "image_windows",
    "lattice_offset", "recorded_radius", "window_side",
]  # fmt: skip

# A class probability may move this much when the window is cut (half of the
# 1/254 a confidence step is: a confidence then moves by at most 1).
TOLERANCE = 0.5 / 254
METHOD = "truncation"  # what a checkpoint's record says; others (older) are not trusted
_BATCH = 8


def window_side(config: UNetConfig) -> int:
    """Side (px) of the windows the margin is measured on: the block and all the
    model can see around it, on its lattice."""
    m = config.multiple
    return -(-(2 * config.receptive_radius + 4 * m) // m) * m


def context_radius(
    model: UNet, inputs: np.ndarray | None = None, tolerance: float = TOLERANCE, seed: int = 0
) -> int:
    """Least margin (px) around a block of output pixels with which the model, given
    only the block and that margin (a window on its lattice, as a run cuts it),
    predicts every class probability within ``tolerance`` of its prediction with
    all it can see.

    ``inputs``: normalised samples (n, bands, h, w) as the model sees them, best
    :func:`window_side` wide (others are centre-cropped or zero-padded to it);
    without them, standard-normal noise."""
    config = model.config
    m = config.multiple
    side = window_side(config)
    x = _windows(inputs, config, side, seed)
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            full = _probabilities(model, x, param)
            lo, hi = side // 2 - 3 * m // 2, side // 2 + 3 * m // 2  # each phase 9 times
            core = (slice(None), slice(None), slice(lo, hi), slice(lo, hi))
            for k in range(config.receptive_radius // m + 2):
                a, b = (lo // m - k) * m, (-(-hi // m) + k) * m  # the window, on the lattice
                part = _probabilities(model, x[:, :, a:b, a:b], param)
                inner = (slice(None), slice(None), slice(lo - a, hi - a), slice(lo - a, hi - a))
                if float((part[inner] - full[core]).abs().max()) <= tolerance:
                    return min(lo - a, b - hi)
        return config.receptive_radius
    finally:
        model.train(was_training)


def _probabilities(model: UNet, x: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    out = [model(x[k : k + _BATCH].to(param.device, param.dtype)).float().softmax(dim=1).cpu()
           for k in range(0, len(x), _BATCH)]  # fmt: skip
    return torch.cat(out)


def context_record(model: UNet, inputs: np.ndarray | None) -> dict[str, Any]:
    """What a checkpoint keeps under ``extra["context"]``: the radius and how it was
    measured (``inputs``: normalised training samples, as for :func:`context_radius`)."""
    radius = context_radius(model, inputs)
    return {"radius_px": radius, "method": METHOD, "tolerance": TOLERANCE,
            "inputs": 0 if inputs is None else len(inputs)}  # fmt: skip


def image_windows(image: np.ndarray, config: UNetConfig, n: int = 4) -> np.ndarray:
    """``n`` square windows (n, bands, side, side) spread along the diagonal of a
    normalised (bands, h, w) image, :func:`window_side` wide where the image is:
    samples for :func:`context_radius`."""
    side = min(*image.shape[1:], window_side(config))
    rows, cols = (
        np.linspace(0, extent - side, num=n).round().astype(int) for extent in image.shape[1:]
    )
    return np.stack([image[:, r : r + side, c : c + side] for r, c in zip(rows, cols, strict=True)])


def _windows(inputs: np.ndarray | None, config: UNetConfig, side: int, seed: int) -> torch.Tensor:
    if inputs is None:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn((2, config.in_bands, side, side), generator=gen)
    x = np.nan_to_num(np.asarray(inputs, dtype=np.float32))
    out = np.zeros((len(x), config.in_bands, side, side), np.float32)
    h, w = x.shape[2:]
    ch, cw = min(h, side), min(w, side)
    ys, xs, oy, ox = (h - ch) // 2, (w - cw) // 2, (side - ch) // 2, (side - cw) // 2
    out[:, :, oy : oy + ch, ox : ox + cw] = x[:, :, ys : ys + ch, xs : xs + cw]
    return torch.from_numpy(out)


def recorded_radius(config: UNetConfig, extra: dict[str, Any]) -> int:
    """The margin a checkpoint records (``extra["context"]["radius_px"]``); for a
    checkpoint from before it was measured so, the architecture's receptive radius."""
    context = extra.get("context") or {}
    radius = context.get("radius_px")
    if radius is None or context.get("method") != METHOD:
        return config.receptive_radius
    return int(radius)


def halo_needed(config: UNetConfig, radius: int) -> int:
    """The least halo with which every pixel's ``radius`` lies inside the model's
    window once that window is moved onto the lattice (up to 2**depth px)."""
    return radius + config.multiple


def lattice_offset(first_px: tuple[int, int], multiple: int) -> tuple[int, int]:
    """Rows and columns to drop at the top left of a window whose first pixel lies at
    ``first_px`` (row, column counted from the CRS origin, rows southward), so that
    what remains starts on the lattice of ``multiple`` px."""
    return (-first_px[0] % multiple, -first_px[1] % multiple)
