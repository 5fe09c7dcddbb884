"""``statemap sample-design``: a run's map in, GeoPackage + CSV + design.json out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely
from pyproj import Transformer

from cluster.accuracy.samplefile import COLUMNS
from cluster.predict.store import NODATA
from jobs.cli import main
from jobs.runrecord import RunRecord
from tests.cluster.accuracy.storemaps import CLASS_NAMES, known_map, pixel, write_store


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return known_map()


@pytest.fixture(scope="module")
def store(tmp_path_factory, arrays) -> str:
    uri = str(tmp_path_factory.mktemp("sampledesign") / "map.zarr")
    write_store(uri, arrays[0], arrays[1])
    return uri


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_writes_gpkg_csv_and_design_with_exact_sizes(tmp_path, store, arrays, capsys):
    classes = arrays[0]
    out = tmp_path / "design"
    argv = [
        "sample-design",
        store,
        "--out",
        str(out),
        "--n",
        "60",
        "--seed",
        "11",
        "--allocation",
        "proportional-min",
        "--min-per-stratum",
        "10",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "sample size n = 60 (given), allocation proportional-min, seed 11" in printed
    rows = read_csv(out / "samples.csv")
    assert list(rows[0]) == list(COLUMNS) and len(rows) == 60
    values, counts = np.unique(classes[classes != NODATA], return_counts=True)
    sizes = {CLASS_NAMES[v]: int(n) for v, n in zip(values, counts, strict=True)}
    to_lonlat = Transformer.from_crs("EPSG:25832", "EPSG:4326", always_xy=True)
    back = Transformer.from_crs("EPSG:4326", "EPSG:25832", always_xy=True)
    for row in rows:
        x, y = float(row["x"]), float(row["y"])
        assert CLASS_NAMES[classes[pixel(x, y)]] == row["stratum"] == row["map_class"]
        assert int(row["stratum_pixels"]) == sizes[row["stratum"]]
        assert row["reference"] == ""
        lon, lat = to_lonlat.transform(x, y)
        assert abs(float(row["lon"]) - lon) < 1e-8 and abs(float(row["lat"]) - lat) < 1e-8
        assert pixel(*back.transform(float(row["lon"]), float(row["lat"]))) == pixel(x, y)
    for name, n_h in {r["stratum"]: r["stratum_sample"] for r in rows}.items():
        assert sum(r["stratum"] == name for r in rows) == int(n_h) >= 10
    info = pyogrio.read_info(out / "samples.gpkg")
    assert info["crs"] == "EPSG:25832" and list(info["fields"]) == list(COLUMNS)
    _, _, wkb, values = pyogrio.raw.read(out / "samples.gpkg")
    xy = shapely.get_coordinates(shapely.from_wkb(wkb))
    np.testing.assert_array_equal(xy[:, 0], [float(r["x"]) for r in rows])
    np.testing.assert_array_equal(values[list(COLUMNS).index("id")], np.arange(1, 61))
    design = json.loads((out / "design.json").read_text())
    assert design["store"] == str(Path(store).resolve()) and design["seed"] == 11
    assert {s["name"]: s["pixels"] for s in design["strata"]} == sizes
    assert design["n"] == 60 and design["pixel_area_m2"] == 100.0
    assert design["crs"]["epsg"] == 25832 and design["class_names"] == list(CLASS_NAMES)
    assert design["allocation"] == "proportional-min" and design["min_per_stratum"] == 10


def test_same_seed_same_points_other_seed_other_points(tmp_path, store):
    base = ["sample-design", store, "--n", "40", "--confidence-bands", "0.6,0.8"]
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert main([*base, "--out", str(tmp_path / name), "--seed", seed]) == 0
    text = {name: (tmp_path / name / "samples.csv").read_text() for name in "abc"}
    assert text["a"] == text["b"] != text["c"]
    strata = {r["stratum"] for r in read_csv(tmp_path / "a" / "samples.csv")}
    assert any("confidence >= 0.80" in s for s in strata)


def test_run_record_names_the_store(tmp_path, store, capsys):
    maps = tmp_path / "maps" / "run-acc"
    RunRecord(
        "run-acc",
        "demo",
        "2024",
        "succeeded",
        "2024-01-01T00:00:00Z",
        store,
        str(maps),
        "cd" * 32,
        "0.1.0",
    ).save()
    for target in (maps, maps / "run.json"):
        out = tmp_path / f"from-{target.name}"
        assert main(["sample-design", str(target), "--out", str(out), "--n", "20"]) == 0
        assert (out / "design.json").is_file()
    capsys.readouterr()
    assert main(["sample-design", str(tmp_path), "--out", str(tmp_path / "x"), "--n", "5"]) == 2
    assert "neither a statemap store" in capsys.readouterr().err


def test_refusals_exit_2_with_the_message(tmp_path, store, capsys):
    out = str(tmp_path / "d")
    assert main(["sample-design", store, "--out", out, "--n", "20"]) == 0
    assert main(["sample-design", store, "--out", out, "--n", "20"]) == 2
    assert "exists (perhaps already labelled)" in capsys.readouterr().err
    assert main(["sample-design", store, "--out", out, "--n", "20", "--overwrite"]) == 0
    argv = ["sample-design", store, "--out", str(tmp_path / "e"), "--target-se", "0.02"]
    assert main(argv) == 2
    assert "has no expected user's accuracy" in capsys.readouterr().err
    assert main([*argv, "--expected-users", "0.8,water=high"]) == 2
    assert "'water=high' is not 'class=value'" in capsys.readouterr().err
    assert main([*argv, "--expected-users", "0.8,water=0.95"]) == 0
    bands = ["--confidence-bands", "0.8,0.6", "--n", "20"]
    assert main(["sample-design", store, "--out", str(tmp_path / "f"), *bands]) == 2
    assert "not increasing" in capsys.readouterr().err
