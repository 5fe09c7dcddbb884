"""Reference labels from every common source land on the grid as labels.tif does."""

import json
import pickle
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio.raw
import pytest
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform
from scipy import ndimage

from cluster.errors import ClusterError
from cluster.sample.scene import CLASS_NAMES
from cluster.tiles.grid import Grid, Tile
from cluster.training.labels import (
    NODATA,
    LabelError,
    LabelSpec,
    RasterLabels,
    VectorLabels,
    open_labels,
)
from tests.cluster.conftest import REFERENCE_SPEC

SPEC = REFERENCE_SPEC
GRID = Grid(SPEC.crs, SPEC.origin, SPEC.resolution, 64, 0)
# A grid whose tiles cut the sample elsewhere: 48-px tiles, origin 53 px north-west, so
# that its first row and column of tiles lie wholly outside the sample.
SHIFTED = Grid(SPEC.crs, (SPEC.origin[0] - 530, SPEC.origin[1] + 530), SPEC.resolution, 48, 0)
LON, LAT = 7.61, 50.17  # inside the sample ref_region


@pytest.fixture(scope="module")
def stands(refs):
    return open_labels(LabelSpec(str(refs.stands), "species"), CLASS_NAMES, SPEC.crs)


def mosaic(labels, grid=GRID):
    """The labels over the sample's extent, tile by tile (the grid's lattice matches)."""
    rows, cols = grid.tiles_in_bounds(SPEC.bounds)
    size = grid.tile_size
    out = np.vstack([np.hstack([labels.rasterize(grid, Tile(r, c)) for c in cols]) for r in rows])
    dx = round((SPEC.origin[0] - grid.origin[0]) / grid.resolution) - cols.start * size
    dy = round((grid.origin[1] - SPEC.origin[1]) / grid.resolution) - rows.start * size
    scale = round(grid.resolution / SPEC.resolution)
    return out[dy : dy + SPEC.height // scale, dx : dx + SPEC.width // scale]


def agreement(result, truth):
    labelled = truth != NODATA
    return float(np.mean(result[labelled] == truth[labelled]))


def geojson(path, features, crs=None):
    """A GeoJSON file of (geometry, properties) pairs; lon/lat unless ``crs`` names another."""
    doc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": props, "geometry": geom} for geom, props in features
        ],
    }
    if crs:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return str(path)


def square(x, y, half, **props):
    ring = [[x - half, y - half], [x + half, y - half], [x + half, y + half], [x - half, y + half]]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}, props


def refusal(spec, match=None, classes=CLASS_NAMES):
    with pytest.raises(LabelError) as info:
        open_labels(spec, classes, SPEC.crs)
    message = str(info.value)
    assert isinstance(info.value, ClusterError)
    if match:
        for part in match:
            assert part in message, message
    return message


# --- each source, end to end on the sample ----------------------------------------------------


def test_stands_in_lon_lat_agree_with_labels_tif(stands, truth):
    result = mosaic(stands)
    assert isinstance(stands, VectorLabels)
    assert agreement(result, truth) >= 0.995
    assert not (result[truth == NODATA] != NODATA).any()


def test_inner_buffer_keeps_labels_off_class_borders(refs, truth):
    spec = LabelSpec(str(refs.stands), "species", inner_buffer=15)
    result = mosaic(open_labels(spec, CLASS_NAMES, SPEC.crs))
    near_border = (ndimage.maximum_filter(truth, 3) != ndimage.minimum_filter(truth, 3)) & (
        truth != NODATA
    )
    assert near_border.sum() > 500
    assert (result[near_border] == NODATA).all()
    labelled = result != NODATA
    assert labelled.sum() > 0.8 * (truth != NODATA).sum()
    assert (result[labelled] == truth[labelled]).all()


def point_pixels(refs):
    """Each point's class and its (row, col) on the sample's grid."""
    features = json.loads(refs.points.read_text())["features"]
    lon, lat = zip(*(f["geometry"]["coordinates"] for f in features), strict=True)
    x, y = warp_transform("EPSG:4326", SPEC.crs, lon, lat)
    cols = (np.asarray(x) - SPEC.origin[0]) / SPEC.resolution
    rows = (SPEC.origin[1] - np.asarray(y)) / SPEC.resolution
    return np.array([f["properties"]["class_id"] for f in features]), rows, cols


