"""Shared fixtures: small generated data, written the way users give it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import yaml

from cluster.sample.scene import BANDS, CLASS_COLORS, CLASS_NAMES, SampleSpec, synthesize
from jobs.sample import write_sample
from jobs.trainconfig import load_train_config
from unet.train import TrainSpec, train

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


# Ray binds to loopback only (its default is the machine's outward address).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
SAMPLE_SPEC = SampleSpec(seed=5, width=384, height=384, stand_px=96)


def train_sample(out: Path, spec: SampleSpec, **changes: object) -> TrainSpec:
    """The sample region of ``spec`` under ``out`` and a U-Net briefly trained on it
    (``changes`` to the sample's train-raster.yaml settings); returns the training spec."""
    train_spec = dataclasses.replace(
        load_train_config(write_sample(out, spec).parent / "train-raster.yaml"),
        evaluations=0,
        **changes,
    )
    train(train_spec, progress=False, log=lambda _: None)
    return train_spec


@pytest.fixture(scope="session")
def trained_sample(tmp_path_factory) -> Path:
    """The sample region, a briefly trained small U-Net, and a predict.yaml
    with 64-px tiles (36 of them) whose done record is flushed at every batch."""
    out = tmp_path_factory.mktemp("trained-sample")
    train_sample(
        out, SAMPLE_SPEC, base_width=8, chip_size=64, batch_size=8, max_steps=150, max_seconds=1e6
    )
    config = yaml.safe_load((out / "predict.yaml").read_text())
    config["grid"]["tile_size"] = 64
    config["run"]["flush_seconds"] = 0
    (out / "predict.yaml").write_text(yaml.safe_dump(config))
    return out


def store_tree(store: Path) -> dict[str, bytes]:
    """Every file of a store (arrays, attributes, the done record) by relative path:
    two runs' stores compare equal when byte-identical."""
    return {
        p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*") if p.is_file()
    }


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set (empty: removed) for the block, as it was after;
    for Ray started inside it, whose workers take the environment they start in."""
    saved = {name: os.environ.pop(name, None) for name in values}
    os.environ.update({name: value for name, value in values.items() if value})
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def config_on_s3(server: Any, sample: Path, config: Path, inputs: str, store: str) -> Path:
    """``config`` (a run of ``sample``) with its catalog, region and checkpoint uploaded
    to ``inputs`` on the S3 ``server`` and its store at ``store`` there; written beside
    it as remote.yaml."""
    root = server.upload_tree(sample, inputs)
    doc = yaml.safe_load(config.read_text())
    for key in ("catalog", "region", "checkpoint"):
        doc[key] = f"{root}/{Path(doc[key]).relative_to(sample).as_posix()}"
    doc["store"] = server.uri(store)
    remote = config.parent / "remote.yaml"
    remote.write_text(yaml.safe_dump(doc))
    return remote


def predict_config(sample: Path, folder: Path, **grid_or_run: object) -> Path:
    """The sample's predict.yaml with absolute paths and its store in ``folder``."""
    config = yaml.safe_load((sample / "predict.yaml").read_text())
    for key in ("catalog", "region", "checkpoint"):
        config[key] = str(sample / config[key])
    config["store"] = str(folder / "map.zarr")
    for key, value in grid_or_run.items():
        section = "grid" if key in ("tile_size", "halo") else "run"
        config[section][key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "predict.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


from tests.azurite import azurite  # noqa: E402, F401
from tests.s3server import s3_server  # noqa: E402, F401
