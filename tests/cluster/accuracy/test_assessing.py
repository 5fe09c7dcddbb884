"""Assessing a labelled sample against a store: the estimators' figures, and each refusal."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from cluster.accuracy.assessing import AssessSpec, assess_samples
from cluster.accuracy.designfile import SampleDesign
from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.estimators import estimate_post_stratified, estimate_stratified
from cluster.accuracy.labels import LabelMapping
from cluster.accuracy.samplefile import read_samples, write_csv
from cluster.accuracy.sampling import DesignSpec, DrawnDesign, draw_design
from cluster.accuracy.storechunks import StoreMap
from cluster.predict.store import NODATA
from tests.cluster.accuracy.storemaps import (
    ATTRS,
    CLASS_NAMES,
    LAYOUT,
    known_map,
    pixel,
    write_store,
)


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return known_map()


@pytest.fixture(scope="module")
def source(tmp_path_factory, arrays) -> StoreMap:
    uri = str(tmp_path_factory.mktemp("assessing") / "map.zarr")
    write_store(uri, arrays[0], arrays[1])
    return StoreMap.open(uri)


@pytest.fixture(scope="module")
def drawn(source) -> DrawnDesign:
    return draw_design(source, DesignSpec(seed=9, n=120, allocation="equal"))


def labelled(path: Path, drawn: DrawnDesign, truth: np.ndarray, **edits: object) -> Path:
    """The design's CSV with ``reference`` from the truth; ``edits`` change or drop columns."""
    write_csv(path, drawn.points)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["reference"] = CLASS_NAMES[truth[pixel(float(row["x"]), float(row["y"]))]]
    for name, change in edits.items():
        for row in rows:
            if change is None:
                row.pop(name, None)
            else:
                row[name] = change(row) if callable(change) else change  # type: ignore[operator]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def truth_units(drawn: DrawnDesign, classes: np.ndarray, truth: np.ndarray):
    cells = [pixel(x, y) for x, y in zip(drawn.points.x, drawn.points.y, strict=True)]
    mapped = [CLASS_NAMES[classes[c]] for c in cells]
    reference = [CLASS_NAMES[truth[c]] for c in cells]
    return list(drawn.points.stratum), mapped, reference


def same_estimates(got, want) -> None:
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_allclose(got.proportions, want.proportions)
    assert got.overall == want.overall
    for name in CLASS_NAMES:
        assert got[name] == want[name]


def test_class_strata_give_olofssons_estimates(tmp_path, source, drawn, arrays):
    classes, _, truth = arrays
    samples = read_samples(str(labelled(tmp_path / "s.csv", drawn, truth)))
    assessed = assess_samples(source, samples, design=drawn.design)
    assert assessed.estimator == "olofsson2014" and assessed.same_map is True
    strata, mapped, reference = truth_units(drawn, classes, truth)
    assert strata == mapped
    want = estimate_stratified(
        strata,
        mapped,
        reference,
        drawn.design.stratum_sizes,
        classes=CLASS_NAMES,
        pixel_area_m2=100.0,
        sample_ids=list(range(1, 121)),
    )
    same_estimates(assessed.result, want)
    # The map's confusion shows: conifer's pixel count exceeds its estimated area.
    conifer = assessed.result["conifer"]
    assert conifer.mapped_area_ha > conifer.area_ha.high
    # Without design.json, the N_h columns give the same.
    columns = assess_samples(source, samples, design=None)
    assert columns.design_source == "columns"
    same_estimates(columns.result, want)


def test_confidence_strata_give_stehmans_estimates(tmp_path, source, arrays):
    classes, _, truth = arrays
    drawn = draw_design(source, DesignSpec(seed=4, n=150, confidence_bands=(0.6,), minimum=6))
    samples = read_samples(str(labelled(tmp_path / "s.csv", drawn, truth)))
    assessed = assess_samples(source, samples, design=drawn.design, spec=AssessSpec(fpc=False))
    assert assessed.estimator == "stehman2014"
    strata, mapped, reference = truth_units(drawn, classes, truth)
    values, counts = np.unique(classes[classes != NODATA], return_counts=True)
    pixels = {CLASS_NAMES[v]: int(n) for v, n in zip(values, counts, strict=True)}
    want = estimate_stratified(
        strata,
        mapped,
        reference,
        drawn.design.stratum_sizes,
        classes=CLASS_NAMES,
        pixel_area_m2=100.0,
        mapped_pixels=pixels,
        fpc=False,
    )
    same_estimates(assessed.result, want)
    assert assessed.mapped_pixels == pixels


