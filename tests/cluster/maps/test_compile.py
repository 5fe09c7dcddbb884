"""Zarr store -> COGs: validity, georeferencing, colour table, exact pixels, parts + VRT,
bounded memory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate

from cluster.errors import ClusterError
from cluster.maps.compile import (
    _GDAL_ENV,
    _RESAMPLING,
    ARRAYS,
    _write_source,
    compile_store,
    overview_count,
    plan_parts,
)
from cluster.maps.overviews import halve
from cluster.predict.store import RunAttrs, StoreLayout, TileStore
from cluster.sample.scene import CLASS_COLORS, CLASS_NAMES
from cluster.tiles.grid import Grid, Tile

TS = 256
GRID = Grid("EPSG:25832", (300000.0, 5600000.0), 10.0, TS, 0)
LAYOUT = StoreLayout(GRID, row0=3, col0=5, rows=3, cols=4)
ATTRS = RunAttrs(
    run_id="run-a",
    checkpoint_sha256="ab" * 32,
    class_names=CLASS_NAMES,
    class_colors=CLASS_COLORS,
    software_version="0.1.0",
)
ROOT = Path(__file__).resolve().parents[3]


def _fill(store: TileStore, skip: set[tuple[int, int]]) -> None:
    lay = store.layout
    for r in range(lay.rows):
        for c in range(lay.cols):
            if (r, c) in skip:
                continue
            rng = np.random.default_rng([r, c])
            classes = rng.integers(0, 4, (TS, TS), dtype=np.uint8)
            classes[: 10 + r, 5:40] = 255
            classes[rng.random((TS, TS)) < 0.05] = 255
            conf = rng.integers(0, 255, (TS, TS), dtype=np.uint8)
            conf[classes == 255] = 255
            quality = np.stack([rng.integers(0, 30, (TS, TS)), rng.integers(0, 2, (TS, TS))])
            quality = quality.astype(np.uint8)
            quality[:, classes == 255] = 255
            store.write_tile(Tile(lay.row0 + r, lay.col0 + c), classes, conf, quality)


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("store") / "run.zarr")
    _fill(TileStore.create_or_open(uri, LAYOUT, ATTRS), skip={(1, 2)})  # one unwritten tile
    return uri


@pytest.fixture(scope="module")
def expected(store_uri) -> dict[str, np.ndarray]:
    store = TileStore.open(store_uri)
    return {a: np.asarray(store.array(a)[...]) for a in ("class", "confidence", "quality")}


@pytest.fixture(scope="module")
def single(store_uri, tmp_path_factory) -> list[Path]:
    return compile_store(store_uri, tmp_path_factory.mktemp("cog"))


def test_single_part_files(single):
    assert [p.name for p in single] == [
        "run-a_class.tif",
        "run-a_confidence.tif",
        "run-a_quality.tif",
    ]
    assert not [p for p in single[0].parent.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.parametrize("index", [0, 1, 2])
def test_cog_valid_georeferenced_exact(single, expected, index):
    path = single[index]
    array = ("class", "confidence", "quality")[index]
    valid, errors, _warnings = cog_validate(str(path))
    assert valid and errors == []
    with rasterio.open(path) as ds:
        assert ds.crs == CRS.from_user_input("EPSG:25832")
        assert ds.transform == LAYOUT.transform
        assert (ds.height, ds.width) == LAYOUT.shape
        bands = 2 if array == "quality" else 1
        assert ds.nodata == 255 and ds.dtypes == ("uint8",) * bands
        assert ds.block_shapes == [(512, 512)] * bands
        assert ds.compression is not None and ds.compression.value == "DEFLATE"
        np.testing.assert_array_equal(ds.read(), expected[array].reshape(bands, *LAYOUT.shape))
        factors = ds.overviews(1)
        assert factors and max(ds.width, ds.height) / factors[-1] < 512
        assert ds.tags()["RUN_ID"] == "run-a"
        assert array in ds.descriptions[0] or array == "quality"


def test_quality_cog_bands_and_overviews(single, expected):
    """Two described bands, each overview level the AVERAGE of the one above (an
    overview's mean count; its flag where at least half its pixels were filled)."""
    with rasterio.open(single[2]) as ds:
        assert ds.count == 2 and ds.nodatavals == (255, 255)
        assert ds.descriptions[0].startswith("clear observations used")
        assert ds.descriptions[1].startswith("filled from a neighbouring sub-period")
        assert json.loads(ds.tags()["QUALITY_BANDS"]) == ["clear_observations", "filled"]
        levels = len(ds.overviews(1))
    for band in (0, 1):
        level = expected["quality"][band]
        for k in range(levels):
            level = halve(level, "AVERAGE", 255)
            with rasterio.open(single[2], overview_level=k) as ov:
                np.testing.assert_array_equal(ov.read(band + 1), level)


def test_a_store_from_before_the_quality_layer_compiles_class_and_confidence(store_uri, tmp_path):
    import shutil

    old = tmp_path / "old.zarr"
    shutil.copytree(store_uri, old)
    shutil.rmtree(old / "quality")  # as an older version made it
    assert [p.name for p in compile_store(str(old), tmp_path / "cog")] == [
        "run-a_class.tif",
        "run-a_confidence.tif",
    ]


def test_class_cog_colour_table_and_names(single):
    with rasterio.open(single[0]) as ds:
        cmap = ds.colormap(1)
        for value, color in enumerate(ATTRS.class_colors):
            rgb = tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))
            assert cmap[value] == (*rgb, 255)
        assert cmap[255][3] == 0
        tags = ds.tags()
        assert json.loads(tags["CLASS_NAMES"]) == list(ATTRS.class_names)
        assert tags["CLASS_1"] == "open land"
        assert "1=open land" in ds.descriptions[0]


