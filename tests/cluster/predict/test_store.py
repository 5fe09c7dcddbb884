"""The run store: chunk = tile, byte-identical rewrites, done record, georeferencing."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS

from cluster.errors import ClusterError
from cluster.predict.store import RunAttrs, StoreLayout, TileStore
from cluster.sample.scene import CLASS_COLORS, CLASS_NAMES
from cluster.tiles.grid import Grid, Tile

TS = 8
GRID = Grid("EPSG:25832", (300000.0, 5600000.0), 10.0, TS, 2)
LAYOUT = StoreLayout(GRID, row0=3, col0=5, rows=4, cols=6)
ATTRS = RunAttrs(
    run_id="run-a",
    checkpoint_sha256="ab" * 32,
    class_names=CLASS_NAMES,
    class_colors=CLASS_COLORS,
    software_version="0.1.0",
)


def tile_data(tile: Tile, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([tile.row, tile.col, seed])
    classes = rng.integers(0, 4, (TS, TS), dtype=np.uint8)
    classes[0, :3] = 255
    confidence = rng.integers(0, 255, (TS, TS), dtype=np.uint8)
    confidence[classes == 255] = 255
    return classes, confidence


def chunk_files(root: Path, array: str) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted((root / array / "c").rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def uri(tmp_path) -> str:
    return str(tmp_path / "run.zarr")


def test_layout_geometry():
    assert LAYOUT.shape == (4 * TS, 6 * TS)
    t = LAYOUT.transform
    assert (t.a, t.c, t.e, t.f) == (10.0, 300000.0 + 5 * 80, -10.0, 5600000.0 - 3 * 80)
    assert LAYOUT.contains(Tile(3, 5)) and LAYOUT.contains(Tile(6, 10))
    assert not LAYOUT.contains(Tile(7, 5)) and not LAYOUT.contains(Tile(3, 11))
    lay = StoreLayout.for_bounds(GRID, (300000.0 + 85, 5600000.0 - 250, 300000.0 + 170, 5600000.0))
    assert (lay.row0, lay.col0, lay.rows, lay.cols) == (0, 1, 4, 2)


def test_write_reopen_read_back(uri):
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    written = {t: tile_data(t) for t in (Tile(3, 5), Tile(4, 7), Tile(6, 10))}
    for tile, (cls, conf) in written.items():
        store.write_tile(tile, cls, conf)
    for reopened in (TileStore.open(uri), TileStore.create_or_open(uri, LAYOUT, ATTRS)):
        assert reopened.layout == LAYOUT and reopened.attrs == ATTRS
        for tile, (cls, conf) in written.items():
            got_cls, got_conf = reopened.read_tile(tile)
            np.testing.assert_array_equal(got_cls, cls)
            np.testing.assert_array_equal(got_conf, conf)
        empty_cls, empty_conf = reopened.read_tile(Tile(5, 6))
        assert (empty_cls == 255).all() and (empty_conf == 255).all()
    with pytest.raises(ClusterError, match="read-only"):
        TileStore.open(uri).write_tile(Tile(3, 5), *written[Tile(3, 5)])


def test_one_tile_is_one_chunk_and_rewrites_are_byte_identical(uri):
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    root = Path(uri)
    for name in ("class", "confidence"):
        assert store.array(name).chunks == (TS, TS)
        assert chunk_files(root, name) == {}
    tile = Tile(4, 7)
    store.write_tile(tile, *tile_data(tile))
    first = {name: chunk_files(root, name) for name in ("class", "confidence")}
    assert list(first["class"]) == ["class/c/1/2"]
    assert list(first["confidence"]) == ["confidence/c/1/2"]
    # an all-nodata tile is still one object per array: every finished tile is visible
    store.write_tile(Tile(3, 5), np.full((TS, TS), 255, np.uint8), np.full((TS, TS), 255, np.uint8))
    assert "class/c/0/0" in chunk_files(root, "class")
    TileStore.open(uri, writable=True).write_tile(tile, *tile_data(tile))
    for name in ("class", "confidence"):
        assert chunk_files(root, name)[f"{name}/c/1/2"] == first[name][f"{name}/c/1/2"]


def test_stores_are_byte_identical_whatever_the_write_order(tmp_path):
    tiles = [Tile(3, 5), Tile(4, 7), Tile(6, 10), Tile(5, 6)]
    for name, order in (("a", tiles), ("b", tiles[::-1])):
        store = TileStore.create_or_open(str(tmp_path / name), LAYOUT, ATTRS)
        for tile in order:
            store.write_tile(tile, *tile_data(tile))
        store.mark_done(order[:2])
        store.mark_done(order[2:])

    def tree(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }

    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_leftovers_of_killed_writers_are_removed(uri):
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    root = Path(uri)
    (root / "class/c/1").mkdir(parents=True)
    (root / "class/c/1/2.0123abcd.partial").write_bytes(b"half a chunk")
    (root / "class/c/1/3.0123abcd.partial").write_bytes(b"another tile's writer")
    (root / "statemap/.done.bin.999.0123abcd.tmp").write_bytes(b"half a record")
    tile = Tile(4, 7)  # chunk (1, 2)
    store.write_tile(tile, *tile_data(tile))
    store.mark_done([tile])
    assert sorted(p.name for p in (root / "class/c/1").iterdir()) == ["2", "3.0123abcd.partial"]
    assert sorted(p.name for p in (root / "statemap").iterdir()) == ["done.bin", "zarr.json"]


def test_bad_tiles_are_refused(uri):
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    cls, conf = tile_data(Tile(3, 5))
    for outside in (Tile(2, 5), Tile(3, 11)):
        with pytest.raises(ClusterError, match=outside.id):
            store.write_tile(outside, cls, conf)
        with pytest.raises(ClusterError, match=outside.id):
            store.read_tile(outside)
        with pytest.raises(ClusterError, match=outside.id):
            store.mark_done([outside])
    bad_inputs = [
        (cls[:-1], conf, "shape"),
        (cls, conf.astype(np.int16), "uint8"),
        (cls.astype(np.float32), conf, "uint8"),
        (cls.tolist(), conf, "uint8"),
        (np.full((TS, TS), 7, np.uint8), conf, "class value 7"),
        (cls, np.where(cls == 255, 0, conf).astype(np.uint8), "confidence must be 255"),
    ]
    for c, f, message in bad_inputs:
        with pytest.raises(ClusterError, match=message):
            store.write_tile(Tile(3, 5), c, f)


def test_done_record_round_trip_and_union(uri):
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    assert len(store.done_tiles()) == 0
    store.mark_done([Tile(3, 5), Tile(4, 7)])
    store.mark_done([Tile(4, 7), Tile(6, 10)])
    store.mark_done([])
    done = TileStore.open(uri).done_tiles()
    assert len(done) == 3
    assert Tile(3, 5) in done and "r000006_c000010" in done and Tile(5, 5) not in done
    assert Tile(0, 0) not in done  # outside the layout: simply not done
    assert list(done) == [Tile(3, 5), Tile(4, 7), Tile(6, 10)]
    assert sorted(p.name for p in (Path(uri) / "statemap").iterdir()) == ["done.bin", "zarr.json"]
    with pytest.raises(ClusterError, match="read-only"):
        TileStore.open(uri).mark_done([Tile(3, 5)])


def test_damaged_done_record_is_refused(uri):
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    store.mark_done([Tile(3, 5)])
    path = Path(uri) / "statemap" / "done.bin"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ClusterError, match=r"done\.bin.*delete it"):
        store.done_tiles()


def test_done_record_stays_small_at_germany_scale(tmp_path):
    layout = StoreLayout(Grid("EPSG:25832", (0.0, 0.0), 1.0, 1), 0, 0, 1000, 1400)
    store = TileStore.create_or_open(str(tmp_path / "de.zarr"), layout, ATTRS)
    rng = np.random.default_rng(0)
    rows, cols = np.nonzero(rng.random((1000, 1400)) < 0.5)  # incompressible: the worst case
    store.mark_done(Tile(int(r), int(c)) for r, c in zip(rows, cols, strict=True))
    assert (tmp_path / "de.zarr/statemap/done.bin").stat().st_size < 200_000
    assert len(store.done_tiles()) == len(rows)


def test_reopen_refuses_another_run(uri):
    TileStore.create_or_open(uri, LAYOUT, ATTRS)
    other = RunAttrs(
        "run-b", ATTRS.checkpoint_sha256, ATTRS.class_names, ATTRS.class_colors, "0.1.0"
    )
    with pytest.raises(ClusterError, match=r"run 'run-a', not run 'run-b'") as err:
        TileStore.create_or_open(uri, LAYOUT, other)
    assert uri in str(err.value)
    moved = StoreLayout(GRID, 3, 5, 4, 7)
    with pytest.raises(ClusterError, match=r"cols: 6 in the store, 7 now"):
        TileStore.create_or_open(uri, moved, ATTRS)
    new_model = RunAttrs("run-a", "cd" * 32, ATTRS.class_names, ATTRS.class_colors, "0.1.0")
    with pytest.raises(ClusterError, match="checkpoint"):
        TileStore.create_or_open(uri, LAYOUT, new_model)


def test_refuses_foreign_paths_and_uris(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(ClusterError, match="not a Zarr store"):
        TileStore.create_or_open(str(tmp_path / "notes"), LAYOUT, ATTRS)
    with pytest.raises(ClusterError, match="no statemap store"):
        TileStore.open(str(tmp_path / "missing.zarr"))
    with pytest.raises(ClusterError, match="unknown scheme"):
        TileStore.open("gs://bucket/run.zarr")
    store = TileStore.create_or_open((tmp_path / "f.zarr").as_uri(), LAYOUT, ATTRS)
    assert (tmp_path / "f.zarr" / "zarr.json").exists() and store.layout == LAYOUT


def test_interrupted_creation_is_finished_on_reopen(uri):
    import zarr

    group = zarr.open_group(uri, mode="a")
    group.create_array("class", shape=LAYOUT.shape, chunks=(TS, TS), dtype="uint8")
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    assert TileStore.open(uri).attrs == ATTRS and store.read_tile(Tile(3, 5))[0].shape == (TS, TS)


def test_run_attrs_validation():
    with pytest.raises(ClusterError, match="checkpoint_sha256"):
        RunAttrs("r", "xyz", ("a",), ("#000000",), "1")
    with pytest.raises(ClusterError, match="class_colors"):
        RunAttrs("r", "ab" * 32, ("a", "b"), ("#000000",), "1")
    with pytest.raises(ClusterError, match="run_id"):
        RunAttrs("", "ab" * 32, ("a",), ("#000000",), "1")


def test_xarray_rioxarray_open_it_georeferenced(uri):
    xarray = pytest.importorskip("xarray")
    pytest.importorskip("rioxarray")
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    tile = Tile(4, 7)
    cls, conf = tile_data(tile)
    store.write_tile(tile, cls, conf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray-object warnings from zarr either
        ds = xarray.open_zarr(uri, consolidated=False)
    da = ds["class"]
    assert da.dtype == np.uint8 and da.dims == ("y", "x")
    assert da.rio.crs == CRS.from_user_input(GRID.crs)
    assert da.rio.transform() == LAYOUT.transform
    assert ds["confidence"].rio.transform() == LAYOUT.transform
    assert da.rio.nodata == 255
    assert ds["quality"].dims == ("band", "y", "x") and ds["quality"].rio.nodata == 255
    # tile (4, 7) is chunk (1, 2): pixel rows 8..15, cols 16..23
    np.testing.assert_array_equal(da.isel(y=slice(8, 16), x=slice(16, 24)).values, cls)
    x, y = GRID.tile_transform(tile) @ (0.5, 0.5)
    assert int(da.sel(x=x, y=y).values) == cls[0, 0]
    meta = ds.attrs["statemap"]
    assert meta["run_id"] == "run-a" and meta["nodata"] == 255 and meta["crs"]["epsg"] == 25832
    assert meta["classes"][1] == {"value": 1, "name": "open land", "color": "#e9d66b"}
    assert meta["transform"]["gdal"] == list(LAYOUT.transform.to_gdal())


def tile_quality(classes: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    quality = np.stack([rng.integers(0, 255, classes.shape), rng.integers(0, 2, classes.shape)])
    quality = quality.astype(np.uint8)
    quality[:, classes == 255] = 255
    return quality


def test_quality_is_one_chunk_per_tile_nodata_where_the_map_is(uri, tmp_path):
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    assert store.has_quality
    tile = Tile(4, 7)
    cls, conf = tile_data(tile)
    quality = tile_quality(cls)
    store.write_tile(tile, cls, conf, quality)
    reopened = TileStore.open(uri)
    np.testing.assert_array_equal(reopened.array("quality")[:, 8:16, 16:24], quality)
    assert (reopened.array("quality")[:, :8] == 255).all()  # unwritten: nodata
    assert list(chunk_files(Path(uri), "quality")) == ["quality/c/0/1/2"]
    before = chunk_files(Path(uri), "quality")
    store.write_tile(tile, cls, conf, quality.copy())
    assert chunk_files(Path(uri), "quality") == before  # rewritten byte-identical
    wrong = quality.copy()
    wrong[0, 0, 0] = 3  # a value where the class is nodata
    with pytest.raises(ClusterError, match="quality must be 255 exactly where"):
        store.write_tile(tile, cls, conf, wrong)
    flag = quality.copy()
    flag[1][cls != 255] = 2
    with pytest.raises(ClusterError, match="0 or 1"):
        store.write_tile(tile, cls, conf, flag)
    with pytest.raises(ClusterError, match=r"shape \(2, 8, 8\)"):
        store.write_tile(tile, cls, conf, quality[0])


def test_a_store_from_before_the_quality_layer_opens_read_only_and_is_not_resumed(uri):
    import shutil

    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    tile = Tile(4, 7)
    store.write_tile(tile, *tile_data(tile))
    shutil.rmtree(Path(uri) / "quality")  # as an older version made it
    old = TileStore.open(uri)
    assert not old.has_quality
    np.testing.assert_array_equal(old.read_tile(tile)[0], tile_data(tile)[0])
    for resume in (lambda: TileStore.open(uri, writable=True),
                   lambda: TileStore.create_or_open(uri, LAYOUT, ATTRS)):  # fmt: skip
        with pytest.raises(ClusterError, match=r"without the quality layer.*new store path"):
            resume()
