"""Estimates from a labelled sample of a run's map: the checks, then the right estimator.

Which estimator follows from how the sample was drawn:

- stratified by the map's classes, on this map: Olofsson et al. (2014);
- stratified otherwise (class x confidence band, or drawn on another map):
  Stehman (2014); both are ``estimate_stratified``, which reduces to
  Olofsson's formulas exactly when every unit's stratum is its map class;
- a systematic or simple random sample (an inventory grid): post-stratified
  by the map classes, with class pixel counts counted from the store.

The stratum of a point comes from the design (design.json, by the point's
id), or else from the file's ``stratum`` and ``stratum_pixels`` columns; the
map class always from the store at the point, read chunk by chunk. Every
refusal names the file and the point and says what would fix it: a point
without a label, a label that is no class, a point off the map or on nodata,
a point the design did not draw or that has moved out of its stratum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cluster.accuracy.designfile import DESIGN_FILE, SampleDesign
from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.estimators import (
    AccuracyAssessment,
    estimate_post_stratified,
    estimate_stratified,
)
from cluster.accuracy.labels import LabelMapping, resolve_labels
from cluster.accuracy.samplefile import LoadedSamples
from cluster.accuracy.storechunks import StoreMap, StrataScheme
from cluster.predict.store import NODATA

__all__ = ["ESTIMATORS", "AssessSpec", "Assessed", "assess_samples"]

ESTIMATORS = ("olofsson2014", "stehman2014", "post-stratified")
_SHOWN = 8


@dataclass(frozen=True)
class AssessSpec:
    """How to read and estimate: the label column, post-stratification, fpc, interval."""

    reference_column: str = "reference"
    post_stratified: bool = False
    fpc: bool = True
    interval: str = "wald"


@dataclass(frozen=True)
class Units:
    """The sample units as estimated: id, map-CRS position, stratum, map and reference class."""

    ids: tuple[int, ...]
    x: np.ndarray
    y: np.ndarray
    strata: tuple[str, ...]
    map_classes: tuple[str, ...]
    reference: tuple[str, ...]


@dataclass(frozen=True)
class Assessed:
    """An assessment and where its inputs came from (for the printout and assessment.json)."""

    result: AccuracyAssessment
    estimator: str
    design: SampleDesign | None
    design_source: str  # a design.json's URI, "columns" or "none" (post-stratified)
    same_map: bool | None  # design drawn on this map? None: not known
    mapped_pixels: dict[str, int]
    units: Units
    samples: str


def assess_samples(
    source: StoreMap,
    samples: LoadedSamples,
    *,
    design: SampleDesign | None,
    design_uri: str | None = None,
    mapping: LabelMapping | None = None,
    spec: AssessSpec = AssessSpec(),
) -> Assessed:
    """Check the sample against the map and its design, then estimate."""
    names = source.class_names
    where = [samples.where(i) for i in range(len(samples))]
    raw = samples.texts(spec.reference_column)
    if raw is None:
        raise AccuracyError(
            f"{samples.source} has no column {spec.reference_column!r} (it has "
            f"{', '.join(samples.fields) or 'none'}); label the points in that column, or name "
            "the column that holds the labels"
        )
    reference = resolve_labels(raw, where, names, mapping, samples.source)
    rows, cols, x, y = _pixels(source, samples, where)
    codes = source.values_at("class", rows, cols)
    _refuse(
        codes == NODATA,
        where,
        f"{samples.source}: {{count}} point(s) lie where the map has no class (nodata: outside "
        "the region or an unmapped tile) ({shown}); remove them, or assess against a map that "
        "covers them",
    )
    mapped = [names[c] for c in codes.tolist()]
    kwargs = {"classes": names, "pixel_area_m2": source.pixel_area_m2, "fpc": spec.fpc,
              "interval": spec.interval, "sample_ids": list(samples.ids)}  # fmt: skip
    if spec.post_stratified:
        sizes = source.count_classes()
        result = estimate_post_stratified(mapped, reference, sizes, mapped_pixels=sizes, **kwargs)
        units = Units(samples.ids, x, y, tuple(mapped), tuple(mapped), tuple(reference))
        return Assessed(result, "post-stratified", None, "none", None, sizes, units, samples.source)

    strata, sizes, same = _strata(source, samples, design, design_uri, rows, cols, where)
    if design is not None and same and not design.confidence_bands:
        mapped_pixels = {c: design.stratum_sizes.get(c, 0) for c in names}
    else:
        mapped_pixels = source.count_classes()
    result = estimate_stratified(
        strata, mapped, reference, sizes, mapped_pixels=mapped_pixels, **kwargs
    )
    by_class = set(sizes) <= set(names) and all(s == m for s, m in zip(strata, mapped, strict=True))
    units = Units(samples.ids, x, y, tuple(strata), tuple(mapped), tuple(reference))
    source_name = "columns" if design is None else (design_uri or DESIGN_FILE)
    estimator = "olofsson2014" if by_class else "stehman2014"
    return Assessed(result, estimator, design, source_name, same, mapped_pixels, units,
                    samples.source)  # fmt: skip


def _pixels(
    source: StoreMap, samples: LoadedSamples, where: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows and cols of the points' pixels and their map-CRS coordinates; off the map refused."""
    if samples.crs is None:
        x, y = samples.xs.astype(float), samples.ys.astype(float)
    else:
        x, y = source.from_crs(samples.xs, samples.ys, samples.crs)
    rows, cols = source.pixels_of(x, y)
    off = ~(source.on_map(rows, cols) & np.isfinite(x) & np.isfinite(y))
    left, bottom, right, top = source.bounds()
    _refuse(
        off,
        where,
        f"{samples.source}: {{count}} point(s) lie off the map ({{shown}}), which spans x "
        f"{left:.1f}..{right:.1f}, y {bottom:.1f}..{top:.1f} in its CRS; remove them, or check "
        "that x/y are in the map's CRS (or give lon/lat, or a GeoPackage with its CRS)",
    )
    return rows, cols, x, y


