"""A seeded sample region that no single date can map: texture and time together.

Four forest classes form a 2x2 design: spruce and larch have fine crowns, beech
and pine coarse ones; spruce and pine are evergreen, larch and beech deciduous.
In full leaf all four draw every pixel from one crown/gap mixture, exactly half
crowns, so a summer scene separates fine from coarse and nothing else; leaf-off
scenes separate evergreen from deciduous. Larch is told from spruce only by
time and from beech only by texture. Open land is spectrally distinct.

The year's scenes hold what a multi-temporal compositor must survive: four per
season in spring, summer and autumn, clouds and shadows that SCL marks, and
thin haze that it misses, over ~30% of the summer scene a "first" mosaic reads
first (least cloud) and never under two summer views, so a per-pixel summer
median is haze-free. Pure numpy and deterministic for a seed, like
:mod:`cluster.sample.scene`; :mod:`cluster.sample.phenocatalog` writes it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import numpy as np
from affine import Affine
from scipy import ndimage

from cluster.errors import ClusterError
from cluster.sample.imagery import (
    Acquisition,
    Raster,
    _blocks,
    _observe,
    _shifted,
    _up,
    cloud_blobs,
)
from cluster.sample.scene import NODATA_CLASS, SampleSpec, smooth_noise, stands, unmapped_corner

PHENO_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir")
PHENO_CLASS_NAMES: tuple[str, ...] = ("open land", "spruce", "larch", "beech", "pine")
PHENO_CLASS_COLORS: tuple[str, ...] = ("#e9d66b", "#00441b", "#b8e186", "#8c510a", "#35978f")
EVERGREEN: tuple[int, ...] = (1, 4)
DECIDUOUS: tuple[int, ...] = (2, 3)
CROWN_SIGMA: dict[int, float] = {1: 0.8, 2: 0.8, 3: 2.6, 4: 2.6}  # texture scale, px
YEAR = 2023
SEASONS: dict[str, tuple[int, int]] = {"spring": (3, 5), "summer": (6, 8), "autumn": (9, 11)}
SCENES_PER_SEASON = 4
# Clear views per mapped pixel and season, at least; three in summer, so that where
# one summer view is hazy a per-pixel median still picks a clear, haze-free one.
MIN_CLEAR: dict[str, int] = {"spring": 2, "summer": 3, "autumn": 2}
# Deciduous leaf-on fraction: logistic leaf-out and leaf-fall (day of year, days).
LEAF_OUT_DOY, LEAF_FALL_DOY, LEAF_DAYS = 125, 285, 6.0
# Haze: observed = truth * T + path * (1 - T), T = 1 - (1 - HAZE_T_MIN) * depth.
HAZE_T_MIN = 0.55
HAZE_PATH = np.array([0.15, 0.12, 0.10, 0.07], dtype=np.float32)  # blue scatters most
HAZE_SHARE = 0.30  # of the mapped area, in the first summer scene and one other season's
SECOND_HAZE_SHARE = 0.20  # in another summer scene, where the first has none
_HAZE_RAMP = 1.0  # field std from the haze edge to full depth

# Mean surface reflectance per band (blue, green, red, nir).
_SOIL = np.array([0.070, 0.100, 0.120, 0.280], dtype=np.float32)
_CROP = np.array([0.040, 0.080, 0.050, 0.420], dtype=np.float32)
_CROWN = np.array([0.030, 0.065, 0.035, 0.400], dtype=np.float32)  # in leaf
_GAP = np.array([0.025, 0.045, 0.035, 0.180], dtype=np.float32)
_BARE = np.array([0.045, 0.060, 0.070, 0.165], dtype=np.float32)  # branches, understory
_CLASS_SHARE = np.array([0.28, 0.18, 0.18, 0.18, 0.18])
# Cloud levels: (blobs, radius range as a fraction of the scene); one of each per season.
_CLOUD_LEVELS = ((0, 0.0, 0.0), (2, 0.04, 0.07), (3, 0.08, 0.12), (4, 0.13, 0.19))
_TRIES = 8  # places tried per cloud blob before it is dropped
_CLOUD_GAIN = np.array([1.04, 1.02, 1.0, 0.97], dtype=np.float32)[:, None, None]
_STREAM = 0x9E40  # seeds this sample apart from the first one's draws


@dataclass(frozen=True, eq=False)
class Truth:
    """What the ground is: labels and the per-pixel parts of its reflectance."""

    spec: SampleSpec
    labels: np.ndarray  # (H, W) uint8, NODATA_CLASS outside the mapped area
    crown: np.ndarray  # (H, W) bool, a tree crown (forest classes only)
    brightness: np.ndarray  # (H, W) float32, open land's slow variation (1 elsewhere)
    grain: np.ndarray  # (4, H, W) float32, each pixel's own offset, the same all year


@dataclass(frozen=True, eq=False)
class Visit:
    """One planned acquisition: when, and the sky between the satellite and the ground.

    Masks are on the 20 m grid of the region (padded to even size), the haze
    depth on its 10 m grid; the haze is never marked in SCL.
    """

    index: int
    id: str
    when: dt.datetime
    season: str
    platform: str
    cloud: np.ndarray  # (H/2, W/2) bool, SCL 8 or 9
    shadow: np.ndarray  # (H/2, W/2) bool, SCL 3
    density: np.ndarray  # (H/2, W/2) float32, cloud optical density in [0, 1]
    cloud_cover: float  # percent of the valid 20 m pixels under marked cloud
    haze: np.ndarray | None = None  # (H, W) float32 depth in [0, 1]; None: no haze

    @property
    def doy(self) -> int:
        return self.when.timetuple().tm_yday


def synthesize_phenology(spec: SampleSpec) -> Truth:
    """Labels, crowns and per-pixel variation of ``spec``'s region."""
    if spec.width < 32 or spec.height < 32:
        raise ClusterError(f"sample region {spec.width}x{spec.height} px is too small: use >= 32")
    rng = np.random.default_rng((spec.seed, _STREAM))
    h, w = spec.height, spec.width
    labels = stands(spec, rng, _CLASS_SHARE).astype(np.uint8)
    # An unmapped corner: no label and no input, as at a state border.
    labels[unmapped_corner(h, w)] = NODATA_CLASS
    crown = np.zeros((h, w), dtype=bool)
    for cls, sigma in CROWN_SIGMA.items():
        field = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma)
        forest = labels == cls
        if forest.any():  # exactly half crowns per class: one summer mixture for all
            crown |= forest & (field > np.median(field[forest]))
    open_land = labels == 0
    brightness = np.where(open_land, 1.0 + 0.08 * smooth_noise(rng, (h, w), 12.0), 1.0)
    sd = np.where(open_land, 0.006, 0.012).astype(np.float32)
    grain = sd * rng.standard_normal((len(PHENO_BANDS), h, w), dtype=np.float32)
    return Truth(spec, labels, crown, brightness.astype(np.float32), grain)


