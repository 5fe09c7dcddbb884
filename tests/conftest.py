"""Shared fixtures: small generated data, written the way users give it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from cluster.sample import BANDS, CLASS_COLORS, CLASS_NAMES, SampleSpec, synthesize

TINY = SampleSpec(seed=3, width=192, height=192, stand_px=64)


def write_pair(
    folder: Path,
    image: np.ndarray,
    labels: np.ndarray,
    spec: SampleSpec = TINY,
    bands: tuple[str, ...] = BANDS,
) -> tuple[Path, Path]:
    """A float32 image with band names and a uint8 label raster on the same grid."""
    profile = {
        "driver": "GTiff",
        "width": labels.shape[1],
        "height": labels.shape[0],
        "crs": spec.crs,
        "transform": spec.transform,
    }
    img, lab = folder / "image.tif", folder / "labels.tif"
    with rasterio.open(
        img, "w", count=image.shape[0], dtype="float32", nodata=float("nan"), **profile
    ) as dst:
        dst.write(image.astype(np.float32))
        dst.descriptions = bands[: image.shape[0]]
    with rasterio.open(lab, "w", count=1, dtype="uint8", nodata=255, **profile) as dst:
        dst.write(labels, 1)
    return img, lab


@pytest.fixture(scope="session")
def tiny_scene():
    return synthesize(TINY)


@pytest.fixture
def tiny_pair(tmp_path, tiny_scene) -> tuple[Path, Path]:
    return write_pair(tmp_path, tiny_scene.reflectance, tiny_scene.labels)


@pytest.fixture
def class_table() -> tuple[tuple[str, ...], tuple[str, ...]]:
    return CLASS_NAMES, CLASS_COLORS
