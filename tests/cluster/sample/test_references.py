"""The sample's reference files say what labels.tif says, the way mapping teams write it."""

import json
import sqlite3

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio
import shapely
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_geom

from cluster.errors import ClusterError
from cluster.sample.catalog import write_region
from cluster.sample.references import (
    POINT_COUNT,
    POINT_MARGIN_PX,
    RASTER_CRS,
    RASTER_RESOLUTION,
    write_references,
)
from cluster.sample.scene import CLASS_NAMES, NODATA_CLASS, SampleSpec
from tests.cluster.conftest import REFERENCE_SPEC

SPEC = REFERENCE_SPEC


def test_files_lie_beside_labels_tif(ref_region, refs):
    for path in (refs.stands, refs.points, refs.raster):
        assert path.parent == ref_region.root and path.is_file()


def test_stands_are_the_labelled_area_in_lon_lat(refs, truth):
    info = pyogrio.read_info(refs.stands)
    assert info["crs"] == "EPSG:4326" and info["geometry_type"] == "Polygon"
    _, _, wkb, (species,) = pyogrio.raw.read(refs.stands, columns=["species"])
    assert set(species) == set(CLASS_NAMES)
    back = [
        shapely.geometry.shape(transform_geom("EPSG:4326", SPEC.crs, g.__geo_interface__))
        for g in shapely.from_wkb(wkb)
    ]
    area = float(np.sum(shapely.area(np.array(back))))
    px = SPEC.resolution**2
    assert area == pytest.approx(np.count_nonzero(truth != NODATA_CLASS) * px, rel=1e-6)
    for name in CLASS_NAMES:  # each class's stands cover its pixels
        mine = np.array([g for g, s in zip(back, species, strict=True) if s == name])
        expected = np.count_nonzero(truth == CLASS_NAMES.index(name)) * px
        assert float(np.sum(shapely.area(mine))) == pytest.approx(expected, rel=1e-6)


def test_points_sit_inside_their_class_away_from_borders(refs, truth):
    doc = json.loads(refs.points.read_text())
    assert "crs" not in doc  # RFC 7946: lon/lat by definition
    features = doc["features"]
    assert 0.9 * POINT_COUNT <= len(features) <= POINT_COUNT
    classes = [f["properties"]["class_id"] for f in features]
    assert all(type(c) is int for c in classes) and set(classes) == {0, 1, 2, 3}
    lon, lat = zip(*(f["geometry"]["coordinates"] for f in features), strict=True)
    x, y = warp_transform("EPSG:4326", SPEC.crs, lon, lat)
    cols = np.floor((np.asarray(x) - SPEC.origin[0]) / SPEC.resolution).astype(int)
    rows = np.floor((SPEC.origin[1] - np.asarray(y)) / SPEC.resolution).astype(int)
    m = POINT_MARGIN_PX
    for cls, row, col in zip(classes, rows, cols, strict=True):
        window = truth[row - m : row + m + 1, col - m : col + m + 1]
        assert window.shape == (2 * m + 1, 2 * m + 1) and (window == cls).all()


def test_raster_is_coarser_in_another_crs_with_the_class_names(refs, truth):
    with rasterio.open(refs.raster) as src:
        assert src.crs.to_string() == RASTER_CRS
        assert src.res == (RASTER_RESOLUTION, RASTER_RESOLUTION)
        assert src.nodata == NODATA_CLASS
        assert json.loads(src.tags()["CLASS_NAMES"]) == list(CLASS_NAMES)
        assert src.transform.c % RASTER_RESOLUTION == 0 == src.transform.f % RASTER_RESOLUTION
        data = src.read(1)
    assert set(np.unique(data).tolist()) == {0, 1, 2, 3, NODATA_CLASS}
    # Nearest neighbour keeps each class's share (a mode or mean would not, at borders).
    for cls in range(len(CLASS_NAMES)):
        share = np.mean(data[data != NODATA_CLASS] == cls)
        assert share == pytest.approx(np.mean(truth[truth != NODATA_CLASS] == cls), abs=0.02)


def test_the_same_seed_writes_the_same_files(ref_region, refs, tmp_path):
    again = write_references(ref_region, SPEC, tmp_path / "again")
    for a, b in zip(
        (refs.stands, refs.points, refs.raster),
        (again.stands, again.points, again.raster),
        strict=True,
    ):
        assert a.read_bytes() == b.read_bytes(), a.name
    # GDAL stamps a GeoPackage with the clock unless told a date; the writer tells it.
    with sqlite3.connect(again.stands) as db:
        (stamp,) = db.execute("SELECT last_change FROM gpkg_contents").fetchone()
    assert stamp.startswith("2024-01-01T00:00:00")


def test_another_seed_draws_other_points(refs, tmp_path):
    other = SampleSpec(seed=1, width=256, height=256, stand_px=64)
    theirs = write_references(write_region(tmp_path, other, layouts=()), other)
    points = [json.loads(r.points.read_text())["features"] for r in (refs, theirs)]
    assert points[0][0]["geometry"] != points[1][0]["geometry"]


def test_a_region_written_from_another_spec_is_refused(ref_region):
    with pytest.raises(ClusterError, match="spec"):
        write_references(ref_region, SampleSpec(width=128, height=128, stand_px=64))
