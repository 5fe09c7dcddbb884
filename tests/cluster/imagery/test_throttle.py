"""Object storage under load: GDAL's retries counted (and kept out of the log), and the
requests in flight halved while the store throttles, grown back once it stops."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from cluster.imagery import inflight, throttle
from cluster.imagery.catalog import Catalog
from cluster.imagery.reader import read_window
from cluster.sample.catalog import S2_COLLECTION, write_region
from cluster.sample.scene import BANDS, SampleSpec
from cluster.tiles.grid import Grid, Tile
from tests.faultproxy import FaultProxy

SPEC = SampleSpec(width=384, height=384, stand_px=64)
GRID = Grid(SPEC.crs, SPEC.origin, SPEC.resolution, tile_size=128, halo=16)
TILES = [Tile(r, c) for r in range(3) for c in range(3)]


def test_the_window_halves_once_per_burst_and_grows_back():
    window = throttle.Window(16)
    window.throttled()
    window.throttled()  # the same burst: no second cut
    assert (window.limit, window.cuts) == (8, 1)
    window._last_cut -= throttle.COOL_S  # a second later, the store still says slow down
    window.throttled()
    assert (window.limit, window.lowest, window.cuts) == (4, 4, 2)
    for _ in range(4 + 5 + 6 + 7):  # as many calm requests as the window holds: one more
        window.acquire()
        window.release()
    assert window.limit == 8
    for _ in range(100):
        window.acquire()
        window.release()
    assert window.limit == 16  # never above what the run asked for


def read_all(cat: Catalog) -> list[np.ndarray]:
    def read(tile: Tile) -> np.ndarray:
        bounds = GRID.tile_bounds(tile, halo=True)
        return read_window(cat.items_for(bounds), bounds, GRID.tile_shape(halo=True), SPEC.crs)

    with ThreadPoolExecutor(4, initializer=inflight.enter_env) as pool:
        return list(pool.map(read, TILES))


@pytest.mark.s3
@pytest.mark.slow
def test_reads_through_throttling_and_resets_are_retried_and_counted(
    s3_server, tmp_path, monkeypatch, caplog
):
    region = write_region(tmp_path / "region", SPEC, layouts=("s2",))
    open_catalog = lambda uri: Catalog.open(uri, BANDS, SPEC.crs, collections=[S2_COLLECTION])  # noqa: E731
    want = read_all(open_catalog(str(region.catalog)))
    root = s3_server.upload_tree(tmp_path / "region", "throttle")
    uri = f"{root}/{region.catalog.relative_to(tmp_path / 'region').as_posix()}"
    cat = open_catalog(uri)  # before the faults: only the imagery meets them
    with FaultProxy(s3_server.ports["s3"], slowdown=0.2, reset=0.05, stall=0.05, stall_s=4,
                    seed=5) as proxy:  # fmt: skip
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint_url)
        monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "1")
        for var in ("AWS_S3_ENDPOINT", "AWS_HTTPS"):
            monkeypatch.delenv(var, raising=False)  # configure_gdal derives them again
        inflight.close_datasets()
        throttle.take()
        caplog.set_level(logging.DEBUG)
        got = read_all(cat)
        counts, seen = throttle.take(), proxy.counts()
    inflight.close_datasets()
    os.environ.pop("AWS_S3_ENDPOINT", None)  # derived from the proxy's endpoint
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert seen["slowdown"] > 0
    assert 0 < counts["throttled"] <= min(counts["retries"], seen["slowdown"])
    assert counts["slowed"] >= 1
    assert not [r for r in caplog.records if "Retrying again" in r.getMessage()]