def test_point_squares_rasterise_to_their_class(refs, truth):
    labels = open_labels(LabelSpec(str(refs.points), "class_id"), CLASS_NAMES, SPEC.crs)
    result = mosaic(labels)
    classes, rows, cols = point_pixels(refs)
    yy, xx = np.mgrid[0 : SPEC.height, 0 : SPEC.width] + 0.5
    for cls, row, col in zip(classes, rows, cols, strict=True):
        footprint = (np.abs(yy - row) < 1.5) & (np.abs(xx - col) < 1.5)
        assert footprint.sum() == 9
        assert np.mean(result[footprint] == cls) >= 0.95
        assert (truth[footprint] == cls).all()
    expected = len(classes) * (30 / SPEC.resolution) ** 2
    labelled = int((result != NODATA).sum())
    print(f"{len(classes)} points -> {labelled} labelled px (no overlap: {expected:.0f})")
    assert 0.85 * expected <= labelled <= expected


def test_point_discs_cover_a_disc_each(refs, truth):
    spec = LabelSpec(str(refs.points), "class_id", point_size=50, point_shape="disc")
    result = mosaic(open_labels(spec, CLASS_NAMES, SPEC.crs))
    classes = point_pixels(refs)[0]
    expected = len(classes) * np.pi * (25 / SPEC.resolution) ** 2
    labelled = result != NODATA
    assert 0.8 * expected <= labelled.sum() <= 1.1 * expected
    assert (result[labelled] == truth[labelled]).all()


def test_coarser_raster_in_another_crs_agrees(refs, truth):
    labels = open_labels(LabelSpec(str(refs.raster)), CLASS_NAMES, SPEC.crs)
    assert isinstance(labels, RasterLabels)
    score = agreement(mosaic(labels), truth)
    print(f"20 m EPSG:32632 raster vs labels.tif: {score:.4f}")
    assert score >= 0.95


def test_grid_coarser_than_the_labels_takes_the_mode(ref_region, truth):
    labels = open_labels(LabelSpec(str(ref_region.labels)), CLASS_NAMES, SPEC.crs)
    grid = Grid(SPEC.crs, SPEC.origin, 20.0, 32, 0)
    result = mosaic(labels, grid)
    blocks = truth.reshape(128, 2, 128, 2).transpose(0, 2, 1, 3).reshape(128, 128, 4)
    # Three of four pixels of one class: the mode is that class, a corner pick may not be.
    counts = np.stack([(blocks == c).sum(-1) for c in range(len(CLASS_NAMES))], -1)
    majority = counts.max(-1) >= 3
    assert np.mean(majority & (counts.max(-1) == 3)) > 0.005
    assert (result[majority] == counts.argmax(-1)[majority]).all()


def test_geoparquet_and_flatgeobuf_match_the_geopackage(refs, stands, tmp_path):
    expected = mosaic(stands)
    meta, _, wkb, (species,) = pyogrio.raw.read(refs.stands, columns=["species"])
    geoms = shapely.from_wkb(wkb)

    def parquet(name, geoms, crs, dictionary=False):
        column = pa.array(species.tolist())
        table = pa.table(
            {
                "species": column.dictionary_encode() if dictionary else column,
                "geometry": pa.array(shapely.to_wkb(geoms).tolist(), pa.binary()),
            }
        )
        column_meta = {"encoding": "WKB", "geometry_types": ["Polygon"]}
        if crs is not None:
            column_meta["crs"] = CRS.from_user_input(crs).to_dict(projjson=True)
        geo = {
            "version": "1.1.0",
            "primary_column": "geometry",
            "columns": {"geometry": column_meta},
        }
        table = table.replace_schema_metadata({"geo": json.dumps(geo)})
        pq.write_table(table, tmp_path / name)
        return str(tmp_path / name)

    def in_crs(crs):
        def move(xy):
            return np.column_stack(warp_transform("EPSG:4326", crs, xy[:, 0], xy[:, 1]))

        return shapely.transform(geoms, move)

    fgb = tmp_path / "stands.fgb"
    pyogrio.raw.write(
        fgb,
        wkb,
        [species],
        ["species"],
        driver="FlatGeobuf",
        crs="EPSG:4326",
        geometry_type="Polygon",
    )
    sources = [
        parquet("lonlat.parquet", geoms, "EPSG:4326"),
        parquet("crs84-by-default.geoparquet", geoms, None, dictionary=True),
        parquet("laea.parquet", in_crs("EPSG:3035"), "EPSG:3035"),
        str(fgb),
    ]
    assert meta["crs"] == "EPSG:4326"
    for source in sources:
        labels = open_labels(LabelSpec(source, "species"), CLASS_NAMES, SPEC.crs)
        assert np.array_equal(mosaic(labels), expected), source


