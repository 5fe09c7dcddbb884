"""Regions from GeoJSON: CRSs declared or not, unions, and refusals that name the file."""

import json

import numpy as np
import pytest
import shapely
from rasterio.warp import transform as warp_points

from cluster.errors import ClusterError
from cluster.tiles.grid import Grid, count_tiles, iter_tiles
from cluster.tiles.region import load_region
from tests.cluster.tiles.test_grid import CRS, GRID, HOLE, MULTI, SHELL, brute_force


def lonlat_feature(crs_member=None, props=None):
    ring = [[7.0, 50.0], [7.5, 50.0], [7.5, 50.4], [7.0, 50.4], [7.0, 50.0]]
    hole = [[7.2, 50.1], [7.3, 50.1], [7.3, 50.2], [7.2, 50.2], [7.2, 50.1]]
    doc = {
        "type": "Feature",
        "properties": props or {},
        "geometry": {"type": "Polygon", "coordinates": [ring, hole]},
    }
    if crs_member is not None:
        doc["crs"] = crs_member
    return doc, ring


def test_load_region_reprojects_wgs84(tmp_path):
    doc, ring = lonlat_feature()
    path = tmp_path / "rlp.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [doc]}))
    region = load_region(path, CRS)
    assert region.crs == CRS and str(path) in region.source
    xs, ys = warp_points("EPSG:4326", CRS, [p[0] for p in ring], [p[1] for p in ring])
    np.testing.assert_allclose(np.array(region.geometry.exterior.coords), np.c_[xs, ys])
    assert len(region.geometry.interiors) == 1
    assert 1.45e9 < region.geometry.area < 1.55e9  # 36 x 44 km less a 7 x 11 km hole
    grid = Grid.covering(CRS, region.bounds, 10.0, 256)
    assert count_tiles(grid, region) == len(brute_force(grid, region))


@pytest.mark.parametrize(
    "declare",
    [
        lambda d: d | {"crs": "EPSG:25832"},
        lambda d: (
            d | {"crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25832"}}}
        ),
        lambda d: d | {"properties": {"crs": "EPSG:25832"}},
    ],
    ids=["crs-string", "crs-named", "crs-property"],
)
def test_load_region_honours_declared_crs(declare):
    coords = [list(p) for p in shapely.Polygon(SHELL, [HOLE]).exterior.coords]
    doc = {
        "type": "Feature",
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [coords]},
    }
    region = load_region(declare(doc), CRS)
    np.testing.assert_array_equal(np.array(region.geometry.exterior.coords), np.array(coords))


def test_load_region_unions_features_and_keeps_multipolygons():
    features = [
        {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(p)}
        for p in MULTI.geometry.geoms
    ]
    region = load_region({"type": "FeatureCollection", "crs": CRS, "features": features}, CRS)
    assert region.geometry.equals(MULTI.geometry)
    assert list(iter_tiles(GRID, region)) == brute_force(GRID, MULTI)


TRIANGLE = [[[0, 0], [1, 0], [0, 1], [0, 0]]]


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"type": "Point", "coordinates": [7, 50]}, "Point"),
        ({"type": "FeatureCollection", "features": []}, "empty"),
        ({"type": "Feature", "properties": {}, "geometry": None}, "empty"),
        ({"type": "Polygon", "coordinates": []}, "empty"),
        ({"type": "Polygon", "coordinates": [[[7, 50], [8, 51], [8, 50], [7, 51], [7, 50]]]},
         "invalid"),
        ({"type": "Polygon", "coordinates": [[[7, 50], "x"]]}, "malformed"),
        ({"type": "Polygon", "crs": "EPSG:99999", "coordinates": TRIANGLE}, "EPSG:99999"),
        ({"features": []}, "no 'type'"),
    ],
)  # fmt: skip
def test_load_region_refuses_bad_geojson_naming_the_file(tmp_path, doc, match):
    path = tmp_path / "state.geojson"
    path.write_text(json.dumps(doc))
    with pytest.raises(ClusterError, match=match) as info:
        load_region(path, CRS)
    assert str(path) in str(info.value)


def test_load_region_refuses_missing_and_broken_files(tmp_path):
    missing = tmp_path / "nope.geojson"
    with pytest.raises(ClusterError, match="not found") as info:
        load_region(missing, CRS)
    assert str(missing) in str(info.value)
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "Feature", ')
    with pytest.raises(ClusterError, match="not valid JSON") as info:
        load_region(broken, CRS)
    assert str(broken) in str(info.value)


METRES = [[[412_000, 5_540_000], [436_000, 5_540_000], [436_000, 5_561_000], [412_000, 5_540_000]]]


@pytest.mark.parametrize(
    ("doc", "said"),
    [
        ({"type": "Polygon", "coordinates": METRES}, "has no crs member"),
        ({"type": "Polygon", "crs": "EPSG:4326", "coordinates": METRES}, "declares EPSG:4326"),
    ],
    ids=["no-crs-member", "declared-lonlat"],
)
def test_projected_coordinates_read_as_lonlat_are_refused(tmp_path, doc, said):
    """GeoJSON without a crs member is lon/lat; metres there would otherwise end in
    PROJ's "Invalid latitude", naming neither the file nor the fix."""
    path = tmp_path / "state.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": doc}]}))  # fmt: skip
    with pytest.raises(ClusterError) as info:
        load_region(path, "EPSG:3035")  # a CRS whose projection refuses latitude 5e6
    message = str(info.value)
    assert message.startswith(f"{path}: feature 0 has coordinates like (412000, 5.54e+06)")
    assert said in message and '"crs": "EPSG:25832"' in message and "EPSG:4326" in message
    assert "\n" not in message


def test_lonlat_at_the_edges_of_the_world_is_accepted():
    ring = [[[-180, -90], [180, -90], [180, 90], [-180, -90]]]
    region = load_region({"type": "Polygon", "coordinates": ring}, "EPSG:4326")
    assert region.bounds == (-180, -90, 180, 90)