def test_class_overview_is_mode_of_real_classes(single):
    with rasterio.open(single[0]) as ds, rasterio.open(single[0], overview_level=0) as ov:
        assert ov.width == -(-ds.width // 2)
        values = set(np.unique(ov.read(1)).tolist())
        assert values <= {0, 1, 2, 3, 255}


def _gdal_cog(tmp_path: Path, data: np.ndarray, resampling: str, levels: int) -> Path:
    """GDAL's COG driver on these pixels, building its own overviews (the source has none)."""
    src, dst = tmp_path / "plain.tif", tmp_path / "gdal.tif"
    height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint8",
               "nodata": 255, "tiled": True, "blockxsize": 512, "blockysize": 512,
               "crs": "EPSG:25832", "transform": LAYOUT.transform}  # fmt: skip
    with rasterio.open(src, "w", **profile) as ds:
        ds.write(data, 1)
    rasterio.shutil.copy(src, dst, driver="COG", RESAMPLING=resampling, OVERVIEW_COUNT=levels,
                         BLOCKSIZE=512, COMPRESS="NONE")  # fmt: skip
    return dst


def _levels(path: Path) -> list[np.ndarray]:
    with rasterio.open(path) as ds:
        count = len(ds.overviews(1))
    levels = []
    for k in range(count):
        with rasterio.open(path, overview_level=k) as ov:
            levels.append(ov.read(1))
    return levels


@pytest.mark.parametrize("index", [0, 1])
def test_overviews_are_gdals(single, expected, tmp_path, index):
    """Our overviews (built in numpy) are those GDAL's COG driver builds from the same pixels."""
    array = ARRAYS[index]
    ours = _levels(single[index])
    gdal = _levels(_gdal_cog(tmp_path, expected[array], _RESAMPLING[array], len(ours)))
    assert len(ours) == len(gdal) == 2
    for mine, theirs in zip(ours, gdal, strict=True):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("method", ["MODE", "AVERAGE"])