def test_names_ignore_case_and_spaces_and_indices_may_be_text(tmp_path):
    x, y, h = LON, LAT, 0.0004
    path = geojson(
        tmp_path / "mixed.geojson",
        [
            square(x, y, h, kind=" Conifer "),
            square(x + 0.002, y, h, kind="1"),
            square(x + 0.004, y, h, kind=2.0),
            square(x + 0.006, y, h, kind="WATER"),
        ],
    )
    labels = open_labels(LabelSpec(path, "kind"), CLASS_NAMES, SPEC.crs)
    grid = Grid.covering(SPEC.crs, labels.bounds(SPEC.crs), 10.0, 64)
    found = {int(v) for t in labels.cells(grid) for v in np.unique(labels.rasterize(grid, t))}
    assert found == {0, 1, 2, 3, NODATA}


def test_a_layer_of_a_geopackage_is_chosen_by_name(refs, stands, tmp_path):
    _, _, wkb, (species,) = pyogrio.raw.read(refs.stands, columns=["species"])
    path = tmp_path / "two.gpkg"
    other = shapely.to_wkb(np.array([shapely.box(7.60, 50.16, 7.64, 50.19)]))
    pyogrio.raw.write(
        path,
        other,
        [np.array(["water"], dtype=object)],
        ["species"],
        layer="other",
        driver="GPKG",
        crs="EPSG:4326",
        geometry_type="Polygon",
    )
    pyogrio.raw.write(
        path,
        wkb,
        [species],
        ["species"],
        layer="stands",
        driver="GPKG",
        crs="EPSG:4326",
        geometry_type="Polygon",
        append=False,
    )
    labels = open_labels(LabelSpec(str(path), "species", layer="stands"), CLASS_NAMES, SPEC.crs)
    assert np.array_equal(mosaic(labels), mosaic(stands))
    refusal(LabelSpec(str(path), "species", layer="plots"), ["'plots'", "'other'", "'stands'"])


# --- refusals -------------------------------------------------------------------------------


def test_unknown_class_names_are_listed_with_counts(tmp_path):
    feats = [
        square(LON + i * 0.001, LAT, 0.0003, species=v)
        for i, v in enumerate(["broadleaf", "larch", "larch", "larch", "oak"])
    ]
    message = refusal(
        LabelSpec(geojson(tmp_path / "s.geojson", feats), "species"),
        ["'larch' (3 features)", "'oak' (1 feature)", "broadleaf", "label_field"],
    )
    assert "conifer" in message


def test_many_bad_values_are_summarised(tmp_path):
    feats = [square(LON + i * 0.001, LAT, 0.0003, species=f"sp{i}") for i in range(8)]
    refusal(LabelSpec(geojson(tmp_path / "s.geojson", feats), "species"), ["and 3 more"])


def test_an_index_out_of_range_is_refused(tmp_path):
    feats = [square(LON, LAT, 0.0003, code=1), square(LON + 0.001, LAT, 0.0003, code=7)]
    refusal(LabelSpec(geojson(tmp_path / "c.geojson", feats), "code"), ["7 (1 feature)", "0..3"])


def test_null_and_empty_values_are_refused(tmp_path):
    feats = [
        square(LON + i * 0.001, LAT, 0.0003, species=v)
        for i, v in enumerate(["water", None, "  ", "conifer"])
    ]
    refusal(LabelSpec(geojson(tmp_path / "n.geojson", feats), "species"), ["2 features with no"])


def test_a_missing_field_lists_the_fields(refs):
    refusal(LabelSpec(str(refs.stands), "class"), ["'class'", "['species']", "label_field"])


def test_a_vector_file_needs_a_field(refs):
    refusal(LabelSpec(str(refs.stands)), ["label_field"])


def test_lines_are_refused(tmp_path):
    line = {"type": "LineString", "coordinates": [[LON, LAT], [LON + 0.01, LAT]]}
    feats = [(line, {"species": "water"}), square(LON, LAT, 0.0003, species="water")]
    refusal(LabelSpec(geojson(tmp_path / "l.geojson", feats), "species"), ["1 feature(s) are li"])


def test_an_empty_file_is_refused(tmp_path):
    refusal(LabelSpec(geojson(tmp_path / "e.geojson", []), "species"), ["e.geojson", "no feat"])


