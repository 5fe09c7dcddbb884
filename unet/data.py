"""Training data: an image raster and a label raster on the same grid, split
into a training area and a spatially separate held-out area.

Neighbouring pixels are correlated, so a random pixel split would let the
model be judged on pixels it has effectively seen. The held-out area is a
rectangle; training chips never come within ``gap`` pixels of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from unet.augment import augment, check_augmentation
from unet.errors import UNetError

IGNORE = 255  # label value for "no label" (nodata), ignored by the loss and the metrics


@dataclass(frozen=True)
class LabelledImage:
    """Imagery (bands, H, W) float32 with NaN for no data, labels (H, W) uint8."""

    image: np.ndarray
    labels: np.ndarray
    bands: tuple[str, ...]
    class_names: tuple[str, ...]
    resolution: float
    crs: str
    transform: tuple[float, ...]

    @property
    def valid(self) -> np.ndarray:
        """Pixels with a label and finite input in every band."""
        return (self.labels != IGNORE) & np.isfinite(self.image).all(axis=0)


@dataclass(frozen=True)
class Split:
    """Row/column box (row0, row1, col0, col1) of the held-out area, and the
    gap kept between it and any training chip."""

    holdout: tuple[int, int, int, int]
    gap: int

    def holdout_window(self) -> Window:
        r0, r1, c0, c1 = self.holdout
        return Window(c0, r0, c1 - c0, r1 - r0)

    def touches_holdout(self, row: int, col: int, size: int) -> bool:
        r0, r1, c0, c1 = self.holdout
        g = self.gap
        return row < r1 + g and row + size > r0 - g and col < c1 + g and col + size > c0 - g


def read_labelled_image(
    image_path: str | Path,
    labels_path: str | Path,
    bands: tuple[str, ...],
    class_names: tuple[str, ...],
    units: str = "reflectance",
) -> LabelledImage:
    """Read the named bands and the labels; refuse mismatches with a message
    that names the file and what to change.

    The raster's own scale and offset (GDAL band metadata) are applied, as
    prediction applies a catalog's: training and mapping then see the same
    units. With ``units="reflectance"`` a raster whose values are plainly not
    reflectance (digital numbers) is refused: a model trained on DN maps
    reflectance inputs wrongly, and nothing would say so."""
    with rasterio.open(image_path) as src:
        found = tuple(d or "" for d in src.descriptions)
        if src.count != len(bands):
            raise UNetError(
                f"{image_path} has {src.count} bands {list(found)} but the config asks for "
                f"{len(bands)} bands {list(bands)}: list exactly the image's bands, in order"
            )
        if found != bands and any(found):
            raise UNetError(
                f"{image_path} band names {list(found)} differ from the config's {list(bands)}: "
                "fix the order or names under 'bands'"
            )
        image = src.read(out_dtype="float32", masked=True).filled(np.nan)
        for band, scale, offset in zip(image, src.scales, src.offsets, strict=True):
            if (scale, offset) != (1.0, 0.0):
                band *= np.float32(scale)
                band += np.float32(offset)
        profile = (src.crs, src.transform, src.width, src.height)
    if units == "reflectance":
        _refuse_dn(image, bands, image_path)
    with rasterio.open(labels_path) as src:
        if src.count != 1:
            raise UNetError(f"label raster {labels_path} has {src.count} bands: give one")
        if (src.crs, src.transform, src.width, src.height) != profile:
            raise UNetError(
                f"label raster {labels_path} is not on the image's grid (CRS, transform, size) "
                f"of {image_path}: warp one onto the other first"
            )
        labels = src.read(1)
        label_nodata = src.nodata
    if labels.dtype != np.uint8:
        raise UNetError(f"label raster {labels_path} is {labels.dtype}; labels must be uint8")
    if label_nodata is not None and label_nodata != IGNORE:
        labels = np.where(labels == label_nodata, IGNORE, labels).astype(np.uint8)
    present = np.unique(labels)
    if present.size == 0 or (present == IGNORE).all():
        raise UNetError(f"label raster {labels_path} is empty: every pixel is nodata ({IGNORE})")
    stray = [int(v) for v in present if v != IGNORE and v >= len(class_names)]
    if stray:
        raise UNetError(
            f"label raster {labels_path} holds values {stray} outside the class list "
            f"{dict(enumerate(class_names))}: add those classes to the config or relabel them "
            f"as {IGNORE} (nodata)"
        )
    # A label over missing input cannot be learned or judged.
    labels = np.where(np.isfinite(image).all(axis=0), labels, IGNORE).astype(np.uint8)
    crs, transform, *_ = profile
    return LabelledImage(
        image=image,
        labels=labels,
        bands=bands,
        class_names=class_names,
        resolution=float(abs(transform.a)),
        crs=crs.to_string() if crs else "",
        transform=tuple(transform)[:6],
    )


# Surface reflectance is about 0..1 (bright snow and specular glints reach ~1.5);
# a band whose typical value is beyond this holds digital numbers.
_MAX_REFLECTANCE = 2.0


def _refuse_dn(image: np.ndarray, bands: tuple[str, ...], path: str | Path) -> None:
    for name, band in zip(bands, image, strict=True):
        finite = band[np.isfinite(band)]
        median = float(np.median(finite)) if finite.size else 0.0
        if median > _MAX_REFLECTANCE:
            raise UNetError(
                f"{path} band {name}: values around {median:.5g} (median) are not reflectance "
                "but digital numbers, and the raster states no scale or offset. Give the "
                "raster its scale and offset (e.g. `gdal_edit -scale 0.0001 -offset -0.1` for "
                "Sentinel-2 L2A of baseline 04.00 on), or set units: dn in the training config "
                "to train on DN on purpose (prediction then refuses reflectance inputs)"
            )


def class_names_from_raster(labels_path: str | Path) -> tuple[str, ...] | None:
    """Class names stored in a label raster's ``CLASS_NAMES`` tag, if any."""
    with rasterio.open(labels_path) as src:
        raw = src.tags().get("CLASS_NAMES")
    return tuple(json.loads(raw)) if raw else None


