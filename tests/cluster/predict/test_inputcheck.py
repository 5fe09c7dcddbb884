"""Inputs unlike the training data stop a run, naming item, band and cause: before
any tile is written (the driver's sample), or as soon as an actor meets them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import shapely
import yaml
import zarr
from rasterio.warp import transform_geom

from cluster.imagery.stacitem import ItemRef
from cluster.predict.inputcheck import ItemValues, judge, sample_tiles
from cluster.predict.store import TileStore
from cluster.tiles.grid import Grid, iter_tiles
from cluster.tiles.region import Region
from jobs.config import load_predict_config
from tests.conftest import predict_config
from unet.checkpoint import load_checkpoint

BIN = Path(sys.executable).parent
BANDS = ("blue", "green", "red", "nir")


def _card(trained_sample: Path):
    return load_checkpoint(trained_sample / "model" / "checkpoint.safetensors")[1]


def _values(item: ItemRef, medians: list[float], n: int = 5000) -> ItemValues:
    values = ItemValues(item)
    rng = np.random.default_rng(0)
    values.add(np.array(medians)[:, None] + 0.001 * rng.standard_normal((len(medians), n)))
    return values


@pytest.fixture
def item_ref() -> ItemRef:
    from cluster.imagery.stacitem import BandSource

    bands = tuple(BandSource(f"/x/{b}.tif", 1, 1.0, 0.0, 0, b, "none stated") for b in BANDS)
    return ItemRef("S2X_ITEM", "my-s2", "2023-07-01T10:00:00Z", 0.0, b"", bands, None)


def test_judge_names_band_item_and_cause(trained_sample, item_ref):
    card = _card(trained_sample)
    mean = np.array(card.mean)
    assert judge(_values(item_ref, list(mean)), card, "ck", 6, 2) is None
    dn = judge(_values(item_ref, list((mean + 0.1) / 1e-4)), card, "ck", 6, 2)
    assert dn.startswith("input check: item S2X_ITEM (collection my-s2) band ")
    assert "raw digital numbers read as reflectance" in dn and "assets.my-s2.bands." in dn
    shifted = judge(_values(item_ref, list(mean + 0.1)), card, "ck", 6, 2)
    assert "band blue" in shifted and "missing harmonisation offset" in shifted
    assert "set assets.my-s2.bands.blue.offset: -0.1 (now +0)" in shifted
    twice = judge(_values(item_ref, list(mean - 0.1)), card, "ck", 6, 2)
    assert "applied twice" in twice
    assert judge(_values(item_ref, list((mean + 0.1) / 1e-4), n=100), card, "ck", 6, 2) is None
    assert "\n" not in dn


def test_sample_tiles_span_the_region():
    grid = Grid("EPSG:25832", (0.0, 1000.0), 10.0, 10, 0)
    region = Region(shapely.box(0, 0, 1000, 1000), "EPSG:25832")
    tiles = sample_tiles(grid, region, k=6)
    everything = list(iter_tiles(grid, region))
    assert len(tiles) == 6 and tiles == sorted(tiles)
    assert len(everything) == 100  # 10 x 10 tiles of 100 m
    assert everything.index(tiles[0]) < 10 and everything.index(tiles[-1]) > 90


# -- whole runs on Ray -----------------------------------------------------------------


def _edited_copy(trained_sample: Path, folder: Path, edit: Callable[[dict], None]) -> Path:
    """The sample (catalog, imagery, model) copied, each Sentinel-2 item's JSON edited."""
    copy = folder / "sample-copy"
    shutil.copytree(trained_sample, copy)
    for path in sorted((copy / "sample" / "sentinel-2-l2a").glob("*/*.json")):
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
    return copy


