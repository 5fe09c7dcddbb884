"""``plan_run``: the tiles, items, bytes and GPU-hours a run would take, without running it."""

import dataclasses
import json
import math
import os
import re
import tracemalloc

import pytest
import shapely
from rasterio.warp import transform_geom

from cluster.errors import ClusterError
from cluster.imagery.catalog import Catalog
from cluster.plan import OUTPUT_BYTES_PER_PIXEL, plan_run
from cluster.predict.setup import PredictorSetup
from cluster.sample.catalog import write_region
from cluster.sample.country import FootprintSpec, footprint_items, write_items
from cluster.sample.scene import BANDS, CLASS_COLORS, CLASS_NAMES, SampleSpec
from cluster.tiles.grid import Grid, count_tiles, iter_tiles
from cluster.tiles.region import load_region
from unet.checkpoint import ModelCard, save_checkpoint
from unet.context import context_record
from unet.model import UNet, UNetConfig

CRS = "EPSG:25832"
KM = 1000.0
# A region with a hole; its edges fall mid-item, so no item merely touches it.
REGION = shapely.box(501 * KM, 5501 * KM, 519 * KM, 5513 * KM).difference(
    shapely.box(507.5 * KM, 5505.5 * KM, 512.5 * KM, 5508.5 * KM)
)
MODEL_BANDS = ("red", "green", "nir")
SIZES = {"red": 1_000, "green": 20_000, "blue": 300_000, "nir": 4_000_000, "swir16": 5e7}
LINE = re.compile(
    r"tiles=(\d+) items=(\d+) input_gb=(\d+\.\d{3}) output_gb=(\d+\.\d{3}) gpu_hours=(\d+\.\d{2})"
)


def item(item_id, box, *, when="2023-06-01T10:00:00Z", collection="s2", cloud=None, k=1):
    """An S2-like item with one single-band asset per band (sizes scaled by ``k``) and a
    large thumbnail that must never count."""
    lonlat = transform_geom(CRS, "EPSG:4326", shapely.box(*box).__geo_interface__)
    geometry = {"type": "Polygon", "coordinates": [[list(p) for p in lonlat["coordinates"][0]]]}
    assets = {
        name: {
            "href": f"s3://imagery/{item_id}/{name}.tif",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "file:size": int(size * k),
            "eo:bands": [{"name": name, "common_name": name}],
        }
        for name, size in SIZES.items()
    }
    assets["thumbnail"] = {"href": "s3://x/t.jpg", "roles": ["thumbnail"], "file:size": 10**9}
    props = {"datetime": when} | ({"eo:cloud_cover": cloud} if cloud is not None else {})
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": item_id, "collection": collection,
        "geometry": geometry,
        "properties": props, "assets": assets, "links": [],
    }  # fmt: skip


def tile_box(e, n, size=2):
    return (e * KM, n * KM, (e + size) * KM, (n + size) * KM)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """2 km items over and around the region, plus items each filter must drop."""
    root = tmp_path_factory.mktemp("plan")
    items, k = [], 0
    for e in range(496, 524, 2):
        for n in range(5496, 5518, 2):
            k += 1
            items.append(item(f"t_{e}_{n}", tile_box(e, n), k=k))
    inside = [tile_box(502, 5502), tile_box(514, 5510), tile_box(504, 5500)]
    items += [item(f"old_{i}", b, when="2015-07-01T10:00:00Z") for i, b in enumerate(inside)]
    items += [item(f"cloudy_{i}", b, cloud=90.0) for i, b in enumerate(inside)]
    items += [item(f"other_{i}", b, collection="other") for i, b in enumerate(inside)]
    items += [item(f"clear_{i}", b, cloud=10.0, k=0.5) for i, b in enumerate(inside)]
    items.append(item("t_502_5502", tile_box(502, 5502), k=1000))  # a duplicate id: dropped
    write_items(root / "items.ndjson", iter(items))
    write_items(root / "items.json", iter(items))
    region = root / "region.geojson"
    region.write_text(json.dumps({"type": "Feature", "crs": CRS, "properties": {},
                                  "geometry": shapely.geometry.mapping(REGION)}))  # fmt: skip
    return root, items


def expected(items, bands=MODEL_BANDS):
    """Brute force, per item with the plain per-item transform: (ids, bytes)."""
    seen, ids, size = set(), [], 0
    for doc in items:
        ok = (
            doc["collection"] == "s2"
            and doc["properties"]["datetime"] >= "2020-01-01"
            and doc["properties"].get("eo:cloud_cover", 0) <= 30
            and doc["id"] not in seen
        )
        if not ok:
            continue
        seen.add(doc["id"])
        footprint = shapely.geometry.shape(transform_geom("EPSG:4326", CRS, doc["geometry"]))
        if footprint.intersection(REGION).area > 0:
            ids.append(doc["id"])
            size += sum(doc["assets"][b]["file:size"] for b in bands)
    return ids, size


