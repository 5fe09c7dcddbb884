"""Design-based accuracy and area estimates from a stratified (or post-stratified) sample.

A map's pixel counts are biased area estimates: every omission and commission
error moves area from one class to another. Good practice (Olofsson et al.
2014, RSE 148) estimates area and accuracy from a probability sample of
reference labels instead, with standard errors that follow from the design.

The estimators here are Stehman's (2014, IJRS 35) general form for stratified
random sampling, in which the strata need not be the map classes (a map class
split by confidence, or strata from an older map). Each sample unit u carries
its stratum h, its map class and its reference class; N_h is the stratum's
size in pixels and n_h its number of sample units. Every quantity is either

- a total Y = sum over pixels of y_u, estimated by Y^ = sum_h N_h ybar_h,
  with V^(Y^) = sum_h N_h^2 (1 - n_h/N_h) s^2_yh / n_h (Stehman's estimator
  of a total and its variance); a proportion is Y^/N. Area of reference
  class k: y_u = 1 if the unit's reference class is k. Overall accuracy:
  y_u = 1 if map = reference.
- or a ratio R = Y/X, estimated by R^ = Y^/X^ (Stehman's ratio estimator),
  with the linearised variance
  V^(R^) = (1/X^^2) sum_h N_h^2 (1 - n_h/N_h) (s^2_yh + R^^2 s^2_xh - 2 R^ s_xyh)/n_h,
  computed as the variance of the residual e_u = y_u - R^ x_u, which is the
  same thing. User's accuracy of k: y = [map k and reference k],
  x = [map k]; producer's: x = [reference k]; F1: y = 2 [map k and reference k],
  x = [map k] + [reference k], so F1 = 2 p_kk / (p_k+ + p_+k).

When the strata are the map classes these reduce exactly to Olofsson et al.
(2014) eq. 4 (p_ij = W_i n_ij / n_i), eq. 5-7 (variances of overall, user's and
producer's accuracy, without the finite population correction) and eq. 9-11
(area proportion, its SE, area). The finite population correction
(1 - n_h/N_h) is on by default, as in Stehman (2014); pass ``fpc=False`` for
Olofsson's formulas (for 30 m pixels of a large region it changes nothing).

Post-stratification (``estimate_post_stratified``) serves a sample that was not
stratified by the map: a simple random or systematic sample (a forest
inventory grid), where the map classes with their known pixel counts N_h become
post-strata and the n_h are random. The point estimators are the same
(weights N_h/n_h); the variance is the standard unconditional approximation
(Cochran 1977, Section 5A.9; Särndal et al. 1992, Section 7.6), applied to y for
totals and to the residual e = y - R^ x for ratios:

    V^(Y^) = N^2 [ (1 - n/N)/n sum_h W_h s^2_h + 1/n^2 sum_h (1 - W_h) s^2_h ],

with W_h = N_h/N, n the total sample size; the second term is the price of
the n_h being random. ``fpc=False`` drops the (1 - n/N).

Where the papers' printed numbers and these differ, the difference is their
rounding (see tests/cluster/accuracy and the reference data's README).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.intervals import INTERVALS, Estimate, proportion_estimate
from cluster.accuracy.units import SampleUnits
from cluster.accuracy.variance import standard_errors as design_standard_errors

__all__ = [
    "DESIGNS",
    "AccuracyAssessment",
    "ClassEstimates",
    "estimate_from_error_matrix",
    "estimate_post_stratified",
    "estimate_stratified",
]

DESIGNS = ("stratified", "post-stratified")
_M2_PER_HA = 10_000.0


@dataclass(frozen=True)
class ClassEstimates:
    """One class's accuracies and area, each with SE and 95% interval.

    ``users`` and ``producers`` are the user's (1 - commission error) and
    producer's (1 - omission error) accuracies; ``area_proportion`` and
    ``area_ha`` are of the class as the reference data see it.
    ``mapped_pixels``/``mapped_area_ha`` are the map's pixel count for
    comparison (known when the strata are the map classes or when given).
    """

    name: Hashable
    users: Estimate
    producers: Estimate
    f1: Estimate
    area_proportion: Estimate
    area_ha: Estimate | None
    mapped_pixels: int | None
    mapped_area_ha: float | None


@dataclass(frozen=True)
class AccuracyAssessment:
    """The estimates of one sample: error matrices, overall accuracy and per-class results.

    ``counts`` is the error matrix in sample units and ``proportions`` in
    estimated area proportions (rows map class, columns reference class, in
    the order of ``classes``); ``proportions_se`` holds each cell's SE.
    """

    design: str
    classes: tuple[Hashable, ...]
    counts: np.ndarray
    proportions: np.ndarray
    proportions_se: np.ndarray | None
    overall: Estimate
    per_class: Mapping[Hashable, ClassEstimates]
    stratum_sizes: Mapping[Hashable, int]
    sample_sizes: Mapping[Hashable, int]
    total_pixels: int
    pixel_area_m2: float | None
    fpc: bool
    interval: str

    def __getitem__(self, name: Hashable) -> ClassEstimates:
        return self.per_class[name]

    @property
    def total_area_ha(self) -> float | None:
        """The region's area: all stratum pixels times the pixel area."""
        if self.pixel_area_m2 is None:
            return None
        return self.total_pixels * self.pixel_area_m2 / _M2_PER_HA


