"""A seeded synthetic scene where only the direction of tree rows decides the class.

Flips and 90° rotations are the usual free augmentation for imagery seen from
above, and usually harmless: a crown is a crown whichever way up. Here they
are not. Two plantation classes, "rows 45°" and "rows 135°", share one
spectral mixture, one row spacing and one row width, and are mirror images of
each other; a left-right flip or a quarter turn turns one into the other.
Trained with ``augmentation: none`` a U-Net separates them; with ``d4`` it is
taught that they are the same, which the tests show. "open land" is
spectrally distinct, as in ``cluster.sample.scene``.

Row directions are map bearings counter-clockwise from east: rows at 45° run
south-west to north-east. The scene is at 1 m, as orthophotos are, so rows
8 m apart are 8 px apart.

Everything here is numpy and deterministic for a seed, like the sample
scene; ``write_orientation`` writes it as a labelled image pair and a
training config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from scipy import ndimage
from scipy.spatial import cKDTree

from cluster.errors import ClusterError
from cluster.sample.catalog import write_cog
from cluster.sample.imagery import Raster
from cluster.sample.scene import BANDS, NODATA_CLASS, SampleSpec, Scene

CLASS_NAMES: tuple[str, ...] = ("open land", "rows 45°", "rows 135°")
CLASS_COLORS: tuple[str, ...] = ("#e9d66b", "#41ab5d", "#00441b")
ROW_ANGLES: dict[int, float] = {1: 45.0, 2: 135.0}  # class -> row bearing, degrees
# Many small stands, so that the held-out strip holds a dozen plantations: a model
# that cannot tell the directions apart then guesses on many, not lucky on three.
ORIENTATION_SPEC = SampleSpec(width=384, height=384, resolution=1.0, stand_px=48)

ROW_PERIOD_PX = 8.0  # row spacing
_CROWN_SHARE = 0.55  # of the spacing covered by the crowns of one row
_ANGLE_JITTER = 3.0  # degrees, per stand, the same for both row classes
# Mean surface reflectance per band (blue, green, red, nir), as in the sample scene.
_OPEN = np.array([0.070, 0.100, 0.120, 0.280], dtype=np.float32)
_CROWN = np.array([0.030, 0.065, 0.035, 0.400], dtype=np.float32)
_GAP = np.array([0.025, 0.045, 0.035, 0.180], dtype=np.float32)
_OPEN_SHARE = 0.25


def synthesize_orientation(spec: SampleSpec = ORIENTATION_SPEC) -> Scene:
    """Labels and reflectance of a scene of open land and row plantations.

    Stands are jittered-grid Voronoi cells; each column of stands holds all
    three classes, so an eastern held-out strip a stand wide or more holds
    them too."""
    rows, cols = spec.height // spec.stand_px, spec.width // spec.stand_px
    if rows < len(CLASS_NAMES) or cols < 1:
        raise ClusterError(
            f"orientation scene {spec.width}x{spec.height} px has room for {rows}x{cols} "
            f"stands of {spec.stand_px} px: make it at least {len(CLASS_NAMES)} stands "
            "high (height >= 3 * stand_px) and one wide"
        )
    rng = np.random.default_rng(spec.seed)
    stand, stand_class = _stands(spec, rows, cols, rng)
    classes = stand_class[stand]
    reflectance = _reflectance(spec, stand, stand_class, rng)
    return Scene(spec=spec, labels=classes.astype(np.uint8), reflectance=reflectance)


def _stands(
    spec: SampleSpec, rows: int, cols: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stand id per pixel and class per stand."""
    h, w = spec.height, spec.width
    cy = (np.arange(rows) + 0.5) * h / rows
    cx = (np.arange(cols) + 0.5) * w / cols
    seeds = np.stack(np.meshgrid(cy, cx, indexing="ij"), axis=-1).reshape(-1, 2)
    seeds += rng.uniform(-0.3, 0.3, seeds.shape) * (h / rows, w / cols)
    stand_class = np.empty((rows, cols), dtype=np.int64)
    share = np.array([_OPEN_SHARE, (1 - _OPEN_SHARE) / 2, (1 - _OPEN_SHARE) / 2])
    for c in range(cols):
        extra = rng.choice(len(CLASS_NAMES), size=rows - len(CLASS_NAMES), p=share)
        stand_class[:, c] = rng.permutation(np.concatenate([np.arange(len(CLASS_NAMES)), extra]))
    yy, xx = np.mgrid[0:h, 0:w]
    _, nearest = cKDTree(seeds).query(np.column_stack([yy.ravel(), xx.ravel()]))
    return nearest.reshape(h, w), stand_class.ravel()