def _strata(
    source: StoreMap,
    samples: LoadedSamples,
    design: SampleDesign | None,
    design_uri: str | None,
    rows: np.ndarray,
    cols: np.ndarray,
    where: Sequence[str],
) -> tuple[list[str], dict[str, int], bool | None]:
    """Each unit's stratum, the strata's N_h, and whether the design was drawn on this map."""
    if design is not None:
        return _strata_from_design(source, samples, design, design_uri, rows, cols)
    strata, pixels = samples.texts("stratum"), samples.texts("stratum_pixels")
    if strata is None or pixels is None:
        raise AccuracyError(
            f"{samples.source} carries no design information: no {DESIGN_FILE} beside it and no "
            "stratum / stratum_pixels columns, so no unit's inclusion probability is known; "
            f"give the {DESIGN_FILE} that sample-design wrote (--design), keep those columns, "
            "or assess a systematic or simple random sample post-stratified (--post-stratified)"
        )
    _refuse(
        np.array([s is None for s in strata]),
        where,
        f"{samples.source}: {{count}} point(s) have no stratum ({{shown}}); restore the column",
    )
    sizes: dict[str, int] = {}
    for unit, stratum, text in zip(where, strata, pixels, strict=True):
        try:
            size = int(text) if text is not None else -1
        except ValueError:
            size = -1
        if size < 0 or sizes.get(stratum, size) != size:
            raise AccuracyError(
                f"{samples.source}, {unit}: stratum_pixels {text!r} is not the stratum "
                f"{stratum!r}'s pixel count (N_h), or differs from another point's; restore "
                "the column as sample-design wrote it"
            )
        sizes[stratum] = size
    drawn = samples.texts("stratum_sample")
    if drawn is not None:
        for stratum in sizes:
            n_h = {d for s, d in zip(strata, drawn, strict=True) if s == stratum}
            count = strata.count(stratum)
            if n_h != {str(count)}:
                raise AccuracyError(
                    f"{samples.source}: stratum {stratum!r} has {count} points but its "
                    f"stratum_sample says {sorted(map(str, n_h))}; every point drawn must be "
                    "in the file, labelled (restore the missing ones)"
                )
    return [str(s) for s in strata], sizes, None


def _strata_from_design(
    source: StoreMap,
    samples: LoadedSamples,
    design: SampleDesign,
    design_uri: str | None,
    rows: np.ndarray,
    cols: np.ndarray,
) -> tuple[list[str], dict[str, int], bool]:
    name = design_uri or DESIGN_FILE
    if not samples.has_ids:
        raise AccuracyError(
            f"{samples.source} has no id column, so its points cannot be matched to the "
            f"design in {name}; restore the id column sample-design wrote"
        )
    strata = design.strata_of(samples.ids, samples.source)
    missing = sorted({i for s in design.strata for i in s.ids} - set(samples.ids))
    if missing:
        shown = ", ".join(map(str, missing[:_SHOWN])) + (", ..." if len(missing) > _SHOWN else "")
        raise AccuracyError(
            f"{samples.source}: {len(missing)} of the {design.n} points the design in {name} "
            f"drew are missing (ids {shown}); every drawn point must be labelled: restore them"
        )
    given = samples.texts("stratum")
    if given is not None:
        for i, (stratum, text) in enumerate(zip(strata, given, strict=True)):
            if text is not None and text != stratum:
                raise AccuracyError(
                    f"{samples.source}, {samples.where(i)}: stratum {text!r} in the file but "
                    f"{stratum!r} in {name}; the id or the stratum was edited: restore them"
                )
    same = source.same_map(design.run_id, design.shape, design.transform)
    if same:
        scheme = StrataScheme(source.class_names, design.confidence_bands)
        found = [scheme.names.get(c) for c in scheme.at(source, rows, cols).tolist()]
        for i, (stratum, there) in enumerate(zip(strata, found, strict=True)):
            if there != stratum:
                raise AccuracyError(
                    f"{samples.source}, {samples.where(i)}: the design in {name} drew it in "
                    f"stratum {stratum!r}, but at its position the map is in {there!r}; the "
                    "point was moved or its id changed: restore x/y (or the geometry) and id"
                )
    return strata, design.stratum_sizes, same


def _refuse(bad: np.ndarray, where: Sequence[str], message: str) -> None:
    """Raise ``message`` (with {count} and {shown}) when any unit is ``bad``."""
    if not bad.any():
        return
    names = [where[i] for i in np.flatnonzero(bad)]
    shown = ", ".join(names[:_SHOWN]) + (", ..." if len(names) > _SHOWN else "")
    raise AccuracyError(message.replace("{count}", str(len(names))).replace("{shown}", shown))
