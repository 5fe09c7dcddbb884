"""Standard errors of the estimators, all at once, by stratum.

Every estimate is a total (or a proportion of N) of a per-unit variable y, or
a ratio Y/X whose linearised variance is that of the total of the residual
e = y - R^ x (Stehman 2014's ratio variance uses s^2_y + R^2 s^2_x - 2 R s_xy,
which is s^2_e). So one matrix, a column per estimate, and one pass over the
strata give every standard error; the design decides how the within-stratum
variances s^2_h combine (see ``total_variance``).
"""

from __future__ import annotations

import math

import numpy as np

from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.units import SampleUnits

__all__ = ["standard_errors", "total_variance"]


def standard_errors(
    sample: SampleUnits,
    design: str,
    fpc: bool,
    ratios: tuple[np.ndarray, np.ndarray, np.ndarray],
    margins: tuple[np.ndarray, np.ndarray],
) -> dict[str, np.ndarray]:
    """SEs of every estimate at once: one column of y (totals) or e = y - R^ x (ratios) each."""
    for h, count in zip(sample.strata, sample.counts, strict=True):
        if count < 2:
            raise AccuracyError(
                f"{sample.word} {h!r} has {count} sample unit; a standard error needs at least 2 "
                f"per {sample.word} (the within-{sample.word} variance): add units, merge it "
                "with a similar one, or pass standard_errors=False"
            )
    k = len(sample.classes)
    units = np.arange(len(sample.mapped))
    in_map = np.zeros((len(units), k))
    in_map[units, sample.mapped] = 1.0
    in_ref = np.zeros_like(in_map)
    in_ref[units, sample.reference] = 1.0
    both = in_map * in_ref
    cells = np.zeros((len(units), k * k))
    cells[units, sample.mapped * k + sample.reference] = 1.0
    users, producers, f1 = (np.nan_to_num(v) for v in ratios)
    columns = {
        "overall": both.sum(axis=1, keepdims=True),
        "area": in_ref,
        "users": both - users * in_map,
        "producers": both - producers * in_ref,
        "f1": 2 * both - f1 * (in_map + in_ref),
        "cells": cells,
    }
    width = np.cumsum([0, *(v.shape[1] for v in columns.values())])
    variance = total_variance(np.hstack(list(columns.values())), sample, design, fpc)
    total = sample.sizes.sum()
    row, col = margins
    scale = {  # X^ of each column's estimator, in pixels
        "overall": total,
        "area": total,
        "users": total * row,
        "producers": total * col,
        "f1": total * (row + col),
        "cells": total,
    }
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for (name, x), lo, hi in zip(scale.items(), width[:-1], width[1:], strict=True):
            se = np.sqrt(np.maximum(variance[lo:hi], 0.0)) / x
            out[name] = np.where(np.asarray(x) > 0, se, math.nan)
    return out


def total_variance(values: np.ndarray, sample: SampleUnits, design: str, fpc: bool) -> np.ndarray:
    """V^ of the estimated total of each column (pixels^2), stratified or post-stratified."""
    s, n_h, big_n = sample.stratum, sample.counts.astype(float), sample.sizes
    groups = np.zeros((len(s), len(n_h)))
    groups[np.arange(len(s)), s] = 1.0
    means = groups.T @ values / n_h[:, None]
    spread = groups.T @ (values - means[s]) ** 2 / (n_h - 1)[:, None]  # s^2_h per column
    if design == "stratified":
        factor = big_n**2 / n_h * ((1 - n_h / big_n) if fpc else 1.0)
        return factor @ spread
    n, total = n_h.sum(), big_n.sum()
    share = big_n / total
    first = ((1 - n / total) if fpc else 1.0) / n * (share @ spread)
    return total**2 * (first + ((1 - share) @ spread) / n**2)
