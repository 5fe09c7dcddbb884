"""An assessment as assessment.json (complete, stable, for the HTML report) and as text.

assessment.json is the contract with whatever renders the report, so its
keys are fixed (``SCHEMA`` names their version) and every figure is there:
the map's facts, the sample and its design, both error matrices, overall and
per-class estimates as {value, se, low, high}, estimated areas beside
pixel-count areas, and each unit (for a map of the sample's locations). JSON
has no NaN: an undefined estimate (user's accuracy of a class no unit was
mapped as) is null.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from cluster.accuracy.assessing import Assessed
from cluster.accuracy.estimators import AccuracyAssessment
from cluster.accuracy.intervals import Z95, Estimate
from cluster.accuracy.labels import LabelMapping
from cluster.accuracy.storechunks import StoreMap
from cluster.storage.redact import redact

__all__ = ["SCHEMA", "assessment_document", "text_report"]

SCHEMA = "statemap.assessment/1"
_HEADINGS = ("user's accuracy", "producer's accuracy", "F1")
_STRATA_WORDS = {"olofsson2014": "the map classes", "post-stratified": "the map classes"}


def assessment_document(
    assessed: Assessed,
    source: StoreMap,
    *,
    record: Mapping[str, Any] | None = None,
    mapping: LabelMapping | None = None,
    reference_column: str = "reference",
) -> dict[str, Any]:
    """Every figure of the assessment, JSON-ready (``json.dumps(..., allow_nan=False)``)."""
    result, units = assessed.result, assessed.units
    lon, lat = source.lonlat(units.x, units.y)
    mapped_total = sum(assessed.mapped_pixels.values())
    to_ha = None if result.pixel_area_m2 is None else result.pixel_area_m2 / 10_000
    facts = source.facts()
    return _clean(
        {
            "schema": SCHEMA,
            "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "map": {**facts, "record": None if record is None else dict(record)},
            "samples": {
                "file": assessed.samples,
                "units": len(units.ids),
                "reference_column": reference_column,
                "labels": None
                if mapping is None
                else {"file": mapping.source, "codes": dict(mapping.codes)},
            },
            "design": {
                "type": result.design,
                "estimator": assessed.estimator,
                "source": assessed.design_source,
                "drawn_on_this_map": assessed.same_map,
                "fpc": result.fpc,
                "interval": result.interval,
                "z": Z95,
                "strata": [
                    {
                        "name": h,
                        "pixels": result.stratum_sizes[h],
                        "sample": result.sample_sizes[h],
                        "weight": result.stratum_sizes[h] / result.total_pixels,
                    }
                    for h in result.stratum_sizes
                ],
                "sample_design": None if assessed.design is None else assessed.design.to_json(),
            },
            "classes": facts["classes"],
            "error_matrix": {
                "rows": "map class",
                "columns": "reference class",
                "classes": list(result.classes),
                "counts": result.counts.tolist(),
                "proportions": result.proportions.tolist(),
                "proportions_se": None
                if result.proportions_se is None
                else result.proportions_se.tolist(),
            },
            "overall": {"accuracy": _estimate(result.overall)},
            "per_class": [
                _per_class(result, i, name, assessed.mapped_pixels, mapped_total)
                for i, name in enumerate(result.classes)
            ],
            "area": {
                "pixel_area_m2": result.pixel_area_m2,
                "total_pixels": result.total_pixels,
                "total_area_ha": result.total_area_ha,
                "mapped_pixels": mapped_total,
                "mapped_area_ha": None if to_ha is None else mapped_total * to_ha,
            },
            "units": [
                {
                    "id": i,
                    "x": x,
                    "y": y,
                    "lon": a,
                    "lat": b,
                    "stratum": s,
                    "map_class": m,
                    "reference": r,
                }
                for i, x, y, a, b, s, m, r in zip(
                    units.ids,
                    units.x.tolist(),
                    units.y.tolist(),
                    lon.tolist(),
                    lat.tolist(),
                    units.strata,
                    units.map_classes,
                    units.reference,
                    strict=True,
                )
            ],
        }
    )


def _per_class(
    result: AccuracyAssessment, i: int, name: str, mapped: Mapping[str, int], total: int
) -> dict[str, Any]:
    c = result.per_class[name]
    return {
        "class": name,
        "users": _estimate(c.users),
        "producers": _estimate(c.producers),
        "f1": _estimate(c.f1),
        "area_proportion": _estimate(c.area_proportion),
        "area_ha": None if c.area_ha is None else _estimate(c.area_ha),
        "mapped_pixels": int(mapped.get(name, 0)),
        "mapped_proportion": mapped.get(name, 0) / total if total else None,
        "mapped_area_ha": None
        if result.pixel_area_m2 is None
        else mapped.get(name, 0) * result.pixel_area_m2 / 10_000,
        "sample_mapped": int(result.counts[i].sum()),
        "sample_reference": int(result.counts[:, i].sum()),
        "sample_agree": int(result.counts[i, i]),
    }


def _estimate(e: Estimate) -> dict[str, float | None]:
    return {"value": e.value, "se": e.se, "low": e.low, "high": e.high}


def _clean(value: Any) -> Any:
    """NaN and infinities to None, numpy scalars to Python, URLs' secrets redacted."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return redact(value)
    return value


