"""A run's map does not depend on how its grid cuts the region: tile size, grid
origin (the model's windows stay on its lattice) and a halo the checkpoint allows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from cluster.errors import ClusterError
from cluster.predict.driver import run_predict
from cluster.predict.store import TileStore
from jobs.config import load_predict_config
from tests.conftest import predict_config
from unet.checkpoint import card_from_bytes

SHIFT = 100  # px the grid's origin moves west and north: not a multiple of 2**depth
SIZE = 320  # px compared: inside the sample region's tiles either way


def _run(sample: Path, folder: Path, shift: int = 0, **grid: object) -> tuple[np.ndarray, ...]:
    """The run's class and confidence over the sample's ``SIZE`` px square at the
    unshifted origin, its grid's origin moved ``shift`` px west and north."""
    path = predict_config(sample, folder, **grid)
    doc = yaml.safe_load(path.read_text())
    (x0, y0), res = doc["grid"]["origin"], doc["grid"]["resolution"]
    doc["grid"]["origin"] = [x0 - shift * res, y0 + shift * res]
    path.write_text(yaml.safe_dump(doc))
    run_predict(load_predict_config(path), progress=False)
    store = TileStore.open(str(folder / "map.zarr"))
    t = store.layout.transform
    row, col = round((t.f - y0) / res), round((x0 - t.c) / res)
    return tuple(
        store.array(a)[row : row + SIZE, col : col + SIZE] for a in ("class", "confidence")
    )


def test_map_does_not_depend_on_tile_size_or_origin(trained_sample, local_ray, tmp_path):
    classes, confidence = _run(trained_sample, tmp_path / "base")
    valid = classes != 255
    assert valid.sum() > 0.5 * classes.size
    for name, kwargs in [
        ("tiles of 128 px", {"tile_size": 128}),
        ("origin moved", {"shift": SHIFT}),
    ]:
        other_classes, other_confidence = _run(trained_sample, tmp_path / name, **kwargs)
        assert np.array_equal(other_classes == 255, ~valid), name
        agree = float(np.mean(other_classes[valid] == classes[valid]))
        step = np.abs(other_confidence[valid].astype(int) - confidence[valid].astype(int))
        within = float(np.mean(step <= 1))
        print(f"{name}: classes agree on {agree:.6f} of {valid.sum()} px, confidence within 1 "
              f"on {within:.6f} (at most {step.max()})")  # fmt: skip
        assert agree >= 0.9999, name
        assert within >= 0.999, name


def test_a_halo_short_of_the_checkpoints_context_is_refused(trained_sample, tmp_path):
    card = card_from_bytes((trained_sample / "model" / "checkpoint.safetensors").read_bytes())
    radius = card.extra["context"]["radius_px"]
    assert 0 < radius <= card.config.receptive_radius
    spec = load_predict_config(predict_config(trained_sample, tmp_path, halo=8))
    with pytest.raises(
        ClusterError, match=r"grid.halo 8 px .* radius is \d+ px \(measured\).*at least \d+"
    ):
        run_predict(spec, progress=False)
    assert not (tmp_path / "map.zarr").exists()
