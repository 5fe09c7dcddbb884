"""``statemap assess``: a labelled sample of a run's map in, estimates and assessment.json out."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import shapely

from cluster.accuracy.estimators import estimate_post_stratified, estimate_stratified
from cluster.predict.store import NODATA
from jobs.cli import main
from jobs.runrecord import RunRecord
from tests.cluster.accuracy.storemaps import CLASS_NAMES, LAYOUT, known_map, pixel, write_store

TOP_KEYS = [
    "schema",
    "created",
    "map",
    "samples",
    "design",
    "classes",
    "error_matrix",
    "overall",
    "per_class",
    "area",
    "units",
]
ESTIMATE_KEYS = ["value", "se", "low", "high"]


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return known_map()


@pytest.fixture(scope="module")
def store(tmp_path_factory, arrays) -> str:
    uri = str(tmp_path_factory.mktemp("assess") / "map.zarr")
    write_store(uri, arrays[0], arrays[1])
    return uri


def design(out: Path, store: str, *extra: str) -> Path:
    assert (
        main(
            [
                "sample-design",
                store,
                "--out",
                str(out),
                "--n",
                "100",
                "--seed",
                "2",
                "--allocation",
                "equal",
                *extra,
            ]
        )
        == 0
    )
    return out


def label_gpkg(path: Path, truth: np.ndarray, code: bool = False) -> list[str]:
    """The GeoPackage's reference field filled from the truth (as codes 10 + class if asked),
    the way a labeller's edits in QGIS leave it; returns the labels' class names."""
    meta, _, wkb, values = pyogrio.raw.read(path)
    fields = list(meta["fields"])
    xy = shapely.get_coordinates(shapely.from_wkb(wkb))
    truth_classes = [int(truth[pixel(x, y)]) for x, y in xy]
    values[fields.index("reference")] = np.array(
        [str(10 + c) if code else CLASS_NAMES[c] for c in truth_classes], dtype=object
    )
    pyogrio.raw.write(
        path,
        wkb,
        values,
        fields,
        layer="samples",
        driver="GPKG",
        geometry_type="Point",
        crs=meta["crs"],
    )
    return [CLASS_NAMES[c] for c in truth_classes]


def strict_json(path: Path) -> dict:
    def no_nan(name: str) -> None:
        raise AssertionError(f"assessment.json holds {name}")

    return json.loads(path.read_text(), parse_constant=no_nan)


def test_assess_a_labelled_geopackage(tmp_path, store, arrays, capsys):
    classes, _, truth = arrays
    out = design(tmp_path / "d", store)
    reference = label_gpkg(out / "samples.gpkg", truth)
    capsys.readouterr()
    assert main(["assess", store, str(out / "samples.gpkg")]) == 0
    printed = capsys.readouterr().out
    for text in (
        "error matrix, sample units",
        "error matrix, estimated area proportions",
        "overall accuracy",
        "user's accuracy",
        "pixel-count area (ha)",
        "olofsson2014",
    ):
        assert text in printed
    doc = strict_json(out / "assessment.json")
    assert list(doc) == TOP_KEYS and doc["schema"] == "statemap.assessment/1"
    rows = list(csv.DictReader((out / "samples.csv").open()))
    mapped = [CLASS_NAMES[classes[pixel(float(r["x"]), float(r["y"]))]] for r in rows]
    sizes = {s["name"]: s["pixels"] for s in doc["design"]["sample_design"]["strata"]}
    want = estimate_stratified(
        mapped, mapped, reference, sizes, classes=CLASS_NAMES, pixel_area_m2=100.0
    )
    assert doc["error_matrix"]["counts"] == want.counts.tolist()
    np.testing.assert_allclose(doc["error_matrix"]["proportions"], want.proportions)
    assert doc["overall"]["accuracy"] == {k: getattr(want.overall, k) for k in ESTIMATE_KEYS}
    for entry in doc["per_class"]:
        c = want[entry["class"]]
        for key in ("users", "producers", "f1", "area_proportion", "area_ha"):
            assert list(entry[key]) == ESTIMATE_KEYS
            np.testing.assert_allclose(
                [entry[key][k] for k in ESTIMATE_KEYS],
                [getattr(getattr(c, key), k) for k in ESTIMATE_KEYS],
            )
        assert entry["mapped_pixels"] == c.mapped_pixels
        assert entry["mapped_area_ha"] == pytest.approx(c.mapped_area_ha)
    assert doc["design"]["estimator"] == "olofsson2014" and doc["design"]["type"] == "stratified"
    assert doc["design"]["drawn_on_this_map"] is True
    assert doc["map"]["run_id"] == "run-acc" and doc["map"]["record"] is None
    assert doc["area"]["total_pixels"] == int((classes != NODATA).sum())
    assert len(doc["units"]) == 100 and doc["units"][0]["reference"] == reference[0]
    assert doc["classes"][0] == {"value": 0, "name": "water", "color": "#1f78b4"}


def test_codes_through_a_mapping_and_a_run_record(tmp_path, store, arrays, capsys):
    out = design(tmp_path / "d", store, "--confidence-bands", "0.6")
    label_gpkg(out / "samples.gpkg", arrays[2], code=True)
    mapping = tmp_path / "codes.yaml"
    mapping.write_text("10: water\n11: open land\n12: broadleaf\n13: conifer\n14: conifer\n")
    maps = tmp_path / "maps"
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
    (maps / "viewer").mkdir()
    (maps / "viewer" / "maps.json").write_text('{"run_id": "run-acc", "report": null}')
    report = tmp_path / "report" / "assessment.json"
    argv = ["assess", str(maps), str(out / "samples.gpkg"), "--out", str(report)]
    assert main(argv) == 2
    assert "reference label '10' is not a class" in capsys.readouterr().err
    assert main([*argv, "--labels", str(mapping), "--interval", "wilson"]) == 0
    doc = strict_json(report)
    assert doc["design"]["estimator"] == "stehman2014" and doc["design"]["interval"] == "wilson"
    assert doc["samples"]["labels"]["codes"]["14"] == "conifer"
    assert doc["map"]["record"]["region"] == "demo"
    assert len(doc["design"]["strata"]) == 8
    published = maps / "accuracy"  # the run's assessment travels with its maps
    assert strict_json(published / "assessment.json") == doc
    assert (published / "report.html").read_bytes() == (report.parent / "report.html").read_bytes()
    viewer = strict_json(maps / "viewer" / "maps.json")  # the run's viewer opens the report
    assert viewer == {"run_id": "run-acc", "report": "../accuracy/report.html"}


def test_post_stratified_inventory_grid(tmp_path, store, arrays, capsys):
    classes, _, truth = arrays
    t = LAYOUT.transform
    rows, cols = np.meshgrid(np.arange(5, 64, 4), np.arange(2, 80, 4), indexing="ij")
    keep = classes[rows, cols] != NODATA
    rows, cols = rows[keep], cols[keep]
    xs, ys = t.c + (cols + 0.5) * 10, t.f - (rows + 0.5) * 10
    grid = tmp_path / "inventory.gpkg"
    pyogrio.raw.write(
        grid,
        shapely.to_wkb(shapely.points(xs, ys)),
        [np.array([CLASS_NAMES[v] for v in truth[rows, cols]], dtype=object)],
        ["species"],
        driver="GPKG",
        geometry_type="Point",
        crs="EPSG:25832",
    )
    argv = ["assess", store, str(grid), "--reference-column", "species"]
    assert main(argv) == 2
    assert "no design information" in capsys.readouterr().err
    assert main([*argv, "--post-stratified"]) == 0
    doc = strict_json(tmp_path / "assessment.json")
    values, counts = np.unique(classes[classes != NODATA], return_counts=True)
    pixels = {CLASS_NAMES[v]: int(n) for v, n in zip(values, counts, strict=True)}
    want = estimate_post_stratified(
        [CLASS_NAMES[v] for v in classes[rows, cols]],
        [CLASS_NAMES[v] for v in truth[rows, cols]],
        pixels,
        classes=CLASS_NAMES,
        pixel_area_m2=100.0,
    )
    assert doc["design"]["estimator"] == "post-stratified"
    assert doc["overall"]["accuracy"]["value"] == pytest.approx(want.overall.value)
    assert doc["overall"]["accuracy"]["se"] == pytest.approx(want.overall.se)
    assert [c["mapped_pixels"] for c in doc["per_class"]] == [pixels[c] for c in CLASS_NAMES]


def test_refusals_exit_2_naming_file_and_point(tmp_path, store, capsys):
    out = design(tmp_path / "d", store)
    samples = out / "samples.csv"
    capsys.readouterr()
    assert main(["assess", store, str(samples)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("statemap: error: ") and "100 of 100 points have no reference" in err
    assert str(samples) in err
    assert main(["assess", store, str(samples), "--design", str(tmp_path / "none.json")]) == 2
    assert "design" in capsys.readouterr().err