def _predict(config: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [str(BIN / "statemap"), "predict", str(config), "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip


def _no_raster_metadata(doc: dict) -> None:
    """A mirror that dropped the raster extension and the platform: raw DN, and
    nothing says they are Sentinel-2."""
    doc["collection"] = "mirror"
    for key in ("platform", "constellation", "instruments"):
        doc["properties"].pop(key, None)
    for asset in doc["assets"].values():
        asset.pop("raster:bands", None)


def _offset_zero(doc: dict) -> None:
    for key, asset in doc["assets"].items():
        if key != "scl":
            asset["raster:bands"][0]["offset"] = 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "cause"),
    [(_no_raster_metadata, "raw digital numbers"), (_offset_zero, "missing harmonisation")],
    ids=["dn-for-reflectance", "missing-offset"],
)
def test_a_run_on_wrong_units_stops_before_writing(trained_sample, tmp_path, edit, cause):
    copy = _edited_copy(trained_sample, tmp_path, edit)
    config = predict_config(copy, tmp_path / "run")
    doc = yaml.safe_load(config.read_text())
    doc["collections"] = None  # the mirror's items say "mirror"
    config.write_text(yaml.safe_dump(doc))
    run = _predict(config)
    assert run.returncode == 2, run.stdout + run.stderr
    first, *more = run.stderr.strip().splitlines()
    assert first.startswith("statemap: error: input check: ") and "Traceback" not in run.stderr
    named = [line[2:] for line in more] or [first.removeprefix("statemap: error: ")]
    assert len(named) == 4  # every item of the copy, each named on its own line
    for line in named:
        assert line.startswith("input check: item S2") and " band " in line and cause in line
    assert not (tmp_path / "run" / "map.zarr").exists()  # refused before the store

    doc = yaml.safe_load(config.read_text())
    doc["run"]["accept_input_shift"] = True  # the shift on purpose
    config.write_text(yaml.safe_dump(doc))
    accepted = _predict(config)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "36 tiles done" in accepted.stdout


def _bad_item_in_the_west(grid: Grid) -> Callable[[dict], None]:
    """One scene, cut to the region's western column of tiles (where the driver's
    sample tiles do not look), first in mosaic order, without its scale: DN."""

    def edit(doc: dict) -> None:
        if not doc["id"].startswith("S2A_SAMPLE0"):
            return
        x0, y0 = grid.origin
        west = shapely.box(x0, y0 - 384 * 10, x0 + 64 * 10, y0)
        doc["geometry"] = transform_geom(grid.crs, "EPSG:4326", west.__geo_interface__)
        lons = [p[0] for p in doc["geometry"]["coordinates"][0]]
        lats = [p[1] for p in doc["geometry"]["coordinates"][0]]
        doc["bbox"] = [min(lons), min(lats), max(lons), max(lats)]
        doc["properties"]["eo:cloud_cover"] = 0.0
        doc["properties"]["datetime"] = "2023-08-31T10:30:00Z"  # the newest of the clear
        doc["collection"] = "mirror"
        doc["properties"].pop("platform")
        doc["properties"].pop("constellation")
        for key, asset in doc["assets"].items():
            if key != "scl":
                asset.pop("raster:bands")

    return edit


@pytest.mark.slow
def test_an_actor_meeting_wrong_units_stops_the_run(trained_sample, tmp_path):
    grid = load_predict_config(predict_config(trained_sample, tmp_path / "probe")).setup.grid
    copy = _edited_copy(trained_sample, tmp_path, _bad_item_in_the_west(grid))
    config = predict_config(copy, tmp_path / "run")
    doc = yaml.safe_load(config.read_text())
    doc["collections"] = None
    doc["run"]["check_items"] = False  # the check of every item would refuse it up front
    config.write_text(yaml.safe_dump(doc))
    spec = load_predict_config(config)
    assert all(t.col > 0 for t in sample_tiles(grid, load_region_of(spec)))
    run = _predict(config)
    assert run.returncode == 2, run.stdout + run.stderr
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("statemap: error:")]
    assert "Traceback" not in run.stderr  # the rest is Ray's own start-up log
    assert "input check: item S2A_SAMPLE0" in line and "raw digital numbers" in line
    assert "the run stopped" in line
    store = TileStore.open(str(tmp_path / "run" / "map.zarr"))
    done = store.done_tiles()
    assert all(t.col > 0 for t in done)  # no tile of the bad item's column was written
    classes = zarr.open_group(store.uri, mode="r")["class"][:, :64]
    assert (classes == 255).all()


def load_region_of(spec):
    from cluster.tiles.region import load_region

    return load_region(spec.setup.region, spec.setup.grid.crs)
