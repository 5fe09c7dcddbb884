"""Quicklook PNG: size bound, class colours where known, legend, overviews, same bytes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from cluster.errors import ClusterError
from cluster.maps.compile import compile_store
from cluster.maps.quicklook import legend_width, write_quicklook
from cluster.predict.store import StoreLayout, TileStore
from cluster.tiles.grid import Grid, Tile
from tests.cluster.maps.test_compile import ATTRS

TS = 256
N = 16  # 16 x 16 tiles of 256 px: a 4096 x 4096 map
GRID = Grid("EPSG:25832", (300000.0, 5600000.0), 10.0, TS, 0)
LAYOUT = StoreLayout(GRID, row0=0, col0=0, rows=N, cols=N)
EMPTY = (2, 3)  # tile never written: nodata


def tile_class(r: int, c: int) -> int:
    return (r // 4 + c // 4) % len(ATTRS.class_names)  # uniform 4 x 4 tile blocks


@pytest.fixture(scope="module")
def cogs(tmp_path_factory) -> list[Path]:
    uri = str(tmp_path_factory.mktemp("store") / "big.zarr")
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    conf = np.full((TS, TS), 200, np.uint8)
    for r in range(N):
        for c in range(N):
            if (r, c) != EMPTY:
                store.write_tile(Tile(r, c), np.full((TS, TS), tile_class(r, c), np.uint8), conf)
    return compile_store(uri, tmp_path_factory.mktemp("cog"), max_part_px=2048)


def rgb(color: str) -> tuple[int, ...]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


@pytest.fixture(scope="module")
def png(cogs, tmp_path_factory) -> tuple[Path, float]:
    vrt = next(p for p in cogs if p.name.endswith("_class.vrt"))
    t0 = time.perf_counter()
    out = write_quicklook(vrt, tmp_path_factory.mktemp("ql") / "ql.png", max_px=512)
    return out, time.perf_counter() - t0


def test_size_and_colours(png):
    path, _ = png
    image = (imread(path)[..., :3] * 255).round().astype(int)
    h, w = image.shape[:2]
    assert max(h, w) <= 512
    map_px = 512 - legend_width(512)
    assert w == 512 and h == map_px  # map plus legend beside it
    per_tile = map_px / N
    for r, c in [(0, 0), (5, 9), (10, 1), (15, 15), (7, 4)]:
        y, x = int((r + 0.5) * per_tile), int((c + 0.5) * per_tile)
        assert tuple(image[y, x]) == rgb(ATTRS.class_colors[tile_class(r, c)]), (r, c)
    y, x = (int((v + 0.5) * per_tile) for v in EMPTY)
    assert tuple(image[y, x]) == (255, 255, 255)  # nodata


def test_legend_drawn(png):
    path, _ = png
    image = (imread(path)[..., :3] * 255).round().astype(int)
    legend = image[:, 512 - legend_width(512) :]
    for color in ATTRS.class_colors:  # each class's swatch is in the legend
        assert (legend == rgb(color)).all(axis=-1).sum() >= 20, color
    assert (legend.sum(axis=-1) < 100).sum() > 50  # dark text of the names


def test_reads_overviews_fast(png):
    _, seconds = png
    assert seconds < 3.0  # a full-resolution read of 4096^2 through the VRT is far slower


def test_single_cog_and_same_bytes(cogs, tmp_path):
    part = next(p for p in cogs if p.name.endswith("_class.tif"))
    a = write_quicklook(part, tmp_path / "a.png", max_px=300)
    b = write_quicklook(part, tmp_path / "b" / "b.png", max_px=300)
    assert a.read_bytes() == b.read_bytes()
    assert max(imread(a).shape[:2]) <= 300


def test_not_a_class_map(cogs, tmp_path):
    conf = next(p for p in cogs if p.name.endswith("_confidence.tif"))
    with pytest.raises(ClusterError, match="lacks the CLASS_NAMES"):
        write_quicklook(conf, tmp_path / "x.png")


def test_pixels_come_from_the_overviews(tmp_path):
    """Full resolution says class 1, the (stale) overviews class 0: the PNG shows class 0."""
    import json

    import rasterio
    from rasterio.enums import Resampling as R
    from rasterio.transform import from_origin

    path = tmp_path / "stale.tif"
    profile = {"driver": "GTiff", "width": 2048, "height": 2048, "count": 1, "dtype": "uint8"}
    profile |= {"tiled": True, "crs": "EPSG:25832", "transform": from_origin(0, 0, 10, 10)}
    with rasterio.open(path, "w", nodata=255, **profile) as dst:
        dst.write(np.zeros((1, 2048, 2048), np.uint8))
        dst.build_overviews([2, 4, 8], R.nearest)
        dst.update_tags(CLASS_NAMES=json.dumps(ATTRS.class_names[:2]))
        dst.update_tags(CLASS_COLORS=json.dumps(ATTRS.class_colors[:2]))
    with rasterio.open(path, "r+") as dst:
        dst.write(np.ones((1, 2048, 2048), np.uint8))  # overviews not rebuilt
    image = (imread(write_quicklook(path, tmp_path / "q.png", max_px=384))[..., :3] * 255).round()
    assert tuple(image[100, 100].astype(int)) == rgb(ATTRS.class_colors[0])