def test_a_file_without_crs_is_refused(tmp_path):
    path = tmp_path / "nocrs.fgb"
    wkb = shapely.to_wkb(np.array([shapely.box(400_100, 5_557_000, 400_200, 5_557_100)]))
    with pytest.warns(UserWarning):
        pyogrio.raw.write(
            path,
            wkb,
            [np.array(["water"], dtype=object)],
            ["species"],
            driver="FlatGeobuf",
            geometry_type="Polygon",
            crs=None,
        )
    refusal(LabelSpec(str(path), "species"), ["nocrs.fgb", "no CRS", "-a_srs"])


def test_polygons_that_all_vanish_under_the_inner_buffer_are_refused(tmp_path):
    path = geojson(tmp_path / "small.geojson", [square(LON, LAT, 0.0001, species="water")])
    refusal(LabelSpec(path, "species", inner_buffer=15), ["inner_buffer=15", "lower"])


def test_geoparquet_not_in_wkb_is_refused(tmp_path):
    table = pa.table({"species": ["water"], "geometry": [{"x": 7.6, "y": 50.1}]})
    geo = {
        "version": "1.1.0",
        "primary_column": "geometry",
        "columns": {"geometry": {"encoding": "point", "geometry_types": ["Point"]}},
    }
    pq.write_table(table.replace_schema_metadata({"geo": json.dumps(geo)}), tmp_path / "p.parquet")
    refusal(LabelSpec(str(tmp_path / "p.parquet"), "species"), ["'point'", "WKB"])


def test_an_unreadable_file_names_the_supported_suffixes(tmp_path):
    (tmp_path / "labels.txt").write_text("not labels\n")
    refusal(LabelSpec(str(tmp_path / "labels.txt"), "species"), ["labels.txt", ".gpkg", ".tif"])


def write_raster(path, data, tags=None):
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint8",
        crs=SPEC.crs,
        transform=SPEC.transform,
        nodata=NODATA,
    ) as dst:
        dst.write(data, 1)
        if tags:
            dst.update_tags(**tags)
    return str(path)


def test_raster_values_past_the_classes_are_counted(tmp_path, truth):
    data = truth.copy()
    data[:3, :5] = 7
    refusal(LabelSpec(write_raster(tmp_path / "seven.tif", data)), ["7 (15 px)", "0..3"])


def test_raster_class_names_must_be_the_classes(tmp_path, truth):
    path = write_raster(tmp_path / "named.tif", truth, {"CLASS_NAMES": '["a", "b", "c", "d"]'})
    refusal(LabelSpec(path), ["['a', 'b', 'c', 'd']", "broadleaf"])


def test_a_raster_without_labels_is_refused(tmp_path):
    path = write_raster(tmp_path / "blank.tif", np.full((64, 64), NODATA, np.uint8))
    refusal(LabelSpec(path), ["blank.tif", "no labelled pixel"])


def test_spec_values_are_checked():
    with pytest.raises(LabelError, match="point_shape"):
        LabelSpec("x.gpkg", "species", point_shape="circle")
    with pytest.raises(LabelError, match="inner_buffer"):
        LabelSpec("x.gpkg", "species", inner_buffer=-5)


def test_overlapping_classes_give_no_label(tmp_path):
    x, y = SPEC.origin[0] + 500, SPEC.origin[1] - 500  # EPSG:25832 metres
    feats = [
        square(x, y, 100, species="water"),
        square(x + 100, y, 100, species="conifer"),
        square(x + 100, y - 100, 100, species="conifer"),
    ]
    path = geojson(tmp_path / "overlap.geojson", feats, "urn:ogc:def:crs:EPSG::25832")
    labels = open_labels(LabelSpec(path, "species"), CLASS_NAMES, SPEC.crs)
    result = mosaic(labels)
    cx, cy = 50, 50  # the first square's centre, px
    assert (result[cy - 10 : cy + 10, cx - 10 : cx] == 0).all()
    assert (result[cy - 10 : cy + 10, cx : cx + 10] == NODATA).all()  # water and conifer
    assert (result[cy + 1 : cy + 10, cx + 10 : cx + 20] == 3).all()  # conifer twice: fine


# --- cells, pickling, halo ----------------------------------------------------------------------


def labelled_tiles(labels, grid):
    """Tiles with a labelled pixel, found the slow way: over the sample and a tile around it."""
    x0, y0, x1, y1 = SPEC.bounds
    pad = grid.span
    around = (max(x0 - pad, grid.origin[0]), y0 - pad, x1 + pad, min(y1 + pad, grid.origin[1]))
    rows, cols = grid.tiles_in_bounds(around)
    tiles = [Tile(r, c) for r in rows for c in cols]
    return [t for t in tiles if (labels.rasterize(grid, t) != NODATA).any()], len(tiles)