def estimate_stratified(
    strata: Sequence[Hashable],
    map_classes: Sequence[Hashable],
    reference_classes: Sequence[Hashable],
    stratum_sizes: Mapping[Hashable, int],
    *,
    classes: Sequence[Hashable] | None = None,
    pixel_area_m2: float | None = None,
    mapped_pixels: Mapping[Hashable, int] | None = None,
    sample_ids: Sequence[Hashable] | None = None,
    fpc: bool = True,
    interval: str = "wald",
    standard_errors: bool = True,
) -> AccuracyAssessment:
    """Estimates from a stratified random sample (Stehman 2014; Olofsson et al. 2014).

    One entry per sample unit in ``strata``, ``map_classes`` and
    ``reference_classes``; ``stratum_sizes`` maps every stratum to its pixel
    count N_h (n_h is counted from the sample). ``classes`` fixes the class
    order (default: the sorted labels seen); ``pixel_area_m2`` turns area
    proportions into hectares; ``sample_ids`` name units in error messages;
    ``interval`` is "wald" or "wilson" (see ``cluster.accuracy.intervals``).
    Raises ``AccuracyError`` naming the unit, stratum or class that is wrong.
    """
    sample = SampleUnits.build(
        strata, map_classes, reference_classes, stratum_sizes, classes, sample_ids, "stratum"
    )
    return _assess(
        sample, "stratified", pixel_area_m2, mapped_pixels, fpc, interval, standard_errors
    )


def estimate_post_stratified(
    map_classes: Sequence[Hashable],
    reference_classes: Sequence[Hashable],
    class_sizes: Mapping[Hashable, int],
    *,
    post_strata: Sequence[Hashable] | None = None,
    classes: Sequence[Hashable] | None = None,
    pixel_area_m2: float | None = None,
    mapped_pixels: Mapping[Hashable, int] | None = None,
    sample_ids: Sequence[Hashable] | None = None,
    fpc: bool = True,
    interval: str = "wald",
    standard_errors: bool = True,
) -> AccuracyAssessment:
    """Estimates from a simple random or systematic sample, post-stratified by map class.

    ``class_sizes`` maps each post-stratum (by default each map class) to its
    known pixel count; ``post_strata`` gives each unit another post-stratum
    label if not its map class. Variance: the module docstring's formula.
    """
    strata = map_classes if post_strata is None else post_strata
    sample = SampleUnits.build(
        strata, map_classes, reference_classes, class_sizes, classes, sample_ids, "post-stratum"
    )
    return _assess(
        sample, "post-stratified", pixel_area_m2, mapped_pixels, fpc, interval, standard_errors
    )


def estimate_from_error_matrix(
    counts: np.ndarray | Sequence[Sequence[int]],
    mapped_pixels: Mapping[Hashable, int],
    *,
    pixel_area_m2: float | None = None,
    fpc: bool = True,
    interval: str = "wald",
) -> AccuracyAssessment:
    """Olofsson et al. (2014) from a table: sample counts n_ij (rows map = strata, cols reference).

    ``mapped_pixels`` gives the classes in the matrix's order with their
    mapped pixel counts (the stratum sizes N_i).
    """
    table = np.asarray(counts)
    names = tuple(mapped_pixels)
    if table.shape != (len(names), len(names)) or (table < 0).any():
        raise AccuracyError(
            f"error matrix of shape {table.shape} does not fit the {len(names)} classes of "
            "mapped_pixels; give a square matrix of non-negative counts, one row and column "
            "per class, in mapped_pixels' order"
        )
    rows, cols = np.nonzero(table)
    repeats = table[rows, cols].astype(int)
    mapped = [names[i] for i in np.repeat(rows, repeats)]
    reference = [names[j] for j in np.repeat(cols, repeats)]
    return estimate_stratified(
        mapped,
        mapped,
        reference,
        mapped_pixels,
        classes=names,
        pixel_area_m2=pixel_area_m2,
        mapped_pixels=mapped_pixels,
        fpc=fpc,
        interval=interval,
    )