@pytest.mark.parametrize("values", [(0, 1, 255), (0, 1, 2, 3, 255), (7, 100, 254, 255), (4,)])
def test_halve_is_gdals_resampling(tmp_path, method, values):
    """Few values (ties everywhere) and nodata scattered and in blocks: GDAL's tie rule,
    its nodata skipping and its rounding, level after level."""
    data = np.random.default_rng(len(values)).choice(np.array(values, np.uint8), (1024, 1024))
    data[:40, :300] = 255
    gdal = _levels(_gdal_cog(tmp_path, data, method, 3))
    level = data
    for theirs in gdal:
        level = halve(level, method, 255)
        np.testing.assert_array_equal(level, theirs)


def test_halve_pads_odd_sizes_with_nodata():
    x = np.array([[1, 2, 2], [3, 255, 255], [5, 255, 6]], np.uint8)
    np.testing.assert_array_equal(halve(x, "MODE", 255), [[1, 2], [5, 6]])
    np.testing.assert_array_equal(halve(x, "AVERAGE", 255), [[2, 2], [5, 6]])
    np.testing.assert_array_equal(halve(np.full((2, 2), 255, np.uint8), "MODE", 255), [[255]])
    ties = np.array([[1, 2, 1, 2], [2, 1, 1, 2]], np.uint8)  # 2 is first to two; then 1
    np.testing.assert_array_equal(halve(ties, "MODE", 255), [[2, 1]])
    np.testing.assert_array_equal(halve(ties, "AVERAGE", 255), [[2, 2]])


def test_cog_driver_is_given_the_overviews(store_uri, tmp_path, monkeypatch):
    """GDAL reads src.tif.ovr, src.tif.ovr.ovr as src.tif's overviews, so the COG driver
    copies ours instead of building its own (the speed-up), even where the environment
    turns directory listing off."""
    monkeypatch.setenv("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")
    part = plan_parts(LAYOUT, "x", 40_000)[0]
    with rasterio.Env(**_GDAL_ENV):
        _write_source(TileStore.open(store_uri), part, "class", tmp_path / "src.tif")
        with rasterio.open(tmp_path / "src.tif") as ds:
            assert ds.overviews(1) == [2, 4]


def test_odd_overview_sizes(tmp_path):
    """A tile size whose overviews halve to odd sizes: each level ceil(size / 2) a side
    (gdaladdo's sizes), its last row and column from the pixels that remain."""
    grid = Grid("EPSG:25832", (300000.0, 5600000.0), 10.0, 250, 0)
    uri = str(tmp_path / "odd.zarr")
    layout = StoreLayout(grid, row0=0, col0=0, rows=3, cols=5)  # 750 x 1250 px
    store = TileStore.create_or_open(uri, layout, ATTRS)
    rng = np.random.default_rng(7)
    for r in range(3):
        for c in range(5):
            classes = rng.choice(np.array([0, 1, 2, 255], np.uint8), (250, 250))
            conf = np.where(classes == 255, 255, rng.integers(0, 255, (250, 250))).astype(np.uint8)
            store.write_tile(Tile(r, c), classes, conf)
    paths = compile_store(uri, tmp_path / "cog")
    assert paths[2].name.endswith("_quality.tif")  # not written to: all nodata
    for path, array in zip(paths[:2], ARRAYS, strict=True):
        assert cog_validate(str(path))[0]
        with rasterio.open(path) as ds:
            level = np.asarray(store.array(array)[...])
            np.testing.assert_array_equal(ds.read(1), level)
        ours = _levels(path)
        assert [o.shape for o in ours] == [(375, 625), (188, 313)]
        for mine in ours:
            level = halve(level, _RESAMPLING[array], 255)
            np.testing.assert_array_equal(mine, level)


