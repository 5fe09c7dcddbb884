"""Sample size (Olofsson et al. 2014 eq. 13) and the allocations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cluster.accuracy import (
    AccuracyError,
    allocate_equal,
    allocate_neyman,
    allocate_proportional,
    sample_size_overall_accuracy,
)

# Olofsson et al. (2014): mapped pixels and the user's accuracies expected of each class.
SIZES = {"deforestation": 200_000, "gain": 150_000, "forest": 3_200_000, "non_forest": 6_450_000}
EXPECTED_UA = {"deforestation": 0.70, "gain": 0.60, "forest": 0.90, "non_forest": 0.95}


def test_olofsson_sample_size_is_641():
    assert sample_size_overall_accuracy(SIZES, EXPECTED_UA, 0.01) == 641
    # The exact form with 1/N changes nothing for ten million pixels ...
    assert sample_size_overall_accuracy(SIZES, EXPECTED_UA, 0.01, finite_population=True) == 641
    # ... but a small population needs fewer units.
    small = {k: v // 10_000 for k, v in SIZES.items()}
    assert sample_size_overall_accuracy(small, EXPECTED_UA, 0.01, finite_population=True) < 400
    # By hand: sum_i W_i S_i = 0.2531, so n = (0.2531 / 0.01)^2 = 640.5 -> 641.
    total = sum(SIZES.values())
    spread = sum(SIZES[k] / total * math.sqrt(u * (1 - u)) for k, u in EXPECTED_UA.items())
    assert (spread / 0.01) ** 2 == pytest.approx(640.5, abs=0.05)
    # Halving the target SE quadruples n.
    assert sample_size_overall_accuracy(SIZES, EXPECTED_UA, 0.005) == math.ceil(
        (spread / 0.005) ** 2
    )


@pytest.mark.parametrize("n", [20, 100, 641, 1003])
def test_allocations_sum_exactly_to_n(n):
    for allocation in (
        allocate_proportional(n, SIZES),
        allocate_proportional(n, SIZES, minimum=5),
        allocate_equal(n, SIZES),
        allocate_neyman(n, SIZES, EXPECTED_UA),
        allocate_neyman(n, SIZES, EXPECTED_UA, minimum=5),
    ):
        assert list(allocation) == list(SIZES)
        assert sum(allocation.values()) == n
        assert all(isinstance(v, int) and v >= 0 for v in allocation.values())


def test_proportional_with_a_minimum_takes_from_the_large_strata_in_proportion():
    allocation = allocate_proportional(641, SIZES, minimum=100)
    assert allocation["deforestation"] == allocation["gain"] == 100
    assert allocation == {"deforestation": 100, "gain": 100, "forest": 146, "non_forest": 295}
    # The strata above the minimum stay proportional to their size (up to rounding).
    assert allocation["non_forest"] / allocation["forest"] == pytest.approx(6_450 / 3_200, rel=0.01)
    plain = allocate_proportional(641, SIZES)
    assert plain == {"deforestation": 13, "gain": 10, "forest": 205, "non_forest": 413}
    # A minimum every stratum meets anyway changes nothing.
    assert allocate_proportional(641, SIZES, minimum=10) == plain
    # The minimum can be every unit there is.
    assert set(allocate_proportional(400, SIZES, minimum=100).values()) == {100}


def test_a_minimum_propagates_when_fixing_one_stratum_pushes_another_below():
    sizes = {"a": 1000, "b": 700, "c": 100, "d": 50}
    allocation = allocate_proportional(60, sizes, minimum=10)
    # 60 * 700 / 1850 = 22.7 at first, but after c and d take their 10 units each,
    # b's share (40 * 700 / 1700 = 16.5) still clears the minimum; a gets the rest.
    assert allocation == {"a": 24, "b": 16, "c": 10, "d": 10}


def test_equal_and_neyman():
    assert allocate_equal(10, {"a": 50, "b": 50, "c": 50}) == {"a": 4, "b": 3, "c": 3}
    neyman = allocate_neyman(641, SIZES, EXPECTED_UA)
    spread = {k: math.sqrt(u * (1 - u)) for k, u in EXPECTED_UA.items()}
    weights = np.array([SIZES[k] * spread[k] for k in SIZES])
    ideal = 641 * weights / weights.sum()
    assert np.abs(np.array(list(neyman.values())) - ideal).max() < 1
    perfect = allocate_neyman(20, {"a": 100, "b": 100}, {"a": 1.0, "b": 0.8}, minimum=3)
    assert perfect == {"a": 3, "b": 17}
    nothing_known = allocate_neyman(9, {"a": 100, "b": 100}, {"a": 1.0, "b": 0.0})
    assert nothing_known == {"a": 5, "b": 4}  # no spread anywhere: equal shares


def test_largest_remainder_rounding():
    # Shares 3.4, 3.3, 3.3 -> 3, 3, 3 and the last unit to the largest remainder.
    assert allocate_proportional(10, {"a": 34, "b": 33, "c": 33}) == {"a": 4, "b": 3, "c": 3}
    # Ties go to the stratum named first.
    assert allocate_proportional(5, {"x": 10, "y": 10}) == {"x": 3, "y": 2}


def test_refusals():
    with pytest.raises(AccuracyError, match=r"n = 350 cannot give each of the 4 strata its min"):
        allocate_proportional(350, SIZES, minimum=100)
    with pytest.raises(AccuracyError, match="stratum 'b' would get 50 sample units but has only 3"):
        allocate_equal(100, {"a": 1000, "b": 3})
    with pytest.raises(AccuracyError, match="stratum 'gain' has no expected user's accuracy"):
        allocate_neyman(100, SIZES, {"deforestation": 0.7})
    with pytest.raises(AccuracyError, match=r"expected user's accuracy 1\.2 is not a proportion"):
        sample_size_overall_accuracy({"a": 1}, {"a": 1.2}, 0.01)
    with pytest.raises(AccuracyError, match="target_se must be a positive"):
        sample_size_overall_accuracy(SIZES, EXPECTED_UA, 0)
    with pytest.raises(AccuracyError, match="stratum 'b' has size 0"):
        allocate_proportional(10, {"a": 5, "b": 0})
    with pytest.raises(AccuracyError, match="positive whole number"):
        allocate_proportional(10.5, SIZES)  # type: ignore[arg-type]
