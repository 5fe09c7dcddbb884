"""Chips where the labels are, read by the run's reader, made on Ray, resumable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import from_bounds

from cluster.errors import ClusterError
from cluster.imagery.catalog import Catalog
from cluster.imagery.reader import read_window
from cluster.sample.catalog import write_region
from cluster.sample.references import write_references
from cluster.sample.scene import BANDS, CLASS_NAMES, SampleSpec
from cluster.tiles.grid import Grid
from cluster.training.chips import ChipMaker, ChipSpec, build_chips
from cluster.training.chipstore import ChipStore
from cluster.training.labels import LabelSpec, open_labels
from cluster.training.split import TEST, TRAIN, UNUSED, VAL, SplitSpec
from cluster.training.train import CatalogTrainSpec, check_failed, chip_split
from unet.model import UNetConfig
from unet.train import Budget

pytestmark = pytest.mark.slow
SPEC = SampleSpec(seed=2, width=256, height=256, stand_px=64)
CHIP, HALO = 32, 16


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    region = write_region(tmp_path_factory.mktemp("chips-region"), SPEC, layouts=("s2",))
    return region, write_references(region, SPEC)


def _spec(region, labels: Path, field: str = "species", **changes) -> ChipSpec:
    base = {
        "catalog": str(region.catalog),
        "grid": Grid(SPEC.crs, SPEC.origin, SPEC.resolution, CHIP, HALO),
        "bands": BANDS,
        "class_names": CLASS_NAMES,
        "labels": LabelSpec(str(labels), field=field),
        "collections": ("sentinel-2-l2a",),
    }
    return ChipSpec(**(base | changes))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_chips_are_the_runs_pixels_and_the_labels(local_ray, region, tmp_path):
    sample, refs = region
    spec = _spec(sample, refs.stands)
    summary = build_chips(spec, str(tmp_path / "chips.zarr"), progress=False)
    store = ChipStore.open(str(tmp_path / "chips.zarr"))
    labels = open_labels(spec.labels, CLASS_NAMES, SPEC.crs)
    assert summary.made == len(store) == len(labels.cells(spec.grid)) > 40
    assert store.done().all() and not summary.failed
    catalog = Catalog.open(str(sample.catalog), BANDS, SPEC.crs, collections=["sentinel-2-l2a"])
    counts = store.counts()
    with rasterio.open(sample.labels) as truth_file:
        for index in range(0, len(store), 7):
            tile = store.tile(index)
            bounds = spec.grid.tile_bounds(tile, halo=True)
            image, label = store.read(index)
            want = read_window(catalog.items_for(bounds), bounds, image.shape[1:], SPEC.crs)
            np.testing.assert_array_equal(image, want)  # the run's reader, bit for bit
            truth = truth_file.read(1, window=from_bounds(*bounds, truth_file.transform),
                                    boundless=True, fill_value=255)  # fmt: skip
            truth[~np.isfinite(image).all(axis=0)] = 255
            assert (label == truth).mean() > 0.99
            core = label[HALO:-HALO, HALO:-HALO]
            want_counts = np.bincount(core[core != 255], minlength=len(CLASS_NAMES))
            np.testing.assert_array_equal(counts[index], want_counts)


def test_an_interrupted_build_resumes_to_the_same_store(local_ray, region, tmp_path):
    sample, refs = region
    spec = _spec(sample, refs.points, field="class_id")
    whole = tmp_path / "whole.zarr"
    build_chips(spec, str(whole), progress=False)
    cut = tmp_path / "cut.zarr"
    made = ChipStore.open(str(whole))
    store = ChipStore.create_or_open(str(cut), spec.recipe(), spec.grid, spec.bands,
                                     spec.class_names, [made.tile(i) for i in range(len(made))],
                                     made.label_counts)  # fmt: skip
    maker = ChipMaker(spec, str(cut), open_labels(spec.labels, CLASS_NAMES, SPEC.crs))
    first = maker.make(list(range(len(store) // 2)))
    store.mark_done([(r.index, np.asarray(r.counts)) for r in first])
    maker.make([len(store) // 2])  # written but not recorded: the driver died here
    summary = build_chips(spec, str(cut), progress=False)
    assert summary.skipped == len(store) // 2 and summary.made == len(store) - summary.skipped
    assert _files(cut) == _files(whole)
    again = build_chips(spec, str(cut), progress=False)
    assert again.made == 0 and again.skipped == len(store)


def test_another_recipe_is_refused(local_ray, region, tmp_path):
    sample, refs = region
    build_chips(_spec(sample, refs.stands), str(tmp_path / "c.zarr"), progress=False)
    other = _spec(sample, refs.stands, units="dn")
    with pytest.raises(ClusterError, match=r"c.zarr was made from another recipe .*units"):
        build_chips(other, str(tmp_path / "c.zarr"), progress=False)


def test_labels_outside_the_catalog_are_refused(region, tmp_path):
    sample, refs = region
    doc = json.loads(refs.points.read_text())
    far = json.loads(json.dumps(doc["features"][0]))
    lon, lat = far["geometry"]["coordinates"]
    far["geometry"]["coordinates"] = [lon + 0.2, lat]  # some 14 km east of the scenes
    doc["features"].append(far)
    path = tmp_path / "points.geojson"
    path.write_text(json.dumps(doc))
    spec = _spec(sample, path, field="class_id")
    with pytest.raises(ClusterError, match=r"points.geojson: 1 of \d+ chips holding labels have "
                       r"no imagery in catalog .* e.g. chip r\d+_c\d+"):  # fmt: skip
        build_chips(spec, str(tmp_path / "c.zarr"), progress=False)
    assert not (tmp_path / "c.zarr").exists()


def test_digital_numbers_for_reflectance_stop_the_build(local_ray, region, tmp_path):
    sample, refs = region
    copy = tmp_path / "sample"
    shutil.copytree(sample.root, copy)
    for path in sorted(copy.glob("sentinel-2-l2a/*/*.json")):
        doc = json.loads(path.read_text())
        for asset in doc["assets"].values():
            asset.pop("raster:bands", None)  # a mirror without the scale
        doc["properties"].pop("platform")
        doc["properties"].pop("constellation", None)
        doc["collection"] = "mirror"  # nothing says Sentinel-2: no convention applies
        path.write_text(json.dumps(doc))
    spec = _spec(sample, refs.stands, catalog=str(copy / "catalog.json"), collections=None)
    with pytest.raises(ClusterError, match=r"band \w+ of item S2\w+ .*digital numbers, not "
                       r"reflectance.*chip making stopped"):  # fmt: skip
        build_chips(spec, str(tmp_path / "c.zarr"), progress=False)


def test_failed_chips_stop_training_and_their_remaking_keeps_the_split(local_ray, region, tmp_path):
    """Chips that fail are counted against training.max_failed_chips, and the split
    comes from the labels of every chip: making the failed ones later changes none
    of it."""
    sample, refs = region
    copy = tmp_path / "sample"
    shutil.copytree(sample.root, copy)
    spec = _spec(sample, refs.stands, catalog=str(copy / "catalog.json"))
    first = Catalog.open(spec.catalog, BANDS, SPEC.crs, collections=["sentinel-2-l2a"]).items[0]
    broken = Path(first.bands[2].href)
    good = broken.read_bytes()
    broken.write_bytes(good[:1000])  # cut off: every chip reads this item first
    train_spec = CatalogTrainSpec(
        chips=spec, chip_store=str(tmp_path / "chips.zarr"),
        split=SplitSpec(block_px=64, buffer_px=16, fractions=(0.6, 0.2, 0.2)),
        output=tmp_path / "model", class_colors=("#000000",) * len(CLASS_NAMES),
        model=UNetConfig(len(BANDS), len(CLASS_NAMES), depth=2), budget=Budget(1.0, 1, 1, 1e-3, 0),
    )  # fmt: skip
    made = build_chips(spec, train_spec.chip_store, progress=False)
    store = ChipStore.open(train_spec.chip_store)
    done = store.done()
    assert len(made.failed) == (~done).sum() > 10 and done.sum() > 10  # some blocks were whole
    with pytest.raises(ClusterError, match=r"chips holding labels failed \(\d+\.\d%.*allows 1\.0%"):
        check_failed(store, made, 0.01)
    check_failed(store, made, 1.0)  # allowed: trains without them
    before = chip_split(train_spec)
    assert (before.chip_split[~done] == UNUSED).all()  # not made: in no set yet

    broken.write_bytes(good)  # repaired: the rerun makes just the failed chips
    remade = build_chips(spec, train_spec.chip_store, progress=False)
    assert remade.made == (~done).sum() and remade.skipped == done.sum() and not remade.failed
    check_failed(store, remade, 0.0)
    after = chip_split(train_spec)
    assert after.blocks == before.blocks  # every block stays in its set
    np.testing.assert_array_equal(after.chip_split[done], before.chip_split[done])
    labelled = store.label_counts().sum(axis=1) > 0
    assert (after.chip_split[labelled] != UNUSED).all()
    assert {int(c) for c in after.chip_split[labelled]} == {TRAIN, VAL, TEST}