def leaf_on(doy: float) -> float:
    """Deciduous leaf-on fraction: ~0 in March and November, ~1 in June to August."""
    return _bump(doy, LEAF_OUT_DOY, LEAF_FALL_DOY, LEAF_DAYS)


def crop_cover(doy: float) -> float:
    """Green share of open land: crops up in May, harvested in August."""
    return 0.7 * _bump(doy, 135.0, 225.0, 8.0)


def reflectance(truth: Truth, doy: float) -> np.ndarray:
    """Surface reflectance (4, H, W) float32 on day ``doy``; NaN outside the mapped area."""
    f, g = leaf_on(doy), crop_cover(doy)
    ground = (1.0 - g) * _SOIL + g * _CROP
    leafy = f * _CROWN + (1.0 - f) * _BARE
    forest = range(1, len(PHENO_CLASS_NAMES))
    crowns = np.stack([ground, *(leafy if c in DECIDUOUS else _CROWN for c in forest)])
    gaps = np.stack([ground, *(_GAP for _ in forest)])  # (class, band)
    cls = np.minimum(truth.labels, len(PHENO_CLASS_NAMES) - 1)
    out = np.where(truth.crown[None], crowns[cls].transpose(2, 0, 1), gaps[cls].transpose(2, 0, 1))
    out = out * truth.brightness[None] + truth.grain
    np.clip(out, 0.001, 1.0, out=out)
    out[:, truth.labels == NODATA_CLASS] = np.nan
    return out.astype(np.float32, copy=False)


