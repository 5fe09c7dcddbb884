"""A three-season stack end to end: trained from the catalog, mapped, resumed
byte-identical, and a sub-period the catalog cannot fill left nodata or filled."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import yaml

from cluster.errors import ClusterError
from cluster.maps.compile import compile_store
from cluster.predict.driver import check_inputs, run_predict
from cluster.predict.readers import TileReader
from cluster.predict.setup import read_card
from cluster.predict.store import NODATA, TileStore
from cluster.sample.scene import SampleSpec
from cluster.tiles.grid import Tile
from cluster.training.parity import map_scores
from cluster.training.train import train_from_catalog
from jobs.config import load_predict_config
from jobs.sample import write_phenology_sample
from jobs.trainconfig import load_train_config
from tests.conftest import store_tree

pytestmark = pytest.mark.slow

SPEC = SampleSpec(width=256, height=256, stand_px=64)


class Interrupted(Exception):
    """Raised from the run's result hook: the driver stops as a killed run would."""


@pytest.fixture(scope="module")
def stack_model(tmp_path_factory, local_ray) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("phenology")
    (train_yaml, predict_yaml) = write_phenology_sample(out, SPEC, 900.0, 40)["stack"]
    result = train_from_catalog(load_train_config(train_yaml), progress=False, log=lambda _: None)
    assert result.steps == 40
    return out, predict_yaml


def _config(predict_yaml: Path, folder: Path, **changes: object) -> Path:
    doc = yaml.safe_load(predict_yaml.read_text())
    root = predict_yaml.parent
    for key in ("catalog", "region", "checkpoint"):
        doc[key] = str(root / doc[key])
    doc["grid"]["tile_size"] = 128  # 4 tiles
    doc |= {"store": str(folder / "map.zarr"), **changes}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "predict.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_checkpoint_records_the_stack(stack_model):
    out, _ = stack_model
    card = read_card(str(out / "model-stack" / "checkpoint.safetensors"))
    assert card.periods == ("spring", "summer", "autumn")
    assert card.config.in_bands == 12 and len(card.mean) == 12
    time = card.extra["recipe"]["time"]
    assert time["compositing"] == "median"
    assert [p["start"] for p in time["periods"]] == ["03-01", "06-01", "09-01"]


def test_stack_map_matches_training_and_resumes_byte_identical(stack_model, tmp_path):
    out, predict_yaml = stack_model
    whole = load_predict_config(_config(predict_yaml, tmp_path / "whole", run={"batch_size": 2}))
    summary = run_predict(whole, progress=False)
    assert summary.done == 4 and not summary.failed and summary.gap_px == 0
    store = TileStore.open(summary.store)
    mapped = store.array("class")[:] != NODATA
    quality = store.array("quality")[:]
    assert (quality[:, ~mapped] == NODATA).all() and (quality[1][mapped] == 0).all()
    assert (quality[0][mapped] >= 3).all()  # at least one clear view in each season
    _, map_miou = map_scores(summary.store, out / "model-stack")
    metrics = yaml.safe_load((out / "model-stack" / "metrics.json").read_text())
    assert abs(map_miou - metrics["unet"]["miou"]) <= 0.02  # one data path

    cut_yaml = _config(predict_yaml, tmp_path / "cut", run={"batch_size": 1, "flush_seconds": 0})
    seen = []

    def stop_after_two(result: object) -> None:
        seen.append(result)
        if len(seen) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        run_predict(load_predict_config(cut_yaml), progress=False, on_result=stop_after_two)
    before = len(TileStore.open(str(tmp_path / "cut" / "map.zarr")).done_tiles())
    assert 1 <= before < 4
    resumed = run_predict(load_predict_config(cut_yaml), progress=False)
    assert resumed.skipped == before and resumed.done == 4 - before
    assert store_tree(tmp_path / "cut" / "map.zarr") == store_tree(tmp_path / "whole" / "map.zarr")


def _without_autumn(out: Path, folder: Path) -> Path:
    """The sample's catalog without its autumn scenes, written elsewhere (asset hrefs
    made absolute, so they still point at the sample's files)."""
    catalog = pystac.Catalog.from_file(str(out / "sample" / "catalog.json"))
    catalog.make_all_asset_hrefs_absolute()
    for collection in catalog.get_children():
        for item in list(collection.get_items()):
            if item.datetime is not None and item.datetime.month >= 9:
                collection.remove_item(item.id)
    catalog.normalize_hrefs(str(folder / "catalog"))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return folder / "catalog" / "catalog.json"


