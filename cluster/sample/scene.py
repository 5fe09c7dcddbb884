"""A seeded synthetic region where spatial structure, not colour, decides the class.

Tests, the demo and the benchmarks all map this region, so it is built to
exercise the reason statemap exists: two forest classes ("broadleaf" with
large crowns, "conifer" with small dense crowns) draw every pixel from the
*same* crown/gap spectral mixture, in the same proportion, and differ only in
texture. A per-pixel classifier cannot separate them; a U-Net can. Water and
open land are spectrally distinct, as in real imagery.

Everything here is pure numpy and deterministic for a seed; writing rasters
and catalogs is in ``cluster.sample.catalog``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from scipy import ndimage
from scipy.spatial import cKDTree

from cluster.errors import ClusterError

BANDS: tuple[str, ...] = ("blue", "green", "red", "nir")
CLASS_NAMES: tuple[str, ...] = ("water", "open land", "broadleaf", "conifer")
CLASS_COLORS: tuple[str, ...] = ("#2c7fb8", "#e9d66b", "#41ab5d", "#00441b")
NODATA_CLASS = 255

# Mean surface reflectance per band (blue, green, red, nir).
_WATER = np.array([0.060, 0.050, 0.030, 0.020], dtype=np.float32)
_OPEN = np.array([0.070, 0.100, 0.120, 0.280], dtype=np.float32)
_CROWN = np.array([0.030, 0.065, 0.035, 0.400], dtype=np.float32)
_GAP = np.array([0.025, 0.045, 0.035, 0.180], dtype=np.float32)
_CLASS_SHARE = np.array([0.12, 0.28, 0.30, 0.30])
# Texture scale (gaussian sigma, px) of the crown pattern of each forest class.
_CROWN_SIGMA = {2: 2.6, 3: 0.8}


@dataclass(frozen=True)
class SampleSpec:
    """Size and place of a sample region; ``seed`` fixes every random choice."""

    seed: int = 0
    width: int = 1024
    height: int = 1024
    resolution: float = 10.0
    origin: tuple[float, float] = (400_000.0, 5_560_000.0)  # upper-left, metres
    crs: str = "EPSG:25832"
    stand_px: int = 112  # typical stand (forest parcel, field, lake) diameter

    @property
    def transform(self) -> Affine:
        x0, y0 = self.origin
        return Affine(self.resolution, 0.0, x0, 0.0, -self.resolution, y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x0, y0 = self.origin
        return (x0, y0 - self.height * self.resolution, x0 + self.width * self.resolution, y0)


@dataclass(frozen=True)
class Scene:
    """Ground truth of a sample region: labels and the reflectance it implies."""

    spec: SampleSpec
    labels: np.ndarray  # (H, W) uint8, NODATA_CLASS outside the mapped area
    reflectance: np.ndarray  # (4, H, W) float32, NaN where there is no valid input


def synthesize(spec: SampleSpec) -> Scene:
    """Make the labels and cloud-free reflectance of ``spec``'s region."""
    if spec.width < 32 or spec.height < 32:
        raise ClusterError(f"sample region {spec.width}x{spec.height} px is too small: use >= 32")
    rng = np.random.default_rng(spec.seed)
    classes = stands(spec, rng, _CLASS_SHARE)
    reflectance = _reflectance(classes, rng)
    labels = classes.astype(np.uint8)

    # An unmapped corner: no label and no input, as at a state border.
    unmapped = unmapped_corner(spec.height, spec.width)
    labels[unmapped] = NODATA_CLASS
    reflectance[:, unmapped] = np.nan
    return Scene(spec=spec, labels=labels, reflectance=reflectance)


def stands(spec: SampleSpec, rng: np.random.Generator, share: np.ndarray) -> np.ndarray:
    """Voronoi stands with wavy borders, each of one class (drawn with ``share``)."""
    h, w = spec.height, spec.width
    k = len(share)
    n = max(k, round(h * w / spec.stand_px**2))
    seeds = rng.uniform((0, 0), (h, w), size=(n, 2))
    stand_class = rng.choice(k, size=n, p=share)
    # Every class appears at least once, whatever the region size.
    stand_class[:k] = rng.permutation(k)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    amp = spec.stand_px * 0.15
    yy += amp * smooth_noise(rng, (h, w), spec.stand_px / 6)
    xx += amp * smooth_noise(rng, (h, w), spec.stand_px / 6)
    _, nearest = cKDTree(seeds).query(np.column_stack([yy.ravel(), xx.ravel()]))
    return stand_class[nearest].reshape(h, w)


def _reflectance(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = classes.shape
    out = np.empty((len(BANDS), h, w), dtype=np.float32)
    out[:] = np.where(classes == 0, _WATER[:, None, None], _OPEN[:, None, None])
    # Fields vary slowly in brightness; lakes a little.
    out *= 1.0 + 0.08 * smooth_noise(rng, (h, w), 12.0)[None]
    for cls, sigma in _CROWN_SIGMA.items():
        field = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma)
        forest = classes == cls
        if not forest.any():
            continue
        # Exactly half crowns within the class, so both classes share one mixture.
        crown = field > np.median(field[forest])
        for b in range(len(BANDS)):
            out[b][forest] = np.where(crown, _CROWN[b], _GAP[b])[forest]
    noise_sd = np.where(classes == 0, 0.006, 0.012).astype(np.float32)
    out += noise_sd[None] * rng.standard_normal(out.shape, dtype=np.float32)
    np.clip(out, 0.001, 1.0, out=out)
    return out


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field / (field.std() + 1e-12)).astype(np.float32)


def unmapped_corner(h: int, w: int) -> np.ndarray:
    """A triangle in the south-west corner, an eighth of the shorter side deep."""
    yy, xx = np.mgrid[0:h, 0:w]
    depth = min(h, w) // 8
    return (h - 1 - yy) + xx < depth