def checkpoint(path, bands=MODEL_BANDS, resolution=10.0):
    config = UNetConfig(in_bands=len(bands), num_classes=len(CLASS_NAMES), base_width=2, depth=2)
    model = UNet(config)
    card = ModelCard(config, tuple(bands), (0.1,) * len(bands), (0.05,) * len(bands),
                     CLASS_NAMES, CLASS_COLORS, resolution,
                     extra={"context": context_record(model, None)})  # fmt: skip
    save_checkpoint(path, model, card)
    return str(path)


def setup_for(root, catalog="items.ndjson", resolution=10.0, tile_size=64, **kw):
    region = load_region(root / "region.geojson", CRS)
    args = {
        "checkpoint": checkpoint(root / "model.safetensors", resolution=resolution),
        "catalog": str(root / catalog), "collections": ("s2",), "start": "2020-01-01",
        "end": "2024-12-31", "max_cloud_cover": 30.0, "region": str(root / "region.geojson"),
        "grid": Grid.covering(CRS, region.bounds, resolution, tile_size, halo=24),
        "store": str(root / "unused.zarr"), "batch_size": 4,
    } | kw  # fmt: skip
    return PredictorSetup(**args), region


def test_tiles_items_and_bytes_are_exactly_what_the_run_would_take(scene):
    root, items = scene
    setup, region = setup_for(root)
    plan = plan_run(setup, tiles_per_gpu_second=2.5)  # bands from the checkpoint's header
    listed = sum(1 for _ in iter_tiles(setup.grid, region))
    assert plan.tiles == count_tiles(setup.grid, region) == listed
    ids, size = expected(items)
    # Of the 154 grid items 70 overlap the region's box and 2 of those lie in its hole;
    # old, cloudy, other-collection and duplicate items are dropped, clear ones kept.
    assert plan.items == len(ids) == 68 + 3
    assert plan.input_bytes == size  # red + green + nir of those items, never blue/swir/thumbnail
    assert plan.bands == MODEL_BANDS
    # The same items a run's catalog keeps and meets:
    catalog = Catalog.open(setup.catalog, MODEL_BANDS, CRS, collections=["s2"],
                           start="2020-01-01", end="2024-12-31", max_cloud_cover=30)  # fmt: skip
    met = [r.id for r in catalog.items
           if shapely.from_wkb(r.footprint_wkb).intersection(region.geometry).area > 0]  # fmt: skip
    assert sorted(met) == sorted(ids)


def test_a_featurecollection_plans_like_ndjson(scene):
    root, _ = scene
    a = plan_run(setup_for(root)[0], 1.0)
    b = plan_run(setup_for(root, catalog="items.json")[0], 1.0)
    assert a == dataclasses.replace(b, catalog=a.catalog)


def test_given_bands_pick_the_assets(scene):
    root, items = scene
    setup, _ = setup_for(root, checkpoint=str(root / "absent.safetensors"))
    plan = plan_run(setup, 1.0, bands=["blue"])  # no checkpoint read when bands are given
    assert plan.input_bytes == expected(items, ("blue",))[1]


def test_gpu_hours_output_and_line(scene):
    root, _ = scene
    setup, _ = setup_for(root)
    plan = plan_run(setup, tiles_per_gpu_second=0.25)
    assert plan.gpu_hours == pytest.approx(plan.tiles / 0.25 / 3600)
    assert plan.output_bytes == round(plan.tiles * 64 * 64 * OUTPUT_BYTES_PER_PIXEL)
    lines = plan.lines()
    assert lines[-1] == plan.line() and len(lines) > 4
    match = LINE.fullmatch(plan.line())
    assert match, plan.line()
    tiles, items, input_gb, output_gb, hours = match.groups()
    assert (int(tiles), int(items)) == (plan.tiles, plan.items)
    assert float(input_gb) == round(plan.input_bytes / 1e9, 3)
    assert float(output_gb) == round(plan.output_bytes / 1e9, 3)
    assert float(hours) == round(plan.gpu_hours, 2)
    assert any("km²" in line and f"{plan.tiles:,}" in line for line in lines)


@pytest.mark.parametrize("tps", [0, -1.0, math.nan, math.inf, True, "2"])
def test_a_throughput_that_is_not_positive_is_refused(scene, tps):
    root, _ = scene
    with pytest.raises(ClusterError, match="tiles_per_gpu_second"):
        plan_run(setup_for(root)[0], tps)


def test_refused_like_the_run(scene, tmp_path):
    root, _ = scene
    setup, _ = setup_for(root)
    with pytest.raises(ClusterError, match=r"has no band 'red edge'.*collections="):
        plan_run(setup, 1.0, bands=["red", "red edge"])
    five = dataclasses.replace(setup, grid=Grid(CRS, setup.grid.origin, 5.0, 64, 8))
    with pytest.raises(ClusterError, match="expects 10 m pixels but the grid is 5 m"):
        plan_run(five, 1.0)
    with pytest.raises(ClusterError, match=r"none of its \d+ items pass the filters"):
        plan_run(setup_for(root, start="2030-01-01", end="2030-12-31")[0], 1.0)
    far = tmp_path / "far.geojson"
    far.write_text(json.dumps({"type": "Polygon", "crs": CRS, "coordinates": [
        [[600e3, 5300e3], [610e3, 5300e3], [610e3, 5310e3], [600e3, 5300e3]]]}))  # fmt: skip
    with pytest.raises(ClusterError, match=r"none of its \d+ items .* meets region .*far\.geojson"):
        plan_run(setup_for(root, region=str(far))[0], 1.0)


