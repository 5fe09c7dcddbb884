"""The estimators against the papers' worked examples, and their refusals.

Tolerances match the precision the papers print (half a unit of the last
digit); where the reference data's README corrects a printed value (the
paper's own rounding), the corrected value is used.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cluster.accuracy import (
    AccuracyError,
    estimate_from_error_matrix,
    estimate_post_stratified,
    estimate_stratified,
)

NAMES = ("deforestation", "forest_gain", "stable_forest", "stable_non_forest")
# Olofsson et al. (2014) Table 9, rows map, columns reference.
TABLE9 = [
    [0.0176, 0.0, 0.0013, 0.0011],
    [0.0, 0.0110, 0.0016, 0.0024],
    [0.0019, 0.0, 0.2967, 0.0213],
    [0.0040, 0.0020, 0.0179, 0.6212],
]
# (value, 95% half-width, tolerance of the half-width): README; * = its corrected values.
USERS = {
    "deforestation": (0.88, 0.07, 0.005),
    "forest_gain": (0.73, 0.10, 0.005),
    "stable_forest": (0.93, 0.04, 0.005),
    "stable_non_forest": (0.96, 0.02, 0.005),
}
PRODUCERS = {
    "deforestation": (0.75, 0.21, 0.005),
    "forest_gain": (0.85, 0.254, 0.0005),  # * printed 0.23
    "stable_forest": (0.93, 0.03, 0.005),
    "stable_non_forest": (0.96, 0.018, 0.0005),  # * printed 0.01
}
AREAS_HA = {
    "deforestation": (21_158, 6_158),
    "forest_gain": (11_686, 3_756),
    "stable_forest": (285_770, 15_510),
    "stable_non_forest": (581_386, 16_282),
}


@pytest.fixture(scope="module")
def table9(olofsson):
    counts, mapped, pixel_m2 = olofsson
    # Olofsson et al. use no finite population correction (eq. 5-7, 10).
    return estimate_from_error_matrix(counts, mapped, pixel_area_m2=pixel_m2, fpc=False)


def test_olofsson_weights_and_area_matrix(olofsson, table9):
    _, mapped, _ = olofsson
    total = sum(mapped.values())
    assert [round(mapped[c] / total, 3) for c in NAMES] == [0.020, 0.015, 0.320, 0.645]
    assert table9.classes == NAMES
    assert np.round(table9.proportions, 4).tolist() == TABLE9
    assert table9.counts.sum() == 640 and table9.counts[0].tolist() == [66, 0, 5, 4]


def test_olofsson_accuracies(table9):
    assert table9.overall.value == pytest.approx(0.9465, abs=5e-5)
    assert table9.overall.half_width == pytest.approx(0.0185, abs=5e-5)
    for name, (value, half, tol) in USERS.items():
        assert table9[name].users.value == pytest.approx(value, abs=0.005), name
        assert table9[name].users.half_width == pytest.approx(half, abs=tol), name
    for name, (value, half, tol) in PRODUCERS.items():
        assert table9[name].producers.value == pytest.approx(value, abs=0.005), name
        assert table9[name].producers.half_width == pytest.approx(half, abs=tol), name


def test_olofsson_areas(olofsson, table9):
    for name, (area, half) in AREAS_HA.items():
        estimate = table9[name].area_ha
        assert estimate.value == pytest.approx(area, abs=0.5), name
        assert estimate.half_width == pytest.approx(half, abs=0.5), name
        assert (estimate.low, estimate.high) == pytest.approx((area - half, area + half), abs=1)
        assert table9[name].mapped_area_ha == pytest.approx(olofsson[1][name] * 0.09)
    assert table9.total_area_ha == pytest.approx(900_000)
    # The finite population correction (the default) moves no half-width by a hectare here.
    counts, mapped, pixel_m2 = olofsson
    with_fpc = estimate_from_error_matrix(counts, mapped, pixel_area_m2=pixel_m2)
    for name, (_, half) in AREAS_HA.items():
        assert with_fpc[name].area_ha.half_width == pytest.approx(half, abs=1.0)


def test_f1_is_the_ratio_of_the_cells(table9):
    p = table9.proportions
    for k, name in enumerate(NAMES):
        f1 = table9[name].f1
        assert f1.value == pytest.approx(2 * p[k, k] / (p[k].sum() + p[:, k].sum()))
        users, producers = table9[name].users.value, table9[name].producers.value
        assert f1.value == pytest.approx(2 * users * producers / (users + producers))
        assert 0 < f1.se < 0.2 and f1.low < f1.value < f1.high


def stehman_estimate(stehman, **options):
    units, sizes = stehman
    return estimate_stratified(
        [u["stratum"] for u in units],
        [u["map_class"] for u in units],
        [u["reference_class"] for u in units],
        sizes,
        sample_ids=[u["sample_unit"] for u in units],
        **options,
    )


def test_stehman_strata_that_are_not_the_map_classes(stehman):
    result = stehman_estimate(stehman)
    assert result.classes == ("A", "B", "C", "D")
    assert result.sample_sizes == {"1": 10, "2": 10, "3": 10, "4": 10}
    expected = [  # (estimate, tolerance, SE, tolerance), as printed in the README
        (result["A"].area_proportion, 0.35, 0.005, 0.082, 0.0005),
        (result["C"].area_proportion, 0.20, 0.005, 0.064, 0.0005),
        (result.overall, 0.63, 0.005, 0.085, 0.0005),
        (result["B"].users, 0.574, 0.0005, 0.125, 0.0005),
        (result["B"].producers, 0.794, 0.0005, 0.1165, 0.00005),  # paper prints 0.114
    ]
    for estimate, value, tol, se, se_tol in expected:
        assert estimate.value == pytest.approx(value, abs=tol)
        assert estimate.se == pytest.approx(se, abs=se_tol)
    assert result.proportions[1, 2] == pytest.approx(0.08, abs=1e-12)
    assert result.proportions.sum() == pytest.approx(1.0)
    # Strata are not map classes: the map's pixel counts are not known from them.
    assert result["B"].mapped_pixels is None


def test_finite_population_correction_is_optional(stehman):
    with_fpc = stehman_estimate(stehman)
    without = stehman_estimate(stehman, fpc=False)
    assert without.overall.value == with_fpc.overall.value
    # All strata have n_h = 10, so f_h = 10 / N_h is small and differs by stratum.
    assert 1.0 < without.overall.se / with_fpc.overall.se < 1 / math.sqrt(1 - 10 / 10_000)


def test_wilson_intervals_stay_inside_and_do_not_collapse(table9, olofsson):
    counts, mapped, pixel_m2 = olofsson
    wilson = estimate_from_error_matrix(counts, mapped, pixel_area_m2=pixel_m2, interval="wilson")
    wald_ua = table9["forest_gain"].users
    ua = wilson["forest_gain"].users
    assert ua.value == wald_ua.value and ua.se == pytest.approx(wald_ua.se, rel=1e-3)
    assert ua.low == pytest.approx(wald_ua.low, abs=0.01)  # close for n = 75, U = 0.73
    assert ua.high - ua.value < ua.value - ua.low  # but pulled towards 0.5
    perfect = estimate_stratified(
        ["a"] * 30 + ["b"] * 30, ["a"] * 30 + ["b"] * 30, ["a"] * 30 + ["b"] * 29 + ["a"],
        {"a": 1000, "b": 1000}, interval="wilson",
    )  # fmt: skip
    users = perfect["a"].users  # 30 of 30 correct: SE 0, Wald would say [1, 1]
    assert users.value == 1.0 and users.se == 0.0
    assert 0.85 < users.low < 0.9 and users.high == 1.0
    for estimate in (perfect.overall, perfect["b"].producers, perfect["a"].area_proportion):
        assert 0.0 <= estimate.low <= estimate.value <= estimate.high <= 1.0


def test_intervals_of_proportions_are_clamped(stehman):
    producers = stehman_estimate(stehman)["B"].producers
    assert producers.value + producers.half_width > 1.0
    assert producers.high == 1.0 and producers.low == producers.value - producers.half_width


def test_post_stratified_estimates_and_variance():
    """Point estimates as stratified; variance by the post-stratification formula, by hand."""
    rng = np.random.default_rng(5)
    mapped = rng.choice(["x", "y", "z"], size=300, p=[0.5, 0.3, 0.2])
    correct = rng.random(300) < 0.85
    reference = np.where(correct, mapped, np.where(mapped == "x", "y", "x"))
    sizes = {"x": 50_000, "y": 30_000, "z": 20_000}
    post = estimate_post_stratified(mapped, reference, sizes)
    strat = estimate_stratified(mapped, mapped, reference, sizes)
    assert post.design == "post-stratified" and strat.design == "stratified"
    np.testing.assert_allclose(post.proportions, strat.proportions)
    assert post["x"].mapped_pixels == 50_000
    big_n, n = 100_000, 300
    y = (mapped == reference).astype(float)
    within = {h: y[mapped == h].var(ddof=1) for h in sizes}
    weights = {h: sizes[h] / big_n for h in sizes}
    variance = (1 - n / big_n) / n * sum(weights[h] * within[h] for h in sizes) + sum(
        (1 - weights[h]) * within[h] for h in sizes
    ) / n**2
    assert post.overall.se == pytest.approx(math.sqrt(variance), rel=1e-12)
    assert post.overall.se > strat.overall.se  # the n_h were random: a price is paid


def test_classes_can_be_given_and_may_be_absent_from_the_sample():
    result = estimate_stratified(
        [1, 1, 2, 2], [1, 1, 2, 2], [1, 2, 2, 2], {1: 100, 2: 100}, classes=[1, 2, 3]
    )
    assert result.classes == (1, 2, 3)
    assert result[3].area_proportion.value == 0.0 and result[3].area_proportion.se == 0.0
    assert math.isnan(result[3].users.value) and math.isnan(result[3].producers.value)
    assert result[3].mapped_pixels == 0


def test_standard_errors_can_be_skipped_for_single_unit_strata():
    result = estimate_stratified(["a", "b"], ["a", "b"], ["a", "a"], {"a": 10, "b": 10},
                                 standard_errors=False)  # fmt: skip
    assert result.overall.value == pytest.approx(0.5) and result.overall.se is None
    assert result.proportions_se is None and result["a"].users.low is None


BASE = {
    "strata": ["s1", "s1", "s2", "s2"],
    "map_classes": ["a", "a", "b", "b"],
    "reference_classes": ["a", "b", "b", "b"],
    "stratum_sizes": {"s1": 100, "s2": 50},
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"strata": ["s1", "s1", "s2", "s3"]}, r"sample unit 'u4': its stratum 's3' has no pixel"),
        ({"reference_classes": ["a", "b", "b", "c"]}, r"unit 'u4': its reference class 'c' is not"),
        ({"map_classes": ["a", "x", "b", "b"]}, r"unit 'u2': its map class 'x' is not among"),
        ({"stratum_sizes": {"s1": 100, "s2": 1}}, r"stratum 's2' has 2 sample units but only N_h"),
        ({"stratum_sizes": {"s1": 100, "s2": 50, "s3": 7}}, r"stratum 's3' \(7 pixels\) has no"),
        ({"stratum_sizes": {"s1": 100, "s2": 0}}, r"stratum 's2' has N_h = 0 pixels.*unit 'u3'"),
        ({"stratum_sizes": {"s1": 100, "s2": 2.5}}, r"stratum 's2': size 2\.5 is not a whole"),
        ({"strata": ["s1", "s2", "s2", "s2"]}, r"stratum 's1' has 1 sample unit; a standard err"),
        ({"reference_classes": ["a", "b"]}, r"4 map classes and 2 reference classes"),
    ],
)
def test_refusals_name_the_culprit(change, expected):
    args = {**BASE, **change}
    with pytest.raises(AccuracyError, match=expected):
        estimate_stratified(
            args["strata"],
            args["map_classes"],
            args["reference_classes"],
            args["stratum_sizes"],
            classes=["a", "b"],
            sample_ids=["u1", "u2", "u3", "u4"][: len(args["strata"])],
        )


def test_refusals_of_post_strata_and_options():
    with pytest.raises(AccuracyError, match=r"post-stratum 'c' \(10 pixels\) has no sample units"):
        estimate_post_stratified(["a", "a", "b", "b"], ["a", "a", "b", "a"],
                                 {"a": 10, "b": 10, "c": 10})  # fmt: skip
    with pytest.raises(AccuracyError, match="no pixel count N_h in class_sizes"):
        estimate_post_stratified(["a", "a", "b", "b"], ["a", "a", "b", "a"], {"a": 10})
    with pytest.raises(AccuracyError, match="class 'a' is listed twice"):
        estimate_stratified(["a", "a"], ["a", "a"], ["a", "a"], {"a": 5}, classes=["a", "b", "a"])
    with pytest.raises(AccuracyError, match="interval must be one of"):
        estimate_stratified(["a", "a"], ["a", "a"], ["a", "a"], {"a": 5}, interval="exact")
    with pytest.raises(AccuracyError, match="does not fit the 2 classes"):
        estimate_from_error_matrix([[1, 2, 3]], {"a": 10, "b": 10})
    with pytest.raises(ValueError, match="pixel_area_m2 must be positive"):  # a ValueError too
        estimate_stratified(["a", "a"], ["a", "a"], ["a", "a"], {"a": 5}, pixel_area_m2=0)


def test_an_interval_stays_inside_zero_one_when_rounding_leaves_it():
    from cluster.accuracy.intervals import proportion_estimate

    for interval in ("wald", "wilson"):
        above = proportion_estimate(1.0 + 2e-16, 0.0, interval=interval, units=10)
        below = proportion_estimate(-2e-16, 0.0, interval=interval, units=10)
        assert 0.0 <= above.low <= above.high <= 1.0 and 0.0 <= below.low <= below.high <= 1.0
