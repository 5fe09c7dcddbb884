"""How far around a pixel a trained U-Net actually looks.

``UNetConfig.receptive_radius`` is what the architecture *can* see (51 px at
depth 3, 107 at depth 4); a trained model draws nearly all of its output from
much closer. A tile's halo must cover what it does draw on, or the map changes
where tile borders fall. So the radius is measured on the trained model, once,
and kept in its checkpoint: the gradient of the winning class's log-probability
at one output pixel, against every input pixel, summed over bands; the radius
is the smallest square around the pixel outside which lies no more than
``SHARE`` of that gradient's mass, at the worst of several input samples and of
the pixel's alignments against the pools.

A U-Net is not shift-invariant: max-pools and strided up-convolutions see the
image on a lattice of ``2**depth`` px, and shifting the lattice moves
decisions (measured on the demo model: 0.2% of pixels change class when the
tile windows move by 4 px, whatever the halo). A run therefore feeds the model
windows that start on a lattice fixed in the CRS (:func:`lattice_offset`), which
costs ``2**depth`` px of halo on top of the radius (:func:`halo_needed`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unet.model import UNet, UNetConfig

__all__ = [
    "SHARE", "context_radius", "context_record", "halo_needed", "lattice_offset", "recorded_radius",
]  # fmt: skip

# Share of the gradient's mass a halo may leave out. Measured on the demo's model:
# a halo of the radius at 1e-3 maps 1,478,656 pixels with 0 to 3 of them changed.
SHARE = 1e-3
_PHASES = 4  # alignments tried per axis (of 2**depth)
_BATCH = 8


def context_radius(
    model: UNet, inputs: np.ndarray | None = None, share: float = SHARE, seed: int = 0
) -> int:
    """Radius (px, Chebyshev) holding all but ``share`` of the output's gradient.

    ``inputs``: normalised samples (n, bands, h, w) as the model sees them, e.g.
    training chips; centre crops (or zero-padded) to the window measured. Without
    them, standard-normal noise (the normalised inputs' distribution, roughly)."""
    config = model.config
    m = config.multiple
    side = -(-(2 * config.receptive_radius + 2 * m) // m) * m
    x = _windows(inputs, config, side, seed)
    step = max(1, m // _PHASES)
    centre = side // 2 - m // 2  # a multiple of m: its phase is 0
    pixels = [(centre + dy, centre + dx) for dy in range(0, m, step) for dx in range(0, m, step)]
    jobs = [(k, p) for k in range(len(x)) for p in pixels]
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        worst = 0
        for start in range(0, len(jobs), _BATCH):
            part = jobs[start : start + _BATCH]
            batch = torch.stack([x[k] for k, _ in part]).to(param.device, param.dtype)
            batch.requires_grad_(True)
            logp = torch.log_softmax(model(batch).float(), dim=1)
            picked = [logp[i, :, y, xx] for i, (_, (y, xx)) in enumerate(part)]
            torch.stack([p[p.argmax()] for p in picked]).sum().backward()
            grads = batch.grad.abs().sum(dim=1).cpu().numpy()  # type: ignore[union-attr]
            for g, (_, pixel) in zip(grads, part, strict=True):
                worst = max(worst, _radius(g, pixel, share))
        return worst
    finally:
        model.train(was_training)


def context_record(model: UNet, inputs: np.ndarray | None) -> dict[str, Any]:
    """What a checkpoint keeps under ``extra["context"]``: the radius and how it was
    measured (``inputs``: normalised training samples, as for :func:`context_radius`)."""
    radius = context_radius(model, inputs)
    return {"radius_px": radius, "share": SHARE, "inputs": 0 if inputs is None else len(inputs)}


def image_windows(image: np.ndarray, n: int = 4) -> np.ndarray:
    """``n`` square windows (n, bands, side, side) spread along the diagonal of a
    normalised (bands, h, w) image: samples for :func:`context_radius`."""
    side = min(*image.shape[1:], 256)
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


def _radius(grad: np.ndarray, pixel: tuple[int, int], share: float) -> int:
    """Smallest r with at most ``share`` of ``grad``'s sum farther than r (Chebyshev)."""
    total = float(grad.sum())
    if total <= 0.0:
        return 0
    yy, xx = np.indices(grad.shape)
    dist = np.maximum(np.abs(yy - pixel[0]), np.abs(xx - pixel[1]))
    mass = np.bincount(dist.ravel(), weights=grad.ravel())
    outside = total - np.cumsum(mass)  # outside[r]: mass farther than r
    return int(np.argmax(outside <= share * total))


def recorded_radius(config: UNetConfig, extra: dict[str, Any]) -> int:
    """The radius a checkpoint records (``extra["context"]["radius_px"]``); for a
    checkpoint from before it was measured, the architecture's receptive radius."""
    context = extra.get("context") or {}
    radius = context.get("radius_px")
    return int(radius) if radius is not None else config.receptive_radius


def halo_needed(config: UNetConfig, radius: int) -> int:
    """The least halo with which every pixel's ``radius`` lies inside the model's
    window once that window is moved onto the lattice (up to 2**depth px)."""
    return radius + config.multiple


def lattice_offset(first_px: tuple[int, int], multiple: int) -> tuple[int, int]:
    """Rows and columns to drop at the top left of a window whose first pixel lies at
    ``first_px`` (row, column counted from the CRS origin, rows southward), so that
    what remains starts on the lattice of ``multiple`` px."""
    return (-first_px[0] % multiple, -first_px[1] % multiple)
