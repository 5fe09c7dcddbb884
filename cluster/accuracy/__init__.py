"""Map accuracy and area estimation from a probability sample of reference labels.

A map's pixel counts are biased area estimates. Good practice (Olofsson et al.
2014; Stehman 2014) draws a stratified random sample, labels it from reference
data, and estimates the error matrix, overall, user's and producer's
accuracy and each class's area with standard errors and 95% intervals from
the design. This package is the numerical core of that: ``estimators`` (the
stratified and post-stratified estimators), ``samplesize`` (how many units,
and how to allocate them), ``design`` (drawing the sample from a raster too
big for memory, two passes over its chunks) and ``strata`` (strata from class
x confidence band). Reading and writing sample files is the caller's part.
"""

from cluster.accuracy.design import (
    Chunk,
    Chunks,
    SamplePoint,
    StratifiedSample,
    count_strata,
    draw_ranks,
    draw_stratified_sample,
    locate_ranks,
)
from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.estimators import (
    DESIGNS,
    AccuracyAssessment,
    ClassEstimates,
    estimate_from_error_matrix,
    estimate_post_stratified,
    estimate_stratified,
)
from cluster.accuracy.intervals import INTERVALS, Z95, Estimate
from cluster.accuracy.samplesize import (
    allocate_equal,
    allocate_neyman,
    allocate_proportional,
    sample_size_overall_accuracy,
)
from cluster.accuracy.strata import ClassConfidenceStrata

__all__ = [
    "DESIGNS",
    "INTERVALS",
    "Z95",
    "AccuracyAssessment",
    "AccuracyError",
    "Chunk",
    "Chunks",
    "ClassConfidenceStrata",
    "ClassEstimates",
    "Estimate",
    "SamplePoint",
    "StratifiedSample",
    "allocate_equal",
    "allocate_neyman",
    "allocate_proportional",
    "count_strata",
    "draw_ranks",
    "draw_stratified_sample",
    "estimate_from_error_matrix",
    "estimate_post_stratified",
    "estimate_stratified",
    "locate_ranks",
    "sample_size_overall_accuracy",
]