@pytest.mark.parametrize("fill", ["nodata", "neighbour"])
def test_a_sub_period_without_scenes_is_nodata_or_filled_and_counted(stack_model, tmp_path, fill):
    out, predict_yaml = stack_model
    catalog = _without_autumn(out, tmp_path)
    spec = load_predict_config(_config(predict_yaml, tmp_path / fill, catalog=str(catalog),
                                       time={"fill": fill}))  # fmt: skip
    summary = run_predict(spec, progress=False)
    store = TileStore.open(summary.store)
    classes = store.array("class")[:]
    mapped = int((classes != NODATA).sum())
    with_fill = load_predict_config(_config(predict_yaml, tmp_path / "ref", run={"batch_size": 2}))
    region_px = int((TileStore.open(run_predict(with_fill, progress=False).store)
                     .array("class")[:] != NODATA).sum())  # fmt: skip
    if fill == "nodata":
        assert mapped == 0 and summary.gap_px == region_px and summary.filled_px == 0
    else:
        assert mapped == region_px == summary.filled_px and summary.gap_px == 0
    assert any("sub-period" in line for line in summary.lines())
    _quality_is_the_stacks(spec.setup, store, classes, tmp_path / f"{fill}-maps")


def _quality_is_the_stacks(setup: object, store: TileStore, classes: np.ndarray, out: Path) -> None:
    """The store's quality, and its compiled COG, are what each tile's stack counted:
    the clear observations of spring and summer (autumn, filled, adds none) and the
    filled flag on every mapped pixel; nodata exactly where the class map is."""
    got = store.array("quality")[:]
    mapped = classes != NODATA
    assert (got[:, ~mapped] == NODATA).all()
    reader, lay, ts = TileReader(setup), store.layout, store.layout.grid.tile_size
    h = reader.grid.halo
    for r in range(lay.rows):
        for c in range(lay.cols):
            stack = reader.stack(Tile(lay.row0 + r, lay.col0 + c))
            tile = (slice(r * ts, (r + 1) * ts), slice(c * ts, (c + 1) * ts))
            core = (slice(h, h + ts), slice(h, h + ts))
            here = mapped[tile]
            spring_summer = stack.layer_items[0] + stack.layer_items[1]
            assert not stack.layer_items[2]  # no autumn scene: nothing of its own to count
            assert (stack.clear[core][here] <= len(spring_summer)).all()
            np.testing.assert_array_equal(got[0][tile][here], stack.clear[core][here])
            np.testing.assert_array_equal(got[1][tile][here], stack.filled[core][here])
    if mapped.any():
        assert (got[1][mapped] == 1).all() and (got[0][mapped] >= 2).all()  # a view a season
    cog = next(p for p in compile_store(store.uri, out) if p.name.endswith("_quality.tif"))
    with rasterio.open(cog) as src:
        np.testing.assert_array_equal(src.read(), got)


def test_a_run_restating_another_recipe_is_refused(stack_model, tmp_path):
    _, predict_yaml = stack_model
    spec = load_predict_config(_config(predict_yaml, tmp_path, time={"compositing": "mean"}))
    with pytest.raises(ClusterError, match=r"time\.compositing = 'mean'"):
        run_predict(spec, progress=False)
    narrow = load_predict_config(
        _config(
            predict_yaml, tmp_path / "summer", period={"start": "2023-06-01", "end": "2023-08-31"}
        )
    )
    with pytest.raises(ClusterError, match=r"sub-period 'spring'.*outside the period"):
        run_predict(narrow, progress=False)
    assert not (tmp_path / "map.zarr").exists() and not (tmp_path / "summer" / "map.zarr").exists()
    assert dataclasses.is_dataclass(spec.setup) and spec.setup.time == (("compositing", "mean"),)


def test_the_run_is_checked_with_the_checkpoints_recipe(stack_model, tmp_path):
    _, predict_yaml = stack_model
    checked = check_inputs(load_predict_config(_config(predict_yaml, tmp_path)).setup)
    assert checked.recipe.describe() == (
        "median of >= 1 clear observation(s) over spring 03-01..05-31, "
        "summer 06-01..08-31, autumn 09-01..11-30"
    )
    assert not (tmp_path / "map.zarr").exists()