def test_split_into_parts_with_vrt(store_uri, expected, tmp_path):
    paths = compile_store(store_uri, tmp_path, max_part_px=600)  # 2 tiles a side per part
    names = [p.name for p in paths]
    assert names[-3:] == ["run-a_class.vrt", "run-a_confidence.vrt", "run-a_quality.vrt"]
    cogs = [p for p in paths if p.suffix == ".tif"]
    assert len(cogs) == 2 * 2 * 3  # 3x4 tiles -> 2x2 parts, three arrays
    for cog in cogs:
        assert cog_validate(str(cog))[0]
        with rasterio.open(cog) as ds:
            assert ds.width % TS == 0 and ds.height % TS == 0
    for array in ("class", "confidence", "quality"):
        with rasterio.open(tmp_path / f"run-a_{array}.vrt") as ds:
            assert ds.crs == CRS.from_user_input("EPSG:25832")
            assert ds.transform == LAYOUT.transform and ds.nodata == 255
            bands = 2 if array == "quality" else 1
            assert ds.count == bands and all(ds.descriptions)
            np.testing.assert_array_equal(ds.read(), expected[array].reshape(bands, *LAYOUT.shape))
            if array == "class":
                assert json.loads(ds.tags()["CLASS_NAMES"]) == list(ATTRS.class_names)
                assert ds.colormap(1)[2] == (0x41, 0xAB, 0x5D, 255)


def test_parts_in_parallel_with_ray(store_uri, expected, tmp_path):
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        paths = compile_store(store_uri, tmp_path, max_part_px=600, use_ray=True)
    finally:
        if started:
            ray.shutdown()
    with rasterio.open(paths[-3]) as ds:
        np.testing.assert_array_equal(ds.read(1), expected["class"])
    with rasterio.open(paths[-1]) as ds:
        np.testing.assert_array_equal(ds.read(), expected["quality"])


def test_plan_parts_whole_tiles():
    parts = plan_parts(LAYOUT, "m", 512)
    assert len(parts) == 2 * 2
    assert {(p.row, p.col, p.height, p.width) for p in parts} == {
        (0, 0, 512, 512), (0, 512, 512, 512), (512, 0, 256, 512), (512, 512, 256, 512),
    }  # fmt: skip
    with pytest.raises(ClusterError, match="max_part_px"):
        plan_parts(LAYOUT, "m", 100)
    assert overview_count(511, 100) == 0 and overview_count(512, 1) == 1
    assert overview_count(20480, 20480) == 6


def test_missing_store_is_a_cluster_error(tmp_path):
    missing = tmp_path / "nope.zarr"
    with pytest.raises(ClusterError, match=re.escape(str(missing))):
        compile_store(str(missing), tmp_path / "out")
    with pytest.raises(ClusterError, match="compression"):
        compile_store(str(missing), tmp_path / "out", compression="JPEG")


_BIG = """
import resource, sys, time
import numpy as np
from cluster.maps.compile import compile_store
from cluster.tiles.grid import Grid, Tile
from cluster.predict.store import RunAttrs, StoreLayout, TileStore
uri, out = sys.argv[1], sys.argv[2]
grid = Grid("EPSG:25832", (300000.0, 5600000.0), 1.0, 512, 0)
layout = StoreLayout(grid, 0, 0, 40, 40)  # 20,480 x 20,480 px
attrs = RunAttrs("big", "cd" * 32, ("a", "b"), ("#000000", "#ffffff"), "0.1.0")
store = TileStore.create_or_open(uri, layout, attrs)
for r, c in ((0, 0), (17, 23), (39, 39)):
    cls = np.full((512, 512), r % 2, np.uint8)
    store.write_tile(Tile(r, c), cls, np.full((512, 512), 200, np.uint8))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
paths = compile_store(uri, out)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t)
"""


@pytest.mark.slow
def test_big_store_peak_memory(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_BIG), str(tmp_path / "big.zarr"), str(tmp_path)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    _before_kb, peak_kb, _seconds = proc.stdout.split()[-3:]
    assert int(peak_kb) * 1024 < 1.5e9
    for array in ("class", "confidence"):
        path = tmp_path / f"big_{array}.tif"
        assert cog_validate(str(path))[0]
        with rasterio.open(path) as ds:
            assert (ds.width, ds.height) == (20480, 20480)
            assert (ds.read(1, window=((17 * 512, 18 * 512), (23 * 512, 24 * 512))) != 255).all()
            assert (ds.read(1, window=((512, 1024), (0, 512))) == 255).all()
            assert max(ds.width, ds.height) / ds.overviews(1)[-1] < 512
