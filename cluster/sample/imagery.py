"""Simulated acquisitions of a sample region, as numpy arrays on their own grids.

A reader that warps and mosaics catalog items per tile must cope with what
real catalogs hold: scenes that cover only part of the region and overlap,
a scene in a sibling CRS, swath edges, clouds with their shadows, 20 m bands
beside 10 m ones, and orthophotos at a finer resolution. Each acquisition here
is the ground truth of :mod:`cluster.sample.scene` seen through one of those
effects, so a test can say exactly what a correct reader must recover.

Masks (swath, cloud, shadow) are drawn on the 20 m grid and repeated onto the
10 m grid, as Sen2Cor does, so SCL and the bands agree pixel for pixel. Every
choice is seeded; writing files and STAC is in :mod:`cluster.sample.catalog`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from cluster.sample.scene import BANDS, Scene

S2_SCALE = 0.0001
S2_OFFSET = -0.1  # processing baseline 04.00: reflectance = DN * 0.0001 - 0.1
ORTHO_SCALE = 1 / 400
ORTHO_BANDS: tuple[str, ...] = ("red", "green", "blue", "nir")  # as orthophotos come
S2_10M: tuple[str, ...] = ("blue", "green", "red", "nir")
S2_20M: tuple[str, ...] = ("nir08", "swir16")
# SCL codes used here (Sen2Cor): 0 no data, 3 cloud shadow, 4 vegetation,
# 5 not vegetated, 6 water, 8 cloud medium probability, 9 cloud high probability.
SCL_BY_CLASS = np.array([6, 5, 4, 4], dtype=np.uint8)
NOISE_SD = 0.004  # reflectance noise of every simulated band
_SHADOW_GAIN = 0.45


@dataclass(frozen=True)
class Raster:
    """One asset's pixels on its own grid; ``data`` is (bands, rows, cols)."""

    data: np.ndarray
    transform: Affine
    crs: str
    nodata: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        _, h, w = self.data.shape
        x0, y0 = self.transform.c, self.transform.f
        return (x0, y0 + h * self.transform.e, x0 + w * self.transform.a, y0)


@dataclass(frozen=True)
class Acquisition:
    """A scene or orthophoto tile: assets, footprint ring (in ``crs``), metadata."""

    id: str
    datetime: dt.datetime
    platform: str
    crs: str
    assets: dict[str, Raster]
    footprint: tuple[tuple[float, float], ...]
    cloud_cover: float | None = None


@dataclass(frozen=True)
class _Plan:
    """Where a Sentinel-2 scene lies: window fractions of the region and its effects."""

    rows: tuple[float, float]
    cols: tuple[float, float]
    sibling_crs: bool = False  # the same grid, labelled in the sibling datum's CRS
    swath_tilt: float | None = None  # no data where u + tilt * v > 1 (scene-local u, v)
    clouds: int = 0
    cloud_cols: tuple[float, float] = (0.1, 0.9)  # cloud centres, fraction of the scene


# Every mapped pixel has a clear view in some scene: scene 2 is clear over the
# north; the south lies in scene 3, whose clouds sit over scene 0's clear west.
_S2_PLANS: tuple[_Plan, ...] = (
    _Plan(rows=(0.0, 1.0), cols=(0.0, 0.62), swath_tilt=0.32),
    _Plan(rows=(0.0, 1.0), cols=(0.38, 1.0), sibling_crs=True, clouds=4),
    _Plan(rows=(0.0, 0.6), cols=(0.0, 1.0)),
    _Plan(rows=(0.4, 1.0), cols=(0.0, 1.0), clouds=2, cloud_cols=(0.1, 0.25)),
)


def sibling_crs(crs: str) -> str:
    """The WGS84 UTM CRS of an ETRS89 UTM one and back; others have none (itself).

    The two datums differ by well under a metre in Europe, so providers publish
    the same area in either; a reader must not assume one CRS per catalog.
    """
    epsg = CRS.from_user_input(crs).to_epsg()
    if epsg is not None and 25828 <= epsg <= 25838:
        return f"EPSG:{epsg - 25800 + 32600}"
    if epsg is not None and 32628 <= epsg <= 32638:
        return f"EPSG:{epsg - 32600 + 25800}"
    return crs


def sentinel2_scenes(scene: Scene) -> list[Acquisition]:
    """Four overlapping Sentinel-2 L2A scenes of ``scene``'s region."""
    spec = scene.spec
    truth, labels = _even_canvas(scene)
    rng = np.random.default_rng((spec.seed, 2))
    days = np.sort(rng.choice(92, size=len(_S2_PLANS), replace=False))
    out = []
    for k, plan in enumerate(_S2_PLANS):
        when = dt.datetime(2023, 6, 1, 10, 30, tzinfo=dt.UTC) + dt.timedelta(
            days=int(days[k]), seconds=int(rng.integers(0, 60))
        )
        # The two satellites fly five days apart over the same spot.
        platform = "sentinel-2a" if days[k] % 10 < 5 else "sentinel-2b"
        out.append(_sentinel2(scene, truth, labels, plan, k, when, platform))
    return out


