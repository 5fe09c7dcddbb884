"""Sample files: GeoPackage and CSV written with the design's columns, read back as text."""

from __future__ import annotations

import json

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely

from cluster.accuracy.designfile import SampleDesign
from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.samplefile import COLUMNS, SamplePoints, read_samples, write_csv, write_gpkg


def points() -> SamplePoints:
    return SamplePoints(
        ids=np.array([1, 2, 3]),
        x=np.array([300005.0, 300015.0, 300025.0]),
        y=np.array([5599995.0, 5599985.0, 5599975.0]),
        lon=np.array([6.1, 6.2, 6.3]),
        lat=np.array([50.1, 50.2, 50.3]),
        stratum=np.array(["water, confidence < 0.60", "water", "conifer"], dtype=object),
        map_class=np.array(["water", "water", "conifer"], dtype=object),
        stratum_pixels=np.array([10, 10, 20]),
        stratum_sample=np.array([2, 2, 1]),
    )


def test_gpkg_and_csv_carry_the_columns_and_read_back(tmp_path):
    gpkg, table = tmp_path / "s.gpkg", tmp_path / "s.csv"
    write_gpkg(gpkg, points(), "EPSG:25832")
    write_csv(table, points())
    info = pyogrio.read_info(gpkg)
    assert info["layer_name"] == "samples" and info["crs"] == "EPSG:25832"
    assert list(info["fields"]) == list(COLUMNS) and info["geometry_type"] == "Point"
    assert table.read_text().splitlines()[0] == ",".join(COLUMNS)
    for path in (gpkg, table):
        loaded = read_samples(str(path))
        assert loaded.ids == (1, 2, 3) and loaded.has_ids
        np.testing.assert_array_equal(loaded.xs, points().x)
        np.testing.assert_array_equal(loaded.ys, points().y)
        assert loaded.crs == ("EPSG:25832" if path == gpkg else None)
        assert loaded.texts("stratum") == list(points().stratum)
        assert loaded.texts("reference") == [None, None, None]
        assert loaded.texts("stratum_pixels") == ["10", "10", "20"]
        assert loaded.texts("nothing") is None


def test_labels_typed_as_numbers_read_as_text(tmp_path):
    path = tmp_path / "inventory.gpkg"
    pyogrio.raw.write(
        path,
        shapely.to_wkb(shapely.points([7.0, 7.1], [50.0, 50.1])),
        [np.array([3.0, np.nan]), np.array([12, 13])],
        ["code", "plot"],
        driver="GPKG",
        geometry_type="Point",
        crs="EPSG:4326",
    )
    loaded = read_samples(str(path))
    assert not loaded.has_ids and loaded.ids == (1, 2) and loaded.where(1) == "row 2"
    assert loaded.texts("code") == ["3", None] and loaded.texts("plot") == ["12", "13"]
    assert loaded.crs == "EPSG:4326"


def test_csv_with_lonlat_only(tmp_path):
    path = tmp_path / "grid.csv"
    path.write_text("plot,lon,lat,species\nA,6.5,50.5,beech\nB,6.6,50.6,\n")
    loaded = read_samples(str(path))
    assert loaded.crs == "EPSG:4326" and loaded.texts("species") == ["beech", None]
    np.testing.assert_array_equal(loaded.xs, [6.5, 6.6])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,reference\n1,water\n", "no x, y .* or lon, lat"),
        ("id,x,y\n1,abc,3\n", "point id 1: x 'abc' is not a number"),
        ("id,x,y\n1,2,3\n1,2,3\n", "point id 1 appears twice"),
        ("id,x,y\nseven,2,3\n", "row 1: id 'seven' is not a whole number"),
        ("id,x,y\n", "holds no sample points"),
    ],
)
def test_csv_refusals(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(AccuracyError, match=message):
        read_samples(str(path))


def test_vector_refusals(tmp_path):
    with pytest.raises(AccuracyError, match="does not exist"):
        read_samples(str(tmp_path / "none.gpkg"))
    polygons = tmp_path / "polygons.gpkg"
    pyogrio.raw.write(
        polygons,
        shapely.to_wkb(np.array([shapely.box(0, 0, 1, 1)])),
        [np.array([1])],
        ["id"],
        driver="GPKG",
        geometry_type="Polygon",
        crs="EPSG:25832",
    )
    with pytest.raises(AccuracyError, match="point id 1: geometry is not a point"):
        read_samples(str(polygons))
    no_crs = tmp_path / "nocrs.gpkg"
    with pytest.warns(UserWarning, match="crs"):
        pyogrio.raw.write(
            no_crs,
            shapely.to_wkb(shapely.points([1.0], [2.0])),
            [np.array([1])],
            ["id"],
            driver="GPKG",
            geometry_type="Point",
        )
    with pytest.raises(AccuracyError, match="has no CRS"):
        read_samples(str(no_crs))


def test_design_json_refusals(tmp_path):
    path = tmp_path / "design.json"
    path.write_text(json.dumps({"schema": "something else"}))
    with pytest.raises(AccuracyError, match="is not a statemap sample design"):
        SampleDesign.read(str(path))
    path.write_text(json.dumps({"schema": "statemap.sample-design/1", "store": "x"}))
    with pytest.raises(AccuracyError, match="incomplete or malformed"):
        SampleDesign.read(str(path))
    path.write_text("{not json")
    with pytest.raises(AccuracyError, match="is not JSON"):
        SampleDesign.read(str(path))
    assert SampleDesign.read(str(tmp_path / "absent.json")) is None