def _assess(
    sample: SampleUnits,
    design: str,
    pixel_area_m2: float | None,
    mapped_pixels: Mapping[Hashable, int] | None,
    fpc: bool,
    interval: str,
    standard_errors: bool,
) -> AccuracyAssessment:
    """Point estimates (weights N_h/n_h; Olofsson et al. 2014 eq. 4), then SEs and intervals."""
    if interval not in INTERVALS:
        raise AccuracyError(f"interval must be one of {INTERVALS}, not {interval!r}")
    if pixel_area_m2 is not None and not pixel_area_m2 > 0:
        raise AccuracyError(f"pixel_area_m2 must be positive, not {pixel_area_m2!r}")
    k = len(sample.classes)
    m, r, s = sample.mapped, sample.reference, sample.stratum
    total = sample.sizes.sum()
    weight = (sample.sizes / sample.counts)[s]  # N_h / n_h: pixels each unit stands for
    cell = m * k + r
    counts = np.bincount(cell, minlength=k * k).reshape(k, k)
    p = np.bincount(cell, weights=weight, minlength=k * k).reshape(k, k) / total
    diag, row, col = np.diag(p), p.sum(axis=1), p.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        users, producers, f1 = diag / row, diag / col, 2 * diag / (row + col)
    overall = float(diag.sum())

    se = None
    if standard_errors:
        se = design_standard_errors(sample, design, fpc, (users, producers, f1), (row, col))
    counts.flags.writeable = p.flags.writeable = False

    def est(name: str, value: float, i: int, units: int) -> Estimate:
        err = None if se is None else float(se[name][i])
        return proportion_estimate(float(value), err, interval=interval, units=units)

    n_units = len(m)
    mapped_counts = np.bincount(m, minlength=k)
    reference_counts = np.bincount(r, minlength=k)
    if mapped_pixels is None and sample.strata_are_map_classes:
        sizes = dict(zip(sample.strata, sample.sizes, strict=True))
        mapped_pixels = {c: int(sizes.get(c, 0)) for c in sample.classes}
    per_class = {}
    for i, name in enumerate(sample.classes):
        area = est("area", col[i], i, n_units)
        pixels = None if mapped_pixels is None else int(mapped_pixels.get(name, 0))
        to_ha = None if pixel_area_m2 is None else pixel_area_m2 / _M2_PER_HA
        per_class[name] = ClassEstimates(
            name=name,
            users=est("users", users[i], i, int(mapped_counts[i])),
            producers=est("producers", producers[i], i, int(reference_counts[i])),
            f1=est("f1", f1[i], i, int(mapped_counts[i] + reference_counts[i] - counts[i, i])),
            area_proportion=area,
            area_ha=None if to_ha is None else area.scaled(total * to_ha),
            mapped_pixels=pixels,
            mapped_area_ha=None if to_ha is None or pixels is None else pixels * to_ha,
        )
    cells_se = None
    if se is not None:
        cells_se = se["cells"].reshape(k, k)
        cells_se.flags.writeable = False
    return AccuracyAssessment(
        design=design,
        classes=sample.classes,
        counts=counts,
        proportions=p,
        proportions_se=cells_se,
        overall=est("overall", overall, 0, n_units),
        per_class=MappingProxyType(per_class),
        stratum_sizes=MappingProxyType(
            {h: int(v) for h, v in zip(sample.strata, sample.sizes, strict=True)}
        ),
        sample_sizes=MappingProxyType(
            {h: int(v) for h, v in zip(sample.strata, sample.counts, strict=True)}
        ),
        total_pixels=int(total),
        pixel_area_m2=pixel_area_m2,
        fpc=fpc,
        interval=interval,
    )
