"""Many reads in flight: the same pixels as one read at a time, from local disk and from
an S3 server far away; reads issued ahead that turn out unneeded never fail a tile."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cluster.imagery import inflight
from cluster.imagery.catalog import Catalog
from cluster.imagery.composite import composite_window, read_stack
from cluster.imagery.reader import read_window
from cluster.imagery.stacitem import ItemRef
from cluster.imagery.temporal import TimeRecipe
from cluster.sample.catalog import S2_COLLECTION, write_region
from cluster.sample.phenocatalog import write_phenology_region
from cluster.sample.scene import BANDS, SampleSpec
from cluster.tiles.grid import Grid, Tile
from tests.netproxy import DelayProxy

SPEC = SampleSpec(width=384, height=384, stand_px=64)
GRID = Grid(SPEC.crs, SPEC.origin, SPEC.resolution, tile_size=128, halo=16)
TILES = [Tile(r, c) for r in range(3) for c in range(3)]
MOSAIC, MEDIAN = TimeRecipe(), TimeRecipe("median")


@pytest.fixture(scope="module")
def regions(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inflight")
    mosaic = write_region(root / "mosaic", SPEC, layouts=("s2",))
    median = write_phenology_region(root / "median", SPEC)
    return {"mosaic": mosaic.catalog, "median": median.catalog}


@pytest.fixture(autouse=True)
def restore_requests():
    yield
    inflight.set_requests(inflight.DEFAULT_REQUESTS, inflight.DEFAULT_HANDLES)
    inflight.close_datasets()


def open_catalog(uri: str) -> Catalog:
    return Catalog.open(uri, BANDS, SPEC.crs, collections=[S2_COLLECTION])


def read_tiles(cat: Catalog, recipe: TimeRecipe, tiles_at_once: int) -> list[np.ndarray]:
    """Every tile's input, ``tiles_at_once`` tiles read together as a reader does."""

    def read(tile: Tile) -> np.ndarray:
        bounds = GRID.tile_bounds(tile, halo=True)
        return read_stack(cat.items_for(bounds), bounds, GRID.tile_shape(halo=True), SPEC.crs,
                          recipe, 2023, n_bands=len(BANDS)).data  # fmt: skip

    with ThreadPoolExecutor(tiles_at_once, initializer=inflight.enter_env) as pool:
        return list(pool.map(read, TILES))


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert np.isfinite(want[0]).mean() > 0.5  # a read of something, not of nothing
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit, NaN where NaN


@pytest.mark.parametrize("name", ["mosaic", "median"])
def test_many_reads_at_once_read_what_one_at_a_time_reads(regions, name):
    recipe = MOSAIC if name == "mosaic" else MEDIAN
    cat = open_catalog(str(regions[name]))
    inflight.set_requests(1, 1)
    one_by_one = read_tiles(cat, recipe, tiles_at_once=1)
    inflight.set_requests(32, 2)
    assert_same(read_tiles(cat, recipe, tiles_at_once=8), one_by_one)
    assert max(inflight._live.values()) <= 2  # handles per file, as set


def _ruled_out(item: ItemRef, broken: Path) -> ItemRef:
    """``item`` with every mask class invalid and its first band a broken file."""
    assert item.mask is not None
    mask = dataclasses.replace(item.mask, invalid=tuple(range(256)))
    bands = (dataclasses.replace(item.bands[0], href=str(broken)), *item.bands[1:])
    return dataclasses.replace(item, id=f"{item.id}-cloudy", mask=mask, bands=bands)


def test_a_file_read_ahead_that_is_not_needed_fails_nothing(regions, tmp_path):
    """Bands are asked for with their item's mask; where the mask rules the item out,
    its broken band file must not fail the tile, as it did not when read in turn."""
    broken = tmp_path / "B02.tif"
    broken.write_bytes(b"not a tiff" * 100)
    for name, compose in (("mosaic", read_window), ("median", None)):
        cat = open_catalog(str(regions[name]))
        bounds, shape = GRID.tile_bounds(Tile(1, 1), halo=True), GRID.tile_shape(halo=True)
        items = cat.items_for(bounds)
        cloudy = [_ruled_out(items[0], broken)]
        if compose is read_window:
            want = read_window(items, bounds, shape, SPEC.crs)
            got = read_window(cloudy + items, bounds, shape, SPEC.crs)
        else:
            want = composite_window(items, bounds, shape, SPEC.crs, MEDIAN)
            got = composite_window(cloudy + items, bounds, shape, SPEC.crs, MEDIAN)
        np.testing.assert_array_equal(got, want)


@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.parametrize("name", ["mosaic", "median"])
def test_far_away_reads_overlap_and_equal_local_ones(s3_server, regions, monkeypatch, name):
    """The catalog on S3 behind 50 ms round trips: the same pixels as from local disk,
    in a fraction of the time the requests would take one after another."""
    root = regions[name].parent
    prefix = f"inflight-{name}"
    s3_server.upload_tree(root, prefix)
    catalog = s3_server.uri(f"{prefix}/{regions[name].relative_to(root).as_posix()}")
    recipe = MOSAIC if name == "mosaic" else MEDIAN
    want = read_tiles(open_catalog(str(regions[name])), recipe, tiles_at_once=1)
    rtt = 0.05
    with DelayProxy(s3_server.ports["s3"], rtt * 1000) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
        for var in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
            monkeypatch.delenv(var, raising=False)  # configure_gdal derives them again
        inflight.close_datasets()
        cat = open_catalog(catalog)
        before = proxy.counts()["requests"]
        start = time.perf_counter()
        got = read_tiles(cat, recipe, tiles_at_once=8)
        seconds = time.perf_counter() - start
        requests = proxy.counts()["requests"] - before
    inflight.close_datasets()
    os.environ.pop("AWS_S3_ENDPOINT", None)  # derived from the proxy's endpoint
    assert_same(got, want)
    one_after_another = requests * rtt
    print(f"\n{name}: {len(TILES)} tiles, {requests} requests in {seconds:.2f} s "
          f"({one_after_another:.1f} s one after another)")  # fmt: skip
    assert requests >= len(TILES)
    assert seconds < 0.5 * one_after_another


def test_handles_kept_open_close_where_gdal_messages_are_logged(regions):
    """With CPL_DEBUG on, GDAL names the (signed) URL of each handle it closes; a
    handle closed outside a GDAL environment, as the kept ones would be at exit, has
    that printed straight to stderr, past the redacting loggers."""
    href = str(next(Path(regions["mosaic"]).parent.rglob("*.tif")))
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format='%(message)s')\n"
        "from cluster.imagery import inflight\n"
        f"with inflight.dataset({href!r}):\n"
        "    pass\n"
    )
    env = {**os.environ, "CPL_DEBUG": "ON", "PYTHONPATH": str(Path(__file__).parents[3])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    assert "GDALClose" not in done.stderr, done.stderr
    assert f"GDALClose({href}" in done.stdout, done.stdout  # logged, hence redacted