def test_a_design_drawn_on_another_map_gives_stehmans_estimates(tmp_path, source, drawn, arrays):
    """Last year's design, this year's map: strata from the design, map classes from the store."""
    classes, confidence, truth = arrays
    newer = truth.copy()  # this year's map has every error fixed
    other = write_store(
        tmp_path / "new.zarr", newer, confidence, dataclasses.replace(ATTRS, run_id="run-next")
    )
    samples = read_samples(str(labelled(tmp_path / "s.csv", drawn, truth)))
    assessed = assess_samples(StoreMap(other), samples, design=drawn.design)
    assert assessed.same_map is False and assessed.estimator == "stehman2014"
    strata, _, reference = truth_units(drawn, classes, truth)
    mapped = [
        CLASS_NAMES[newer[pixel(x, y)]] for x, y in zip(drawn.points.x, drawn.points.y, strict=True)
    ]
    values, counts = np.unique(newer[newer != NODATA], return_counts=True)
    pixels = {CLASS_NAMES[v]: int(n) for v, n in zip(values, counts, strict=True)}
    want = estimate_stratified(
        strata,
        mapped,
        reference,
        drawn.design.stratum_sizes,
        classes=CLASS_NAMES,
        pixel_area_m2=100.0,
        mapped_pixels=pixels,
    )
    same_estimates(assessed.result, want)
    assert assessed.result.overall.value == pytest.approx(1.0)


def test_post_stratified_grid_reads_classes_and_counts_from_the_store(tmp_path, source, arrays):
    classes, _, truth = arrays
    t = LAYOUT.transform
    rows, cols = np.meshgrid(np.arange(4, 64, 3), np.arange(1, 80, 3), indexing="ij")
    keep = classes[rows, cols] != NODATA
    rows, cols = rows[keep], cols[keep]
    path = tmp_path / "grid.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["plot", "x", "y", "code"])
        for k, (r, c) in enumerate(zip(rows, cols, strict=True)):
            writer.writerow([f"P{k}", t.c + (c + 0.3) * 10, t.f - (r + 0.6) * 10, 10 + truth[r, c]])
    codes = LabelMapping.build({10 + i: n for i, n in enumerate(CLASS_NAMES)}, CLASS_NAMES, "m")
    spec = AssessSpec(reference_column="code", post_stratified=True)
    assessed = assess_samples(
        source, read_samples(str(path)), design=None, mapping=codes, spec=spec
    )
    assert assessed.estimator == "post-stratified" and assessed.design is None
    values, counts = np.unique(classes[classes != NODATA], return_counts=True)
    pixels = {CLASS_NAMES[v]: int(n) for v, n in zip(values, counts, strict=True)}
    mapped = [CLASS_NAMES[v] for v in classes[rows, cols]]
    reference = [CLASS_NAMES[v] for v in truth[rows, cols]]
    want = estimate_post_stratified(
        mapped, reference, pixels, classes=CLASS_NAMES, pixel_area_m2=100.0, mapped_pixels=pixels
    )
    same_estimates(assessed.result, want)


def test_refusals_name_the_point_and_the_fix(tmp_path, source, drawn, arrays):
    truth = arrays[2]
    design = drawn.design

    def refused(message: str, design: SampleDesign | None = design, **edits: object) -> None:
        path = labelled(tmp_path / "s.csv", drawn, truth, **edits)
        with pytest.raises(AccuracyError, match=message):
            assess_samples(source, read_samples(str(path)), design=design)

    refused("no design information.*--post-stratified", design=None, stratum_pixels=None)
    refused(
        r"point id 1: reference label 'beech' is not a class",
        reference=lambda r: "beech" if r["id"] == "1" else r["reference"],
    )
    refused(r"120 of 120 points have no reference label \(point id 1, point id 2,", reference="")
    refused(
        r"s.csv: 1 point\(s\) lie off the map \(point id 3\)",
        x=lambda r: "1.0" if r["id"] == "3" else r["x"],
    )
    nodata_y = LAYOUT.transform.f - 5.0  # the top rows are nodata
    refused(
        r"1 point\(s\) lie where the map has no class .*\(point id 4\)",
        y=lambda r: str(nodata_y) if r["id"] == "4" else r["y"],
    )
    refused("has no id column", id=None)
    refused("stratum 'water' in the file but", stratum="water", map_class=None)
    refused(r"point id 999 was not drawn", id=lambda r: "999" if r["id"] == "5" else r["id"])
    # A point moved into another stratum's pixel: its id says it was drawn elsewhere.
    first = drawn.points
    other = int(np.flatnonzero(first.stratum != first.stratum[0])[0])
    refused(
        r"point id 1: the design in design.json drew it in stratum 'water'",
        x=lambda r: str(first.x[other]) if r["id"] == "1" else r["x"],
        y=lambda r: str(first.y[other]) if r["id"] == "1" else r["y"],
    )
    refused("no column 'reference'", reference=None)


def test_missing_points_are_refused(tmp_path, source, drawn, arrays):
    path = labelled(tmp_path / "s.csv", drawn, arrays[2])
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n")  # the last two points dropped
    with pytest.raises(AccuracyError, match=r"2 of the 120 points .* missing \(ids 119, 120\)"):
        assess_samples(source, read_samples(str(path)), design=drawn.design)
    with pytest.raises(AccuracyError, match="stratum 'conifer' has 28 points but its "):
        assess_samples(source, read_samples(str(path)), design=None)