def east_holdout(shape: tuple[int, int], fraction: float, gap: int) -> Split:
    """Hold out the eastern ``fraction`` of the columns."""
    h, w = shape
    c0 = round(w * (1.0 - fraction))
    if not 0 < c0 < w:
        raise UNetError(f"holdout fraction {fraction} leaves no training or no held-out columns")
    return Split(holdout=(0, h, c0, w), gap=gap)


def band_stats(data: LabelledImage, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std over the valid training pixels (never the held-out ones)."""
    mask = data.valid.copy()
    r0, r1, c0, c1 = split.holdout
    g = split.gap
    mask[max(r0 - g, 0) : r1 + g, max(c0 - g, 0) : c1 + g] = False
    if not mask.any():
        raise UNetError("no labelled training pixels outside the held-out area")
    pixels = data.image[:, mask]
    return pixels.mean(axis=1), np.maximum(pixels.std(axis=1), 1e-6)


def normalize(image: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Standardise per band; no-data (NaN) becomes 0, the training mean."""
    out = (image - mean[:, None, None]) / std[:, None, None]
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


class ChipSampler:
    """Random chips from the training area, each turned or flipped by a random
    symmetry of ``augmentation``'s group (see ``unet.augment``)."""

    def __init__(
        self,
        image: np.ndarray,
        labels: np.ndarray,
        split: Split,
        size: int,
        seed: int,
        min_valid: float = 0.25,
        augmentation: str = "d4",
    ) -> None:
        h, w = labels.shape
        if h < size or w < size:
            raise UNetError(f"chip size {size} exceeds the {h}x{w} image: use a smaller chip_size")
        self.image, self.labels, self.split, self.size = image, labels, split, size
        self.rng = np.random.default_rng(seed)
        self.min_valid = min_valid
        self.augmentation = check_augmentation(augmentation)

    def _origin(self) -> tuple[int, int]:
        h, w = self.labels.shape
        for _ in range(10_000):
            r = int(self.rng.integers(0, h - self.size + 1))
            c = int(self.rng.integers(0, w - self.size + 1))
            if self.split.touches_holdout(r, c, self.size):
                continue
            chip = self.labels[r : r + self.size, c : c + self.size]
            if (chip != IGNORE).mean() >= self.min_valid:
                return r, c
        raise UNetError(
            f"found no {self.size}px training chip with >= {self.min_valid:.0%} labelled pixels "
            "outside the held-out area: shrink chip_size or the held-out area"
        )

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(n):
            r, c = self._origin()
            x, y = augment(
                self.image[:, r : r + self.size, c : c + self.size],
                self.labels[r : r + self.size, c : c + self.size],
                self.augmentation,
                self.rng,
            )
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)).long()


def class_weights(labels: np.ndarray, num_classes: int, split: Split) -> torch.Tensor:
    """Inverse square-root frequency over the training area, mean 1; rare classes
    count more without the noise full inverse frequency brings."""
    mask = np.ones(labels.shape, dtype=bool)
    r0, r1, c0, c1 = split.holdout
    mask[r0:r1, c0:c1] = False
    counts = np.bincount(labels[mask & (labels != IGNORE)], minlength=num_classes)[:num_classes]
    return weights_from_counts(counts)


def weights_from_counts(counts: np.ndarray) -> torch.Tensor:
    """Inverse square-root of each class's labelled pixel count, mean 1 over the
    classes present; 0 for an absent class."""
    w = 1.0 / np.sqrt(np.maximum(counts, 1))
    w[counts == 0] = 0.0
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)
