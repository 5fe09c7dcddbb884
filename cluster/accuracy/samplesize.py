"""How many sample units, and how to spread them over the strata.

Olofsson et al. (2014) size a stratified random sample by the standard error
wanted for overall accuracy (their eq. 13, from Cochran 1977, Chapter 5) and
then allocate it. Proportional allocation serves overall accuracy and the
large classes; it leaves rare classes (deforestation: 2% of the map)
with too few units for their user's accuracy, so Olofsson et al. recommend
moving units towards them: here, a minimum per stratum. Equal allocation
serves the user's accuracies of all classes alike; Neyman allocation
(Cochran 1977, Section 5.5: n_h proportional to N_h S_h) minimises the SE of
overall accuracy, with S_h = sqrt(U_h (1 - U_h)) from the expected user's
accuracy U_h of the stratum's map class.

Every allocation sums exactly to n: the real-valued shares are rounded down
and the units left over go to the strata with the largest remainders (ties to
the stratum named first), so no rounding can lose or add a unit.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np

from cluster.accuracy.errors import AccuracyError

__all__ = [
    "allocate_equal",
    "allocate_neyman",
    "allocate_proportional",
    "sample_size_overall_accuracy",
]

_EPS = 1e-9  # shares are real numbers; 49.9999999999 units is 50


def sample_size_overall_accuracy(
    stratum_sizes: Mapping[Hashable, float],
    expected_users: Mapping[Hashable, float],
    target_se: float,
    *,
    finite_population: bool = False,
) -> int:
    """Olofsson et al. (2014) eq. 13: n = (sum_i W_i S_i / S(O))^2, S_i = sqrt(U_i (1 - U_i)).

    ``stratum_sizes`` are pixel counts (or any sizes; only the weights
    W_i = N_i / N matter), ``expected_users`` the user's accuracy expected for
    each stratum's map class, ``target_se`` the standard error S(O) wanted for
    overall accuracy. ``finite_population=True`` uses eq. 13's exact form,
    n = (sum W_i S_i)^2 / (S(O)^2 + (1/N) sum W_i S_i^2), which matters only when
    the population (N pixels) is small. Rounded up: fewer units miss the target.
    """
    if not target_se > 0:
        raise AccuracyError(f"target_se must be a positive standard error, not {target_se!r}")
    weights, spread = _weights_and_spread(stratum_sizes, expected_users)
    numerator = float(weights @ spread) ** 2
    denominator = target_se**2
    if finite_population:
        denominator += float(weights @ spread**2) / float(sum(stratum_sizes.values()))
    return math.ceil(numerator / denominator - _EPS)


def allocate_proportional(
    n: int, stratum_sizes: Mapping[Hashable, int], *, minimum: int = 0
) -> dict[Hashable, int]:
    """n_h proportional to N_h, with at least ``minimum`` units per stratum.

    Strata whose proportional share falls below ``minimum`` get exactly
    ``minimum``; the rest of n is shared among the other strata in proportion
    to their sizes, again, until no share is below the minimum (so the large
    strata give up units in proportion to their size, and every stratum that
    is not at the minimum stays proportional to its size).
    """
    return _allocate(n, stratum_sizes, _sizes_array(stratum_sizes), minimum)


def allocate_equal(
    n: int, stratum_sizes: Mapping[Hashable, int], *, minimum: int = 0
) -> dict[Hashable, int]:
    """n / H units per stratum (the remainder to the strata named first)."""
    return _allocate(n, stratum_sizes, np.ones(len(stratum_sizes)), minimum)


def allocate_neyman(
    n: int,
    stratum_sizes: Mapping[Hashable, int],
    expected_users: Mapping[Hashable, float],
    *,
    minimum: int = 0,
) -> dict[Hashable, int]:
    """n_h proportional to N_h sqrt(U_h (1 - U_h)) (Neyman), with a minimum as in proportional.

    A stratum expected to be perfectly mapped (U_h = 1) would get no units,
    and nothing would check that expectation; give it a ``minimum``.
    """
    _, spread = _weights_and_spread(stratum_sizes, expected_users)
    return _allocate(n, stratum_sizes, _sizes_array(stratum_sizes) * spread, minimum)


def _allocate(
    n: int, stratum_sizes: Mapping[Hashable, int], weights: np.ndarray, minimum: int
) -> dict[Hashable, int]:
    names = list(stratum_sizes)
    if not names:
        raise AccuracyError("no strata to allocate to; give stratum_sizes with their pixel counts")
    if not (isinstance(n, int | np.integer) and n > 0):
        raise AccuracyError(f"sample size n must be a positive whole number, not {n!r}")
    if not (isinstance(minimum, int | np.integer) and minimum >= 0):
        raise AccuracyError(f"minimum must be a whole number >= 0, not {minimum!r}")
    if n < minimum * len(names):
        raise AccuracyError(
            f"n = {n} cannot give each of the {len(names)} strata its minimum of {minimum} "
            f"units ({minimum * len(names)} in all); raise n or lower the minimum"
        )
    at_minimum = np.zeros(len(names), dtype=bool)
    while True:
        budget = n - minimum * int(at_minimum.sum())
        free = ~at_minimum
        total = weights[free].sum()
        share = np.zeros(len(names))
        # All free weights 0 (Neyman with U = 1 everywhere): share the budget equally.
        share[free] = budget * weights[free] / total if total > 0 else budget / free.sum()
        low = free & (share < minimum - _EPS)
        if not low.any():
            break
        at_minimum |= low
    counts = np.where(at_minimum, minimum, np.floor(share + _EPS)).astype(int)
    left = n - int(counts.sum())
    remainder = np.where(at_minimum, -1.0, share - counts)
    counts[np.argsort(-remainder, kind="stable")[:left]] += 1
    allocation = {h: int(c) for h, c in zip(names, counts, strict=True)}
    for h, count in allocation.items():
        if count > stratum_sizes[h]:
            raise AccuracyError(
                f"stratum {h!r} would get {count} sample units but has only "
                f"{stratum_sizes[h]} pixels; lower n or the minimum, or merge the stratum "
                "with a similar one"
            )
    return allocation


def _sizes_array(stratum_sizes: Mapping[Hashable, float]) -> np.ndarray:
    sizes = np.array([float(v) for v in stratum_sizes.values()])
    bad = [h for h, v in zip(stratum_sizes, sizes, strict=True) if not v > 0]
    if bad:
        raise AccuracyError(
            f"stratum {bad[0]!r} has size {stratum_sizes[bad[0]]!r}; give every stratum a "
            "positive pixel count (leave empty strata out)"
        )
    return sizes


def _weights_and_spread(
    stratum_sizes: Mapping[Hashable, float], expected_users: Mapping[Hashable, float]
) -> tuple[np.ndarray, np.ndarray]:
    """W_h = N_h / N and S_h = sqrt(U_h (1 - U_h)), in stratum_sizes' order."""
    sizes = _sizes_array(stratum_sizes)
    missing = [h for h in stratum_sizes if h not in expected_users]
    if missing:
        raise AccuracyError(
            f"stratum {missing[0]!r} has no expected user's accuracy; give one for every "
            "stratum (a guess such as 0.7 for a hard class, 0.9 for an easy one)"
        )
    users = np.array([float(expected_users[h]) for h in stratum_sizes])
    bad = [h for h, u in zip(stratum_sizes, users, strict=True) if not 0.0 <= u <= 1.0]
    if bad:
        raise AccuracyError(
            f"stratum {bad[0]!r}: expected user's accuracy {expected_users[bad[0]]!r} is not "
            "a proportion; give a value between 0 and 1"
        )
    return sizes / sizes.sum(), np.sqrt(users * (1.0 - users))