def test_input_size_from_stat_then_shape_else_unknown(tmp_path):
    local = tmp_path / "red.tif"
    local.write_bytes(b"x" * 12_345)
    base = item("a", tile_box(502, 5502))
    shaped = {"href": "s3://x/b.tif", "proj:shape": [100, 200],
              "raster:bands": [{"data_type": "uint16"}, {"data_type": "float32"}],
              "eo:bands": [{"name": "red"}, {"name": "nir"}]}  # fmt: skip
    docs = []
    for i, assets in enumerate([
        {"red": {"href": str(local)}, "nir": {"href": "s3://x/nir.tif", "file:size": 7}},
        {"image": shaped},
        {"image": {"href": "s3://x/c.tif", "eo:bands": [{"name": "red"}, {"name": "nir"}]}},
    ]):  # fmt: skip
        docs.append(base | {"id": f"item{i}", "assets": assets})
    write_items(tmp_path / "items.ndjson", iter(docs))
    (tmp_path / "region.geojson").write_text(
        json.dumps(
            {
                "type": "Polygon",
                "crs": CRS,
                "coordinates": [list(map(list, REGION.exterior.coords))],
            }
        )
    )
    setup, _ = setup_for(tmp_path)
    plan = plan_run(setup, 1.0, bands=["red", "nir"])
    assert plan.items == 3
    assert plan.input_bytes == 12_345 + 7 + 100 * 200 * (2 + 4)  # stat, file:size, shape
    assert (plan.estimated, plan.unsized) == (1, 1)
    text = "\n".join(plan.lines())
    assert "input size unknown for 1 items" in text and "1 items sized from proj:shape" in text


def test_static_catalog_and_checkpoint_header(tmp_path):
    """The sample region's pystac catalog (per-band S2 files, 4-band orthophotos) sized
    from the files on disk; the checkpoint's bands read from its header alone."""
    spec = SampleSpec(width=256, height=256, stand_px=64)
    sample = write_region(tmp_path / "sample", spec)
    region = load_region(sample.boundary, spec.crs)
    ckpt = checkpoint(tmp_path / "m.safetensors", bands=BANDS, resolution=spec.resolution)
    setup = PredictorSetup(
        ckpt, str(sample.catalog), None, None, None, None, str(sample.boundary),
        Grid.covering(spec.crs, region.bounds, spec.resolution, 64, 24), "unused", 2,
    )  # fmt: skip
    plan = plan_run(setup, 3.0)
    catalog = Catalog.open(str(sample.catalog), BANDS, spec.crs)
    met = [r for r in catalog.items
           if shapely.from_wkb(r.footprint_wkb).intersection(region.geometry).area > 0]  # fmt: skip
    assert plan.items == len(met) == 8
    files = {b.href for r in met for b in r.bands}
    assert len(files) == 4 * 4 + 4  # S2: a file per band; orthophotos: one 4-band file
    assert plan.input_bytes == sum(os.path.getsize(f) for f in files)
    assert plan.tiles == count_tiles(setup.grid, region)


def test_memory_does_not_grow_with_the_tile_count(tmp_path):
    """About 100 km x 100 km at 1 m in 64-px tiles is 2.4 million tiles: listed, their
    ids alone would take 170 MB. The plan's Python allocations stay those of a
    hundred times fewer tiles."""
    box = shapely.box(400 * KM, 5400 * KM, 500 * KM, 5500 * KM)
    outline = transform_geom(CRS, "EPSG:4326", box.__geo_interface__)
    write_items(tmp_path / "items.ndjson",
                footprint_items(outline, FootprintSpec(tile_m=5000, gsd=1.0)))  # fmt: skip
    inset = box.buffer(-KM, join_style="mitre")  # no item edge on the region's edge
    (tmp_path / "region.geojson").write_text(
        json.dumps(
            {"type": "Polygon", "crs": CRS, "coordinates": [list(map(list, inset.exterior.coords))]}
        )
    )
    peaks, tiles = [], []
    for tile_size in (640, 64):
        setup, region = setup_for(tmp_path, resolution=1.0, tile_size=tile_size, collections=None,
                                  start=None, end=None, max_cloud_cover=None)  # fmt: skip
        tracemalloc.start()
        try:
            plan = plan_run(setup, 1.0, bands=["red", "nir"])
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert plan.items == 400
        assert plan.tiles == count_tiles(setup.grid, region)
        tiles.append(plan.tiles)
    assert tiles[1] > 2.3e6 and tiles[1] > 90 * tiles[0]
    assert peaks[1] < 50e6, f"plan over {tiles[1]:,} tiles peaked at {peaks[1] / 1e6:.0f} MB"
    assert peaks[1] < peaks[0] + 5e6, [p / 1e6 for p in peaks]
