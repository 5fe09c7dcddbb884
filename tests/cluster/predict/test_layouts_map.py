"""The same scenes in other layouts map the same: providers' layouts read by their
conventions, and a catalog statemap does not know, once its config names the assets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr

from tests.cluster.predict.test_inputcheck import _edited_copy
from tests.conftest import predict_config

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
KEYS = {"blue": "b1", "green": "b2", "red": "b3", "nir": "b4", "scl": "quality"}


def _map(config: Path) -> np.ndarray:
    """``statemap predict`` in its own process (and Ray), then the class map."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run(
        [str(BIN / "statemap"), "predict", str(config), "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    store = yaml.safe_load(config.read_text())["store"]
    return zarr.open_group(store, mode="r")["class"][:]


@pytest.fixture(scope="module")
def reference_map(trained_sample, tmp_path_factory) -> np.ndarray:
    """The Earth Search-style catalog the sample is written in."""
    return _map(predict_config(trained_sample, tmp_path_factory.mktemp("reference")))


def _anonymous(doc: dict) -> None:
    """Asset keys nobody knows, no band names, a mask without classes."""
    doc["assets"] = {KEYS.get(k, k): a for k, a in doc["assets"].items()}
    for key in ("b1", "b2", "b3", "b4", "quality"):
        doc["assets"][key].pop("eo:bands", None)
        doc["assets"][key].pop("description", None)


def test_unknown_asset_keys_map_once_the_config_names_them(trained_sample, reference_map, tmp_path):
    copy = _edited_copy(trained_sample, tmp_path, _anonymous)
    config = predict_config(copy, tmp_path / "run")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    refused = subprocess.run(
        [str(BIN / "statemap"), "predict", str(config), "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "has no band 'blue'" in refused.stderr
    assert "assets.sentinel-2-l2a.bands.blue.asset" in refused.stderr

    doc = yaml.safe_load(config.read_text())
    doc["assets"] = {
        "sentinel-2-l2a": {
            "bands": {band: {"asset": key} for band, key in KEYS.items() if band != "scl"},
            "mask": {"asset": "quality", "invalid": [0, 1, 3, 8, 9, 10]},
        }
    }
    config.write_text(yaml.safe_dump(doc))
    mapped = _map(config)
    assert mapped.shape == reference_map.shape
    assert (mapped == reference_map).mean() == 1.0
    items = subprocess.run(
        [str(BIN / "statemap"), "items", doc["catalog"], "--bands", "blue,nir", "--json",
         "--config", str(config), "--limit", "1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    line = json.loads(items.stdout.splitlines()[0])
    assert [b["asset"] for b in line["bands"]] == ["b1", "b4"]
    assert line["mask"] == {"asset": "quality", "invalid": [0, 1, 3, 8, 9, 10]}


@pytest.mark.parametrize("layout", ["planetary-computer", "cdse"])
def test_provider_layouts_map_as_earth_search(trained_sample, reference_map, tmp_path, layout):
    """The must-show of the provider issue: >= 99.9% of pixels agree (here: all)."""
    from cluster.sample.layouts import rewrite_catalog

    catalog = rewrite_catalog(trained_sample / "sample", tmp_path / layout, layout)
    config = predict_config(trained_sample, tmp_path / "run")
    doc = yaml.safe_load(config.read_text())
    doc["catalog"] = str(catalog)
    config.write_text(yaml.safe_dump(doc))
    mapped = _map(config)
    agree = (mapped == reference_map).mean()
    print(f"{layout}: {agree:.6f} of {mapped.size} px agree with the Earth Search-style map")
    assert agree >= 0.999
