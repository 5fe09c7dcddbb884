"""Strata = class x confidence band, from chunk to estimate."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.accuracy import (
    AccuracyError,
    ClassConfidenceStrata,
    draw_stratified_sample,
    estimate_stratified,
)

STRATA = ClassConfidenceStrata({10: "water", 20: "conifer", 30: "broadleaf"}, (0.6, 0.8))


def test_codes_and_names():
    classes = np.array([[10, 20, 30], [30, 0, 20]])
    confidence = np.array([[0.5, 0.6, 0.95], [np.nan, 0.7, 0.79]])
    codes = STRATA.encode(classes, confidence, class_nodata=0)
    assert codes.tolist() == [[0, 4, 8], [-1, -1, 4]]
    assert STRATA.names[0] == "water, confidence < 0.60"
    assert STRATA.names[4] == "conifer, confidence 0.60-0.80"
    assert STRATA.names[8] == "broadleaf, confidence >= 0.80"
    assert len(STRATA.names) == 9
    assert [STRATA.map_class(c) for c in (0, 4, 8)] == [10, 20, 30]
    assert STRATA.code(20, 1) == 4


def test_refusals():
    with pytest.raises(AccuracyError, match=r"class codes \[40\] are in the map but not in"):
        STRATA.encode(np.array([[10, 40]]), np.array([[0.9, 0.9]]))
    with pytest.raises(AccuracyError, match="differ in shape"):
        STRATA.encode(np.zeros((2, 2), int), np.zeros((2, 3)))
    with pytest.raises(AccuracyError, match="not increasing"):
        ClassConfidenceStrata({1: "a"}, (0.8, 0.6))
    with pytest.raises(AccuracyError, match="give a negative value"):
        ClassConfidenceStrata({1: "a"}, (0.5,), nodata=0)
    first = lambda: iter([(0, 0, np.full((2, 2), 10)), (2, 0, np.full((2, 2), 10))])  # noqa: E731
    second = lambda: iter([(0, 0, np.full((2, 2), 0.9))])  # noqa: E731
    with pytest.raises(AccuracyError, match="different numbers of chunks"):
        list(STRATA.chunks(first, second)())


def test_class_by_confidence_sample_estimates_the_map_classes():
    """Strata nested in the map classes (Stehman 2014): sample, label, estimate."""
    rng = np.random.default_rng(3)
    classes = rng.choice([10, 20, 30], size=(60, 80))
    confidence = rng.uniform(0.3, 1.0, size=classes.shape)
    # Wrong where unsure: the reference differs from the map on low-confidence pixels.
    truth = np.where(confidence < 0.6, np.roll(classes, 1, axis=1), classes)

    def windows(array: np.ndarray):
        return lambda: ((r, 0, array[r : r + 25]) for r in range(0, array.shape[0], 25))

    chunks = STRATA.chunks(windows(classes), windows(confidence))
    sample = draw_stratified_sample(
        chunks, lambda sizes: dict.fromkeys(sizes, 15), seed=2, nodata=STRATA.nodata,
        stratum_names=STRATA.names,
    )  # fmt: skip
    assert len(sample.points) == 9 * 15
    result = estimate_stratified(
        sample.strata,
        [STRATA.map_class(s) for s in sample.strata],
        truth[sample.rows, sample.cols],
        sample.stratum_sizes,
    )
    true_overall = (truth == classes).mean()
    assert abs(result.overall.value - true_overall) < 3 * result.overall.se
    assert result[10].mapped_pixels is None  # strata are not the map classes
