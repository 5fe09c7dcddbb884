"""Estimates with a standard error and a 95% confidence interval.

Olofsson et al. (2014, Section 5) report every estimate as value +- 1.96 SE.
Proportions (accuracies, area shares) cannot leave [0, 1], but that symmetric
(Wald) interval can, and it collapses to a single point when the sample holds
no error at all (a user's accuracy of 75/75 gets SE 0). So intervals here are
clamped to the parameter's range, and a Wilson score interval is offered as
the alternative that stays inside [0, 1] by construction and does not collapse
at 0 or 1.

For a stratified or post-stratified sample the Wilson interval needs a sample
size; it uses Kish's effective sample size n_eff = p (1 - p) / SE^2, the
simple-random-sample size that would give the design's SE (Korn & Graubard
1998; Dean & Pagano 2015). Where SE is 0 because p is 0 or 1, n_eff falls back
to the number of sample units the estimate rests on (all units for an overall
accuracy or area share, the units mapped as the class for a user's accuracy,
and so on), which is the textbook Wilson interval for that case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["INTERVALS", "Z95", "Estimate", "proportion_estimate"]

Z95 = 1.96  # Olofsson et al. (2014) eq. 5-11 use 1.96 SE for a 95% interval
INTERVALS = ("wald", "wilson")


@dataclass(frozen=True)
class Estimate:
    """A design-based estimate: value, standard error and 95% interval.

    ``se`` (and so ``low``/``high``) is None when standard errors were not asked
    for; ``value`` is NaN where the estimate is undefined (a user's accuracy of
    a class no sample unit was mapped as).
    """

    value: float
    se: float | None
    low: float | None
    high: float | None

    @property
    def half_width(self) -> float | None:
        """1.96 SE: the "+-" of Olofsson et al. (2014) Table 9, before any clamping."""
        return None if self.se is None else Z95 * self.se

    def scaled(self, factor: float) -> Estimate:
        """The same estimate in other units (area proportion -> hectares)."""

        def times(v: float | None) -> float | None:
            return None if v is None else v * factor

        return Estimate(self.value * factor, times(self.se), times(self.low), times(self.high))


def proportion_estimate(
    value: float, se: float | None, *, interval: str = "wald", units: int = 0
) -> Estimate:
    """An estimate of a proportion with its interval clamped to [0, 1].

    ``interval`` is "wald" (value +- 1.96 SE, clamped) or "wilson" (the Wilson
    score interval at Kish's effective sample size; see the module docstring).
    ``units`` is the number of sample units the estimate rests on, used by the
    Wilson interval only when SE is 0.
    """
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, not {interval!r}")
    if se is None:
        return Estimate(value, None, None, None)
    if math.isnan(value):
        return Estimate(value, math.nan, math.nan, math.nan)
    if interval == "wald":
        low, high = value - Z95 * se, value + Z95 * se
    else:
        low, high = _wilson(value, se, units)
    # Both ends into [0, 1]: a value of 1 + 2e-16 must not give low > high.
    return Estimate(value, se, min(1.0, max(0.0, low)), max(0.0, min(1.0, high)))


def _wilson(p: float, se: float, units: int) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) at n_eff = p(1-p)/SE^2, or ``units`` when SE is 0."""
    p = min(1.0, max(0.0, p))
    variance = p * (1.0 - p)
    if se > 0 and variance > 0:
        n = variance / se**2
    elif variance > 0:  # 0 < p < 1 but no spread within any stratum: no sampling error
        return p, p
    else:
        n = float(units)
    if n <= 0:
        return 0.0, 1.0
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return centre - half, centre + half