@pytest.mark.parametrize("grid", [GRID, SHIFTED], ids=["own", "shifted"])
def test_cells_are_the_tiles_with_labelled_pixels(stands, refs, grid):
    points = open_labels(LabelSpec(str(refs.points), "class_id"), CLASS_NAMES, SPEC.crs)
    for labels in (stands, points):
        cells = labels.cells(grid)
        assert cells == sorted(set(cells))
        expected, searched = labelled_tiles(labels, grid)
        assert cells == expected
        assert len(cells) < searched


def test_raster_cells_are_the_tiles_with_labelled_pixels(refs):
    labels = open_labels(LabelSpec(str(refs.raster)), CLASS_NAMES, SPEC.crs)
    cells = labels.cells(SHIFTED)
    expected, searched = labelled_tiles(labels, SHIFTED)
    assert cells == expected and len(cells) < searched


def test_cells_of_100000_points_take_seconds(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.uniform(300_000, 500_000, 100_000)
    y = rng.uniform(5_400_000, 5_600_000, 100_000)
    lon, lat = warp_transform(SPEC.crs, "EPSG:4326", x, y)
    path = tmp_path / "plots.fgb"
    pyogrio.raw.write(
        path,
        shapely.to_wkb(shapely.points(lon, lat)),
        [rng.integers(0, 4, x.size)],
        ["class_id"],
        driver="FlatGeobuf",
        crs="EPSG:4326",
        geometry_type="Point",
    )
    grid = Grid.covering(SPEC.crs, (290_000, 5_390_000, 510_000, 5_610_000), 10.0, 256)
    start = time.perf_counter()
    labels = open_labels(LabelSpec(str(path), "class_id"), CLASS_NAMES, SPEC.crs)
    opened = time.perf_counter()
    cells = labels.cells(grid)
    done = time.perf_counter()
    print(
        f"100,000 points: open {opened - start:.2f} s, cells {done - opened:.2f} s, "
        f"{len(cells)} cells"
    )
    assert done - opened < 20
    # Every point's own tile is a cell; no cell lies beyond a point's 30 m square.
    span = grid.span
    own = set(
        zip(
            ((grid.origin[1] - y) // span).astype(int),
            ((x - grid.origin[0]) // span).astype(int),
            strict=True,
        )
    )
    keys = {(t.row, t.col) for t in cells}
    assert own <= keys
    assert len(keys) <= len(own) * 1.1
    assert cells == sorted(cells)


def test_labels_pickle_and_rasterise_the_same(stands, refs):
    raster = open_labels(LabelSpec(str(refs.raster)), CLASS_NAMES, SPEC.crs)
    for labels in (stands, raster):
        before = labels.rasterize(GRID, Tile(1, 2))
        again = pickle.loads(pickle.dumps(labels))
        assert again.source == labels.source
        assert np.array_equal(again.rasterize(GRID, Tile(1, 2)), before)
        assert again.cells(GRID) == labels.cells(GRID)


def test_halo_pixels_come_from_the_neighbours(stands, truth):
    grid = Grid(SPEC.crs, SPEC.origin, SPEC.resolution, 64, 16)
    haloed = stands.rasterize(grid, Tile(1, 1), halo=True)
    assert haloed.shape == (96, 96)
    assert np.array_equal(haloed[16:-16, 16:-16], stands.rasterize(grid, Tile(1, 1)))
    assert agreement(haloed, truth[48:144, 48:144]) >= 0.995
    edge = stands.rasterize(grid, Tile(0, 0), halo=True)
    assert (edge[:16] == NODATA).all() and (edge[:, :16] == NODATA).all()


def test_bounds_in_any_crs(stands, refs):
    x0, _, x1, y1 = stands.bounds(SPEC.crs)
    sx0, _, sx1, sy1 = SPEC.bounds
    assert abs(x0 - sx0) < 1e-3 and abs(y1 - sy1) < 1e-3 and x1 <= sx1 + 1e-3
    raster = open_labels(LabelSpec(str(refs.raster)), CLASS_NAMES, SPEC.crs)
    lon0, lat0, lon1, lat1 = raster.bounds("EPSG:4326")
    assert lon0 < LON < lon1 and lat0 < LAT < lat1


def test_labels_opened_for_another_crs_refuse_the_grid(stands):
    with pytest.raises(LabelError, match="EPSG:32632"):
        stands.rasterize(Grid("EPSG:32632", SPEC.origin, 10.0, 64), Tile(0, 0))
