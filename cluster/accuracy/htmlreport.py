"""An assessment as one self-contained HTML page: ``report.html`` beside assessment.json.

The page is read where the map is judged, offline as often as not, and kept
with the run for years: so it fetches nothing (a Content-Security-Policy
forbids it to: no script, no font, no image but data: URIs), its charts are
inline SVG (``cluster.accuracy.svg``) and its pictures PNG data URIs. Every
figure comes from the assessment document (what assessment.json holds, so
the page and the JSON never disagree); only what the document cannot carry
is read here: the run's quicklook and published config from its maps folder
(when the run record names one and it can be read) and, from the store in one
pass block by block (``cluster.accuracy.mapsummary``), a coarse picture of
the class map and the confidence histogram. Every text from data is escaped
and every URL passes through ``redact``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

import yaml

from cluster.accuracy.mapsummary import DEFAULT_MAX_PX, MapSummary, class_png, summarize
from cluster.accuracy.storechunks import StoreMap
from cluster.accuracy.svg import AGREE, DISAGREE, AreaBar, Unit, area_chart, histogram, locations
from cluster.accuracy.svg import swatch as _swatch
from cluster.storage import objstore
from cluster.storage.objstore import ObjectStoreError
from cluster.storage.redact import redact

__all__ = ["REPORT_FILE", "html_report"]

REPORT_FILE = "report.html"
_PNG = b"\x89PNG\r\n\x1a\n"
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_SHOWN_PX = 480
_PROPORTIONS = "estimated area proportions"
_INTERVALS = {"wald": "Wald, clamped to [0, 1]", "wilson": "Wilson"}
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0 auto;
max-width:1000px;padding:16px 24px 48px;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:2em;
border-bottom:1px solid #ccc;padding-bottom:.2em}.sub{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:3px 6px}th{background:#f3f3f3;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.diag{background:#e6f2e6}
tr.total td,tr.total th{font-weight:600;background:#fafafa}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;font-size:.92em}
dl.facts dt{color:#555}dl.facts dd{margin:0;overflow-wrap:anywhere}
code{font-size:.95em}.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:4px 18px}
.legend li{display:flex;align-items:center;gap:6px}.note{color:#555;font-size:.9em}
img.quicklook{max-width:100%;height:auto;border:1px solid #ccc;image-rendering:pixelated}
.headline{font-size:1.1em}.scroll{overflow-x:auto}
svg.chart{max-width:100%;height:auto;display:block}
"""