def _reflectance(
    spec: SampleSpec, stand: np.ndarray, stand_class: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    h, w = stand.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    crown = np.zeros((h, w))
    # Draw every stand's row parameters whatever its class, so both row classes
    # come from one distribution and differ in direction alone.
    for s, cls in enumerate(stand_class):
        jitter = rng.uniform(-_ANGLE_JITTER, _ANGLE_JITTER)
        phase = rng.uniform(0, 2 * np.pi)
        if cls not in ROW_ANGLES:
            continue
        inside = stand == s
        crown[inside] = _rows(xx[inside], yy[inside], ROW_ANGLES[cls] + jitter, phase)
    # Missing and small trees: the same isotropic thinning in both row classes.
    crown *= np.clip(1.3 + 0.6 * smooth_noise(rng, (h, w), 1.5), 0.0, 1.0)
    trees = np.isin(stand_class[stand], list(ROW_ANGLES))
    # Fields vary slowly in brightness.
    field = _OPEN[:, None, None] * (1.0 + 0.08 * smooth_noise(rng, (h, w), 10.0))[None]
    rows = _GAP[:, None, None] + crown[None] * (_CROWN - _GAP)[:, None, None]
    out = np.where(trees[None], rows, field).astype(np.float32)
    out += 0.012 * rng.standard_normal(out.shape, dtype=np.float32)
    np.clip(out, 0.001, 1.0, out=out)
    return out


def _rows(x: np.ndarray, y: np.ndarray, bearing: float, phase: float) -> np.ndarray:
    """Crown cover 0..1 of rows running at ``bearing`` (degrees counter-clockwise
    from east; image y points south): a square wave of ``_CROWN_SHARE`` duty,
    its edges softened over about a pixel."""
    a = np.deg2rad(bearing)
    across = x * np.sin(a) + y * np.cos(a)  # distance across the rows, px
    wave = np.cos(2 * np.pi * across / ROW_PERIOD_PX + phase)
    edge = np.cos(np.pi * _CROWN_SHARE)  # wave above this: under a crown
    return np.clip(0.5 + (wave - edge) * ROW_PERIOD_PX / (2 * np.pi), 0.0, 1.0)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-12)


def write_orientation(
    out: str | Path,
    spec: SampleSpec = ORIENTATION_SPEC,
    *,
    augmentation: str = "none",
    train_steps: int = 150,
    train_seconds: float = 1e6,
) -> Path:
    """``out/orientation/{image,labels}.tif`` and ``out/train.yaml`` for them;
    returns the config's path.

    The image is 4-band float32 reflectance with band names, the labels uint8
    with 255 for no label, both COGs on one grid, as ``statemap sample``
    writes its truth rasters. The config trains by steps (a time budget
    depends on the machine) with a small model on 64 px chips: on two CPU
    cores about ten seconds, after which the rows classes reach a held-out
    IoU of about 0.97 without augmentation."""
    out = Path(out).resolve()
    folder = out / "orientation"
    folder.mkdir(parents=True, exist_ok=True)
    scene = synthesize_orientation(spec)
    image, labels = folder / "image.tif", folder / "labels.tif"
    write_cog(
        labels,
        Raster(scene.labels[None], spec.transform, spec.crs, NODATA_CLASS),
        resampling="mode",
        descriptions=("class",),
        colormap={i: (*bytes.fromhex(c[1:]), 255) for i, c in enumerate(CLASS_COLORS)},
        tags={"CLASS_NAMES": json.dumps(CLASS_NAMES), "CLASS_COLORS": json.dumps(CLASS_COLORS)},
        band_tags={f"CLASS_{i}": name for i, name in enumerate(CLASS_NAMES)},
    )
    write_cog(
        image,
        Raster(scene.reflectance, spec.transform, spec.crs, float("nan")),
        resampling="average",
        descriptions=BANDS,
        tags={"QUANTITY": "surface reflectance", "SOURCE": f"statemap orientation, {spec.seed}"},
    )
    config = {
        "image": str(image.relative_to(out)),
        "labels": str(labels.relative_to(out)),
        "output": "model",
        "bands": list(BANDS),
        "classes": [
            {"name": n, "color": c} for n, c in zip(CLASS_NAMES, CLASS_COLORS, strict=True)
        ],
        "model": {"base_width": 8, "depth": 3, "batch_norm": True},
        "training": {
            "chip_size": 64,
            "batch_size": 8,
            "max_seconds": train_seconds,
            "max_steps": train_steps,
            "seed": spec.seed,
            "augmentation": augmentation,
        },
        "holdout": {"east_fraction": 0.3, "gap_px": 16},
    }
    path = out / "train.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path