def orthophotos(scene: Scene) -> list[Acquisition]:
    """A 2x2 grid of overlapping orthophoto tiles at half the region's pixel size."""
    spec = scene.spec
    h, w = spec.height * 2, spec.width * 2
    fine = np.repeat(np.repeat(scene.reflectance, 2, axis=1), 2, axis=2)
    fine = fine[[BANDS.index(b) for b in ORTHO_BANDS]]
    overlap = max(2, round(0.06 * min(h, w)))
    rng = np.random.default_rng((spec.seed, 3))
    out = []
    for i in range(2):
        for j in range(2):
            r0, r1 = max(0, i * h // 2 - overlap), min(h, (i + 1) * h // 2 + overlap)
            c0, c1 = max(0, j * w // 2 - overlap), min(w, (j + 1) * w // 2 + overlap)
            refl = fine[:, r0:r1, c0:c1]
            refl = refl + NOISE_SD * rng.standard_normal(refl.shape, dtype=np.float32)
            dn = np.clip(np.rint(refl / ORTHO_SCALE), 1, 255)
            dn = np.where(np.isnan(refl), 0, dn).astype(np.uint8)
            transform = spec.transform @ Affine.translation(c0 / 2, r0 / 2) @ Affine.scale(0.5)
            image = Raster(dn, transform, spec.crs, 0)
            x0, y1, x1, y0 = image.bounds
            out.append(
                Acquisition(
                    id=f"ortho_{i}{j}",
                    datetime=dt.datetime(2023, 5, 17, 9, 40 + 6 * (2 * i + j), tzinfo=dt.UTC),
                    platform="aircraft",
                    crs=spec.crs,
                    assets={"image": image},
                    footprint=((x0, y0), (x0, y1), (x1, y1), (x1, y0), (x0, y0)),
                )
            )
    return out


def _even_canvas(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Truth padded with no data to even rows and columns, so 20 m pixels tile it."""
    _, h, w = scene.reflectance.shape
    pad = ((0, 0), (0, h % 2), (0, w % 2))
    truth = np.pad(scene.reflectance, pad, constant_values=np.nan)
    labels = np.pad(scene.labels, pad[1:], constant_values=255)
    return truth, labels


def _sentinel2(
    scene: Scene,
    truth: np.ndarray,
    labels: np.ndarray,
    plan: _Plan,
    k: int,
    when: dt.datetime,
    platform: str,
) -> Acquisition:
    spec = scene.spec
    _, hh, ww = truth.shape
    r0, r1 = (2 * round(f * hh / 2) for f in plan.rows)
    c0, c1 = (2 * round(f * ww / 2) for f in plan.cols)
    t10 = truth[:, r0:r1, c0:c1]
    lab = labels[r0:r1, c0:c1]
    h2, w2 = (r1 - r0) // 2, (c1 - c0) // 2
    rng = np.random.default_rng((spec.seed, 2, k))

    # Masks on the 20 m grid.
    swath = np.zeros((h2, w2), dtype=bool)
    if plan.swath_tilt is not None:
        v, u = np.mgrid[0:h2, 0:w2] + 0.5
        swath = u / w2 + plan.swath_tilt * v / h2 > 1.0
    nodata20 = swath | _blocks(np.isnan(t10[0])).any(axis=(1, 3))
    density = _cloud_density(rng, (h2, w2), plan)
    cloud = (density > 0.15) & ~nodata20
    high = density > 0.5
    shift = max(3, round(0.1 * min(h2, w2)))
    # Sun from the south-south-east: shadows fall north-north-west of the clouds.
    shadow = _shifted(cloud, -shift, -round(0.4 * shift)) & ~cloud & ~nodata20

    crs = sibling_crs(spec.crs) if plan.sibling_crs else spec.crs
    t10_transform = spec.transform @ Affine.translation(c0, r0)
    t20_transform = t10_transform @ Affine.scale(2)
    assets: dict[str, Raster] = {}

    gains = np.array([1.04, 1.02, 1.0, 0.97], dtype=np.float32)[:, None, None]
    masks10 = (_up(swath), _up(cloud), _up(shadow), _up(density))
    dn10 = _observe(rng, t10, gains, *masks10)
    for b, name in enumerate(S2_10M):
        assets[name] = Raster(dn10[b : b + 1], t10_transform, crs, 0)

    derived = np.stack([0.97 * t10[3], _swir16(t10)])
    t20 = _blocks(derived).mean(axis=(2, 4))
    gains = np.array([0.95, 0.8], dtype=np.float32)[:, None, None]
    dn20 = _observe(rng, t20, gains, nodata20, cloud, shadow, density)
    for b, name in enumerate(S2_20M):
        assets[name] = Raster(dn20[b : b + 1], t20_transform, crs, 0)

    scl = SCL_BY_CLASS[_block_mode(lab)]
    scl[shadow] = 3
    scl[cloud] = np.where(high[cloud], 9, 8)
    scl[nodata20] = 0
    assets["scl"] = Raster(scl[None], t20_transform, crs, 0)

    valid = np.count_nonzero(~nodata20)
    cover = round(100.0 * np.count_nonzero(cloud) / valid, 2) if valid else 0.0
    x0, y0 = t10_transform.c, t10_transform.f
    x1, y1 = x0 + (c1 - c0) * spec.resolution, y0 - (r1 - r0) * spec.resolution
    tilt = plan.swath_tilt or 0.0
    xb = x0 + (1.0 - tilt) * (x1 - x0)  # where the swath edge meets the southern side
    footprint = ((x0, y0), (x0, y1), (xb, y1), (x1, y0), (x0, y0))
    if not tilt:
        footprint = ((x0, y0), (x0, y1), (x1, y1), (x1, y0), (x0, y0))
    return Acquisition(
        id=f"S2{platform[-1].upper()}_SAMPLE{k}_{when:%Y%m%d}_0_L2A",
        datetime=when,
        platform=platform,
        crs=crs,
        assets=assets,
        footprint=footprint,
        cloud_cover=cover,
    )


def _observe(
    rng: np.random.Generator,
    truth: np.ndarray,
    cloud_gain: np.ndarray,
    nodata: np.ndarray,
    cloud: np.ndarray,
    shadow: np.ndarray,
    density: np.ndarray,
) -> np.ndarray:
    """Truth + noise, darkened in shadows, bright in clouds, as uint16 DN (0 = no data)."""
    refl = truth + NOISE_SD * rng.standard_normal(truth.shape, dtype=np.float32)
    refl = np.where(shadow, refl * _SHADOW_GAIN, refl)
    refl = np.where(cloud, cloud_gain * (0.5 + 0.2 * density), refl)
    dn = np.clip(np.rint((refl - S2_OFFSET) / S2_SCALE), 1, 65535)
    return np.where(nodata | np.isnan(refl), 0, dn).astype(np.uint16)


def _up(a: np.ndarray) -> np.ndarray:
    """20 m mask or field onto the 10 m grid."""
    return np.repeat(np.repeat(a, 2, axis=-2), 2, axis=-1)


def _shifted(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx) pixels; what moves in from outside is False."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = mask[ys, xs]
    return out


def _blocks(a: np.ndarray) -> np.ndarray:
    """View (..., 2h, 2w) as (..., h, 2, w, 2) so 2x2 blocks reduce over axes -3, -1."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // 2, 2, w // 2, 2)


def _block_mode(labels: np.ndarray) -> np.ndarray:
    """Majority class of each 2x2 block (lowest class on ties; 0 if all no data)."""
    blocks = _blocks(labels)
    counts = np.stack([(blocks == c).sum(axis=(1, 3)) for c in range(len(SCL_BY_CLASS))])
    return counts.argmax(axis=0)


def _swir16(t10: np.ndarray) -> np.ndarray:
    """SWIR 1.6 µm from the visible/NIR truth: ~0.01 over water, 0.1-0.3 over land.

    Water (green above NIR) absorbs SWIR almost fully; land follows NIR and red.
    """
    _, green, red, nir = t10
    ndwi = (green - nir) / (green + nir)
    water = np.clip(ndwi / 0.3, 0.0, 1.0)
    return (1.0 - water) * (0.3 * nir + 1.4 * red) + water * 0.5 * nir


def _cloud_density(rng: np.random.Generator, shape: tuple[int, int], plan: _Plan) -> np.ndarray:
    """Lumpy cloud blobs, density in [0, 1]; 0 where there is no cloud."""
    return cloud_blobs(rng, shape, plan.clouds, cols=plan.cloud_cols)


def cloud_blobs(
    rng: np.random.Generator,
    shape: tuple[int, int],
    blobs: int,
    *,
    rows: tuple[float, float] = (0.15, 0.85),
    cols: tuple[float, float] = (0.1, 0.9),
    radius: tuple[float, float] = (0.05, 0.09),
) -> np.ndarray:
    """``blobs`` lumpy clouds, density in [0, 1] (0: no cloud); centres within
    ``rows``/``cols`` and radii within ``radius``, fractions of the scene."""
    h, w = shape
    density = np.zeros(shape, dtype=np.float32)
    if blobs == 0:
        return density
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    lumps = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    lumps = (lumps / (lumps.std() + 1e-12)).astype(np.float32)
    size = min(h, w)
    for _ in range(blobs):
        cy = rng.uniform(*rows) * h
        cx = rng.uniform(*cols) * w
        r = rng.uniform(*radius) * size + 2.0
        dist = np.hypot((yy - cy) / r, (xx - cx) / (r * rng.uniform(0.7, 1.4)))
        density = np.maximum(density, np.clip(1.0 - dist + 0.15 * lumps, 0.0, 1.0))
    return density