def text_report(assessed: Assessed, source: StoreMap) -> str:
    """What ``statemap assess`` prints: both error matrices, the estimates, the areas."""
    r = assessed.result
    names = [str(c) for c in r.classes]
    how = _STRATA_WORDS.get(assessed.estimator, "strata other than the map classes")
    lines = [
        f"assessment of run {source.store.attrs.run_id} ({redact(source.uri)}): "
        f"{int(r.counts.sum())} units, {r.design} by {how}, estimator {assessed.estimator}, "
        f"{r.interval} 95% intervals" + ("" if r.fpc else ", no finite population correction"),
        "",
        "error matrix, sample units (rows: map class, columns: reference class)",
        *_matrix(names, r.counts, "{:d}"),
        "",
        "error matrix, estimated area proportions",
        *_matrix(names, r.proportions, "{:.4f}"),
        "",
        f"overall accuracy  {_fmt(r.overall)}",
        "",
        f"{'class':<16}" + "".join(f" {h:>30}" for h in _HEADINGS),
    ]
    for name in names:
        c = r.per_class[name]
        lines.append(f"{name:<16} {_fmt(c.users):>30} {_fmt(c.producers):>30} {_fmt(c.f1):>30}")
    lines += ["", f"{'class':<16} {'area (ha), 95% interval':>40} {'pixel-count area (ha)':>22}"]
    for name in names:
        c = r.per_class[name]
        if c.area_ha is not None:
            area, mapped = _fmt(c.area_ha, ","), _number(c.mapped_area_ha, ",")
        else:  # no pixel area (a CRS in degrees): area proportions instead
            area, mapped = _fmt(c.area_proportion), _number(_share(assessed, name), "")
        lines.append(f"{name:<16} {area:>40} {mapped:>22}")
    if r.total_area_ha is not None:
        lines.append(f"{'total':<16} {_number(r.total_area_ha, ','):>40}")
    return "\n".join(lines)


def _matrix(names: list[str], table: np.ndarray, cell: str) -> list[str]:
    width = max(9, *(len(n) for n in names))
    head = f"{'':<16}" + "".join(f"{n[:width]:>{width + 1}}" for n in names)
    rows = [head + f"{'total':>{width + 1}}"]
    for name, row in zip(names, table, strict=True):
        values = [cell.format(v.item()) for v in row] + [cell.format(row.sum().item())]
        rows.append(f"{name[:16]:<16}" + "".join(f"{v:>{width + 1}}" for v in values))
    totals = [cell.format(v.item()) for v in table.sum(axis=0)] + [cell.format(table.sum().item())]
    rows.append(f"{'total':<16}" + "".join(f"{v:>{width + 1}}" for v in totals))
    return rows


def _fmt(e: Estimate, sep: str = "") -> str:
    """0.912 SE 0.012 [0.889, 0.935]; areas with thousands separators."""
    if math.isnan(e.value):
        return "n/a"
    if e.se is None or e.low is None or e.high is None:
        return _number(e.value, sep)
    return (
        f"{_number(e.value, sep)} SE {_number(e.se, sep)} "
        f"[{_number(e.low, sep)}, {_number(e.high, sep)}]"
    )


def _number(value: float | None, sep: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if sep else f"{value:.3f}"


def _share(assessed: Assessed, name: str) -> float | None:
    total = sum(assessed.mapped_pixels.values())
    return assessed.mapped_pixels.get(name, 0) / total if total else None