def plan_year(truth: Truth) -> tuple[Visit, ...]:
    """The year's acquisitions in date order: dates, clouds, shadows and haze."""
    spec = truth.spec
    rng = np.random.default_rng((spec.seed, _STREAM, 1))
    valid20 = ~_nodata20(truth.labels)
    shift = max(3, round(0.1 * min(valid20.shape)))
    dy, dx = -shift, -round(0.4 * shift)  # sun from the south-south-east
    phase = int(rng.integers(10))  # day of year mod 10 on which Sentinel-2A passes over
    visits: list[Visit] = []
    for season, (m0, m1) in SEASONS.items():
        start = dt.datetime(YEAR, m0, 1, 10, 30, tzinfo=dt.UTC)
        length = (dt.date(YEAR, m1 + 1, 1) - start.date()).days
        edges = np.linspace(0, length, SCENES_PER_SEASON + 1).round().astype(int)
        levels = rng.permutation(len(_CLOUD_LEVELS))
        masked = np.zeros(valid20.shape, dtype=np.uint8)  # marked views so far, per pixel
        for i in range(SCENES_PER_SEASON):
            # The twins fly five days apart: 2A and 2B take turns, each on its own days.
            k, first = len(visits), start.timetuple().tm_yday
            platform = ("sentinel-2a", "sentinel-2b")[k % 2]
            days = [d for d in range(*edges[i : i + 2]) if (first + d - phase - 5 * k) % 10 == 0]
            when = start + dt.timedelta(
                days=int(rng.choice(days)), seconds=int(rng.integers(0, 60))
            )
            full = masked >= SCENES_PER_SEASON - MIN_CLEAR[season]
            level = _CLOUD_LEVELS[levels[i % len(levels)]]
            cloud, density = _clouds(rng, valid20, full, level, (dy, dx))
            shadow = _shifted(cloud, dy, dx) & ~cloud & valid20
            masked += cloud | shadow
            visits.append(
                Visit(
                    index=k,
                    id=f"S2{platform[-1].upper()}_PHENO{k:02d}_{when:%Y%m%d}_0_L2A",
                    when=when,
                    season=season,
                    platform=platform,
                    cloud=cloud,
                    shadow=shadow,
                    density=np.where(cloud, density, 0.0).astype(np.float32),
                    cloud_cover=_percent(cloud, valid20),
                )
            )
    return _add_haze(truth, visits, rng)


def hazy_scene(visits: tuple[Visit, ...]) -> Visit:
    """The summer scene a "first" mosaic reads first: least cloud, then newest, then id."""
    summer = [v for v in visits if v.season == "summer"]
    return min(summer, key=lambda v: (v.cloud_cover, -v.when.timestamp(), v.id))


def acquire(truth: Truth, visit: Visit) -> Acquisition:
    """``visit``'s scene: 10 m bands as uint16 DN and SCL at 20 m, on the region's grid."""
    spec = truth.spec
    h2, w2 = visit.cloud.shape
    pad = ((0, 2 * h2 - spec.height), (0, 2 * w2 - spec.width))
    refl = np.pad(reflectance(truth, visit.doy), ((0, 0), *pad), constant_values=np.nan)
    if visit.haze is not None:
        t = 1.0 - (1.0 - HAZE_T_MIN) * visit.haze
        refl = refl * t + HAZE_PATH[:, None, None] * (1.0 - t)
    labels = np.pad(truth.labels, pad, constant_values=NODATA_CLASS)
    nodata20 = _nodata20(truth.labels)
    rng = np.random.default_rng((spec.seed, _STREAM, 2, visit.index))
    masks = (_up(nodata20), _up(visit.cloud), _up(visit.shadow), _up(visit.density))
    dn = _observe(rng, refl, _CLOUD_GAIN, *masks)
    del refl

    green = crop_cover(visit.doy) >= 0.35
    veg = (labels != NODATA_CLASS) & ((labels != 0) | green)
    mapped = _blocks(labels != NODATA_CLASS).sum(axis=(1, 3))
    scl = np.where(2 * _blocks(veg).sum(axis=(1, 3)) >= mapped, 4, 5).astype(np.uint8)
    scl[visit.shadow] = 3
    scl[visit.cloud] = np.where(visit.density[visit.cloud] > 0.5, 9, 8)
    scl[nodata20] = 0

    t10 = spec.transform
    assets = {b: Raster(dn[i : i + 1], t10, spec.crs, 0) for i, b in enumerate(PHENO_BANDS)}
    assets["scl"] = Raster(scl[None], t10 @ Affine.scale(2), spec.crs, 0)
    x0, y1, x1, y0 = assets["blue"].bounds
    return Acquisition(
        id=visit.id,
        datetime=visit.when,
        platform=visit.platform,
        crs=spec.crs,
        assets=assets,
        footprint=((x0, y0), (x0, y1), (x1, y1), (x1, y0), (x0, y0)),
        cloud_cover=visit.cloud_cover,
    )