def html_report(
    document: Mapping[str, Any], source: StoreMap, *, max_px: int = DEFAULT_MAX_PX
) -> str:
    """The page for ``document`` (``assessment_document``'s output) of the map ``source``."""
    summary = summarize(source, max_px=max_px)
    facts = document["map"]
    record = facts.get("record") or {}
    classes = sorted(document["classes"], key=lambda c: c["value"])
    coarse = class_png(summary.classes, [c["color"] for c in classes])
    quicklook, note = _quicklook(record, coarse)
    height, width = summary.classes.shape  # a small map's picture shown larger, pixelated
    shown = width * max(1, _SHOWN_PX // max(height, width)) if quicklook is coarse else None
    config = _run_config(record)
    title = f"Accuracy and area of run {facts['run_id']}"
    body = [
        _header(title, document, record),
        _map_section(classes, quicklook, note, shown),
        _section("Run", _facts(document, record, config)),
        _matrices(document),
        _estimates(document),
        _areas(document),
        _locations(document, source, coarse),
        _histogram(summary),
        _design(document),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{_t(title)}</title><style>{_CSS}</style>'
        "</head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _t(value: Any) -> str:
    """Any text from data, secrets out, escaped for HTML text and attributes alike."""
    return escape(redact(str(value)))


def _section(heading: str, *parts: str, id_: str = "") -> str:
    ident = f' id="{id_}"' if id_ else ""
    return f"<section{ident}><h2>{_t(heading)}</h2>" + "".join(parts) + "</section>"


def _header(title: str, document: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    facts, overall = document["map"], document["overall"]["accuracy"]
    sha = str(facts.get("checkpoint_sha256", ""))
    sub = [f"region {record['region']}" if record.get("region") else "no run record"]
    sub += [f"period {record['period']}"] if record.get("period") else []
    sub += [f"checkpoint {sha[:12]}"] if sha else []
    design = document["design"]
    return (
        f'<header><h1>{_t(title)}</h1><p class="sub">{_t(" · ".join(sub))}</p>'
        f'<p class="headline">Overall accuracy <b>{_num(overall["value"])}</b> '
        f"(95% interval {_interval(overall)}) from {_t(document['samples']['units'])} "
        f"labelled sample units; {_t(design['type'])} design, estimator "
        f"<code>{_t(design['estimator'])}</code>.</p></header>"
    )


def _map_section(
    classes: Sequence[Mapping[str, Any]], png: bytes, note: str, width: int | None
) -> str:
    legend = "".join(
        f"<li>{_swatch(c['color'])}<span>{_t(c['value'])} {_t(c['name'])}</span></li>"
        for c in classes
    )
    return _section(
        "Map",
        '<img class="quicklook" id="quicklook" alt="quicklook of the class map" '
        + (f'width="{width}" ' if width else "")
        + f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">',
        f'<p class="note">{_t(note)}</p><ul class="legend" id="legend">{legend}</ul>',
    )


def _quicklook(record: Mapping[str, Any], coarse: bytes) -> tuple[bytes, str]:
    """The run's own quicklook.png where its maps folder can be read, else ``coarse``."""
    maps = record.get("maps")
    drawn = "drawn from the store at a coarse stride (nodata transparent)"
    if not maps:
        return coarse, f"The class map, {drawn}: no run record names the run's maps folder."
    uri = f"{str(maps).rstrip('/')}/quicklook.png"
    try:
        data = objstore.read_bytes(uri)
    except (OSError, ObjectStoreError) as exc:
        return coarse, f"The class map, {drawn}: {uri} cannot be read ({exc})."
    if data is None or not data.startswith(_PNG):
        return coarse, f"The class map, {drawn}: {uri} is not there (not compiled?)."
    return data, f"The run's quicklook, {uri}."


def _run_config(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The config as run (``<maps>/config.yaml``: catalog, period, time recipe), or {}."""
    maps = record.get("maps")
    if not maps:
        return {}
    try:
        data = objstore.read_bytes(f"{str(maps).rstrip('/')}/config.yaml")
        doc = yaml.safe_load(data) if data is not None else None
    except (OSError, ObjectStoreError, yaml.YAMLError):
        return {}  # the facts the record holds are shown all the same
    return doc if isinstance(doc, dict) else {}


def _facts(
    document: Mapping[str, Any], record: Mapping[str, Any], config: Mapping[str, Any]
) -> str:
    facts, samples = document["map"], document["samples"]
    period = config.get("period") if isinstance(config.get("period"), dict) else {}
    finished = record.get("finished") or "(running)"
    rows: list[tuple[str, Any]] = [
        ("run id", facts.get("run_id")),
        ("region", record.get("region")),
        ("period", record.get("period")),
        ("period dates", " .. ".join(str(period[k]) for k in ("start", "end") if period.get(k))),
        ("run state", record.get("state")),
        ("run time", f"{record['started']} .. {finished}" if record.get("started") else None),
        ("checkpoint sha256", facts.get("checkpoint_sha256")),
        ("checkpoint", config.get("checkpoint")),
        ("software version", facts.get("software_version")),
        ("catalog", config.get("catalog")),
        ("collections", ", ".join(map(str, config.get("collections") or [])) or None),
        ("recipe (time)", _recipe(config.get("time")) if config else None),
        ("store", facts.get("store")),
        ("maps", record.get("maps")),
        ("CRS", f"EPSG:{facts['crs']['epsg']}" if facts.get("crs", {}).get("epsg") else None),
        ("map size", " x ".join(f"{v:,}" for v in facts.get("shape", [])[::-1]) + " px"),
        ("resolution", f"{facts.get('resolution')} map units per pixel"),
        ("tiles", f"{facts.get('tiles_done', 0):,} of {facts.get('tiles', 0):,} done"),
        ("samples", samples.get("file")),
        ("reference column", samples.get("reference_column")),
        ("label mapping", (samples.get("labels") or {}).get("file")),
        ("assessed", document.get("created")),
    ]
    items = "".join(f"<dt>{_t(k)}</dt><dd>{_t(v)}</dd>" for k, v in rows if v not in (None, "", []))
    missing = "" if record else '<p class="note">No run record: facts from the store alone.</p>'
    return f'<dl class="facts" id="facts">{items}</dl>{missing}'


def _recipe(time: Any) -> str:
    """The config's time section as one line; empty: the checkpoint's recipe as it is."""
    if not time:
        return "the checkpoint's recipe (the run set none of its own)"
    if not isinstance(time, dict):
        return str(time)
    parts = []
    for key, value in time.items():
        if key == "periods" and isinstance(value, list):
            value = ", ".join(
                f"{p.get('name')} {p.get('start')}..{p.get('end')}" if isinstance(p, dict) else p
                for p in value
            )
        parts.append(f"{key} {value}")
    return "; ".join(parts)


def _matrices(document: Mapping[str, Any]) -> str:
    matrix = document["error_matrix"]
    names = [str(n) for n in matrix["classes"]]
    return _section(
        "Error matrix",
        '<p class="note">Rows: map class; columns: reference class. Counts are sample units; '
        "proportions are the estimated shares of the mapped area (Olofsson et al. 2014, "
        "eq. 4, or Stehman 2014 where strata are not the map classes).</p>",
        _matrix(names, matrix["counts"], "{:,d}", "counts", "sample units"),
        _matrix(names, matrix["proportions"], "{:.4f}", "proportions", _PROPORTIONS),
    )


def _matrix(
    names: list[str], table: Sequence[Sequence[Any]], cell: str, ident: str, caption: str
) -> str:
    head = "".join(f"<th>{_t(n)}</th>" for n in names)
    rows = []
    for i, (name, row) in enumerate(zip(names, table, strict=True)):
        cells = "".join(
            f'<td class="n{" diag" if i == j else ""}">{_fmt(v, cell)}</td>'
            for j, v in enumerate(row)
        )
        total = _fmt(_sum(row), cell)
        rows.append(f'<tr><th>{_t(name)}</th>{cells}<td class="n">{total}</td></tr>')
    columns = [_sum(r[j] for r in table) for j in range(len(names))]
    totals = "".join(f'<td class="n">{_fmt(v, cell)}</td>' for v in columns)
    grand = _fmt(_sum(columns), cell)
    return (
        f'<div class="scroll"><table class="matrix" id="matrix-{ident}">'
        f"<caption>{_t(caption)}</caption>"
        f"<tr><th>map \\ reference</th>{head}<th>total</th></tr>{''.join(rows)}"
        f'<tr class="total"><th>total</th>{totals}<td class="n">{grand}</td></tr></table></div>'
    )


def _estimates(document: Mapping[str, Any]) -> str:
    overall = document["overall"]["accuracy"]
    head = "".join(
        f'<th colspan="3">{h}</th>' for h in ("user's accuracy", "producer's accuracy", "F1")
    )
    sub = "<th>estimate</th><th>SE</th><th>95% interval</th>" * 3
    rows = []
    for c in document["per_class"]:
        cells = "".join(_estimate_cells(c[k]) for k in ("users", "producers", "f1"))
        rows.append(
            f'<tr data-class="{_t(c["class"])}"><th>{_t(c["class"])}</th>{cells}'
            f'<td class="n">{c["sample_agree"]:,} / {c["sample_mapped"]:,}</td></tr>'
        )
    return _section(
        "Accuracy",
        '<table id="overall"><tr><th></th><th>estimate</th><th>SE</th><th>95% interval</th></tr>'
        f'<tr><th>overall accuracy</th><td class="n" id="overall-accuracy">'
        f'{_num(overall["value"])}</td><td class="n">{_num(overall["se"])}</td>'
        f'<td class="n">{_interval(overall)}</td></tr></table>',
        f'<div class="scroll"><table id="estimates"><tr><th rowspan="2">class</th>{head}'
        '<th rowspan="2">units agreeing / mapped as</th></tr>'
        f"<tr>{sub}</tr>{''.join(rows)}</table></div>",
        '<p class="note">n/a: undefined (no unit was mapped as the class, say). Intervals: '
        f"{_t(_INTERVALS.get(document['design']['interval'], document['design']['interval']))}"
        ".</p>",
    )


def _estimate_cells(e: Mapping[str, Any], digits: int = 3, sep: str = "") -> str:
    value, se = _num(e["value"], digits, sep), _num(e["se"], digits, sep)
    interval = _interval(e, digits, sep)
    return f'<td class="n">{value}</td><td class="n">{se}</td><td class="n">{interval}</td>'


def _areas(document: Mapping[str, Any]) -> str:
    per_class, area = document["per_class"], document["area"]
    colors = {c["name"]: c["color"] for c in document["classes"]}
    in_ha = area["pixel_area_m2"] is not None
    key, counted_key = ("area_ha", "mapped_area_ha") if in_ha else ("area_proportion", None)
    unit, digits, sep = ("ha", 1, ",") if in_ha else ("share of the mapped area", 4, "")
    rows, bars = [], []
    for c in per_class:
        est = c[key] or {"value": None, "se": None, "low": None, "high": None}
        counted = c[counted_key] if counted_key else c["mapped_proportion"]
        rows.append(
            f'<tr data-class="{_t(c["class"])}"><th>{_t(c["class"])}</th>'
            f"{_estimate_cells(est, digits, sep)}"
            f'<td class="n">{_num(counted, digits, sep)}</td>'
            f'<td class="n">{c["mapped_pixels"]:,}</td></tr>'
        )
        color = colors.get(c["class"], "#999999")
        bars.append(AreaBar(str(c["class"]), color, est["value"], est["low"], est["high"], counted))
    total = ""
    if in_ha and area.get("total_area_ha") is not None:
        total = f'<p class="note">Mapped area in all: {_num(area["total_area_ha"], 1, ",")} ha.</p>'
    return _section(
        "Area",
        f'<table id="areas"><tr><th>class</th><th>estimated area ({unit})</th><th>SE</th>'
        f"<th>95% interval</th><th>pixel-count area ({unit})</th><th>pixels</th></tr>"
        f"{''.join(rows)}</table>{total}",
        area_chart(bars, unit, f"{{:{sep}.{digits}f}}"),
        '<p class="note">The pixel count is the map\'s own area, biased by its errors; the '
        "estimate corrects it by the reference labels of the sample.</p>",
    )


def _locations(document: Mapping[str, Any], source: StoreMap, coarse: bytes) -> str:
    units = [
        Unit(str(u["id"]), u["x"], u["y"], str(u["map_class"]), str(u["reference"]))
        for u in document["units"]
    ]
    agree = sum(u.map_class == u.reference for u in units)
    legend = (
        f'<ul class="legend"><li>{_swatch(AGREE, "dot")}map class = reference ({agree:,})</li>'
        f"<li>{_swatch(DISAGREE, 'dot')}map class &ne; reference ({len(units) - agree:,})</li></ul>"
    )
    return _section("Sample", locations(units, source.bounds(), coarse), legend, id_="sample")


def _histogram(summary: MapSummary) -> str:
    total = sum(summary.confidence_counts)
    return _section(
        "Confidence",
        histogram(summary.confidence_counts, summary.bin_edges),
        f'<p class="note">The winning class\'s probability over {total:,} mapped pixels in '
        f"{len(summary.confidence_counts)} bins; {summary.confidence_nodata:,} pixels nodata.</p>",
    )


def _design(document: Mapping[str, Any]) -> str:
    design = document["design"]
    rows = "".join(
        f'<tr><th>{_t(s["name"])}</th><td class="n">{s["pixels"]:,}</td>'
        f'<td class="n">{_num(s["weight"], 4)}</td><td class="n">{s["sample"]:,}</td></tr>'
        for s in design["strata"]
    )
    facts = [
        ("design", design["type"]),
        ("estimator", design["estimator"]),
        ("design file", design.get("source")),
        ("drawn on this map", {True: "yes", False: "no"}.get(design.get("drawn_on_this_map"))),
        ("finite population correction", "yes" if design.get("fpc") else "no"),
        ("95% intervals", _INTERVALS.get(design["interval"], design["interval"])),
    ]
    items = "".join(f"<dt>{_t(k)}</dt><dd>{_t(v)}</dd>" for k, v in facts if v is not None)
    return _section(
        "Design",
        f'<dl class="facts">{items}</dl><table id="strata"><tr><th>stratum</th><th>pixels</th>'
        f"<th>weight</th><th>sample units</th></tr>{rows}</table>",
    )


def _num(value: float | None, digits: int = 3, sep: str = "") -> str:
    return "n/a" if value is None else f"{value:{sep}.{digits}f}"


def _interval(e: Mapping[str, Any], digits: int = 3, sep: str = "") -> str:
    if e.get("low") is None or e.get("high") is None:
        return "n/a"
    return f"[{_num(e['low'], digits, sep)}, {_num(e['high'], digits, sep)}]"


def _fmt(value: Any, cell: str) -> str:
    return "n/a" if value is None else cell.format(value)


def _sum(values: Iterable[Any]) -> Any:
    return sum(v for v in values if v is not None)