def _bump(doy: float, rise: float, fall: float, days: float) -> float:
    """Logistic rise at ``rise``, fall at ``fall`` (days of year), ``days`` wide."""
    return float(1.0 / ((1.0 + np.exp((rise - doy) / days)) * (1.0 + np.exp((doy - fall) / days))))


def _percent(cloud: np.ndarray, valid: np.ndarray) -> float:
    """eo:cloud_cover as the first sample computes it: marked cloud over valid pixels."""
    n = int(np.count_nonzero(valid))
    return round(100.0 * int(np.count_nonzero(cloud)) / n, 2) if n else 0.0


def _nodata20(labels: np.ndarray) -> np.ndarray:
    """20 m pixels with no mapped 10 m pixel (the grid padded to even size)."""
    h, w = labels.shape
    pad = ((0, h % 2), (0, w % 2))
    unmapped = np.pad(labels == NODATA_CLASS, pad, constant_values=True)
    return _blocks(unmapped).all(axis=(1, 3))


def _clouds(
    rng: np.random.Generator,
    valid: np.ndarray,
    full: np.ndarray,
    level: tuple[int, float, float],
    shadow_shift: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Cloud mask and density of one scene, 20 m. A blob lands only where neither
    it nor its shadow takes a pixel that its season needs clear (``full``); whole
    blobs are moved or dropped, never cut, so clouds keep their shape."""
    blobs, r0, r1 = level
    cloud = np.zeros(valid.shape, dtype=bool)
    density = np.zeros(valid.shape, dtype=np.float32)
    placed = tries = 0
    while placed < blobs and tries < blobs * _TRIES:
        tries += 1
        blob = cloud_blobs(rng, valid.shape, 1, rows=(0.1, 0.9), radius=(r0, r1))
        mask = (blob > 0.15) & valid
        if not ((mask | _shifted(mask, *shadow_shift)) & full).any():
            cloud |= mask
            density = np.maximum(density, blob)
            placed += 1
    return cloud, density


def _add_haze(truth: Truth, visits: list[Visit], rng: np.random.Generator) -> tuple[Visit, ...]:
    """Haze over the first summer scene, disjoint haze over another, and one more
    in spring or autumn; thickness rises smoothly from the haze edge inward."""
    h, w = truth.labels.shape
    shape = (h + h % 2, w + w % 2)
    mapped = np.pad(truth.labels != NODATA_CLASS, ((0, h % 2), (0, w % 2)))
    sigma = max(shape) / 10
    first = hazy_scene(tuple(visits))
    others = [v for v in visits if v.season == "summer" and v is not first]
    second = others[int(rng.integers(len(others)))]
    seasons = [v for v in visits if v.season != "summer"]
    third = seasons[int(rng.integers(len(seasons)))]
    field = smooth_noise(rng, shape, sigma)
    top = np.quantile(field[mapped], 1.0 - HAZE_SHARE)
    bottom = np.quantile(field[mapped], SECOND_HAZE_SHARE)
    other = smooth_noise(rng, shape, sigma)
    depth = {
        first.index: (field - top) / _HAZE_RAMP,
        second.index: (bottom - field) / _HAZE_RAMP,  # below a lower quantile: disjoint
        third.index: (other - np.quantile(other[mapped], 1.0 - HAZE_SHARE)) / _HAZE_RAMP,
    }
    return tuple(
        dataclasses.replace(v, haze=np.clip(depth[v.index], 0.0, 1.0).astype(np.float32))
        if v.index in depth
        else v
        for v in visits
    )
