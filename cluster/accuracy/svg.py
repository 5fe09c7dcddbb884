"""The report's charts as inline SVG text, drawn here rather than by a plotting library.

The HTML report must open with no network and look the same everywhere, so
its charts are plain SVG elements written into the page: no script, no web
font (the page's own font), nothing fetched. Each chart is a function of its
numbers alone, and every text that comes from data (class names, unit ids)
is escaped. Elements carry classes (``errorbar``, ``bar``, ``unit``) so that
a test, or a reader's stylesheet, can find them.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["AreaBar", "Unit", "area_chart", "histogram", "locations", "swatch"]

AGREE, DISAGREE = "#1a9641", "#d7191c"
_WIDTH = 680
_FONT = 'font-family="inherit" font-size="12"'


@dataclass(frozen=True)
class AreaBar:
    """One class of the area chart: estimated area and interval beside the pixel count."""

    name: str
    color: str
    value: float | None
    low: float | None
    high: float | None
    counted: float | None


@dataclass(frozen=True)
class Unit:
    """One sample unit on the location map (map CRS coordinates)."""

    id: str
    x: float
    y: float
    map_class: str
    reference: str


def area_chart(bars: Sequence[AreaBar], unit: str, fmt: str) -> str:
    """Per class: the pixel-count area as a bar, the estimate as a dot with its 95% interval.

    ``fmt`` formats a value for the tooltips ('{:,.1f}' for ha, say)."""
    left, right, top, row = 140, 24, 34, 30
    height = top + row * len(bars) + 40
    values = [v for b in bars for v in (b.value, b.high, b.counted) if v is not None]
    hi, ticks, tick_fmt = _axis(max(values, default=1.0))
    span = _WIDTH - left - right

    def x(v: float) -> float:
        return left + span * max(0.0, v) / hi

    label = f"estimated and pixel-count area per class ({unit})"
    out = [_open(_WIDTH, height, "area-chart", label)]
    out += _legend_area(left)
    out += _x_axis(ticks, tick_fmt, x, top, top + row * len(bars), unit)
    for i, b in enumerate(bars):
        y = top + row * i + row / 2
        name = escape(b.name)
        out.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>'
            f"{escape(_clip(b.name, 20))}<title>{name}</title></text>"
        )
        if b.counted is not None:
            out.append(
                f'<rect class="counted" x="{left}" y="{y - 9:.1f}"'
                f' width="{x(b.counted) - left:.1f}"'
                f' height="18" fill="{escape(b.color)}" fill-opacity="0.45" stroke="#555"'
                f' stroke-width="0.5"><title>{name}: pixel-count area '
                f"{escape(fmt.format(b.counted))} {escape(unit)}</title></rect>"
            )
        if b.value is None:
            continue
        tip = f"{name}: estimated area {escape(fmt.format(b.value))}"
        if b.low is not None and b.high is not None:
            x0, x1 = x(b.low), x(b.high)
            tip += f", 95% interval {escape(fmt.format(b.low))} to {escape(fmt.format(b.high))}"
            out.append(
                f'<g class="errorbar" data-class="{name}" stroke="#000" stroke-width="1.5">'
                f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}"/>'
                f'<line x1="{x0:.1f}" y1="{y - 6:.1f}" x2="{x0:.1f}" y2="{y + 6:.1f}"/>'
                f'<line x1="{x1:.1f}" y1="{y - 6:.1f}" x2="{x1:.1f}" y2="{y + 6:.1f}"/>'
                f"<title>{tip}</title></g>"
            )
        out.append(
            f'<circle class="estimate" cx="{x(b.value):.1f}" cy="{y:.1f}" r="4" fill="#000">'
            f"<title>{tip}</title></circle>"
        )
    return "".join(out) + "</svg>"


def _legend_area(left: int) -> list[str]:
    return [
        f'<rect x="{left}" y="8" width="18" height="12" fill="#999" fill-opacity="0.45"'
        ' stroke="#555" stroke-width="0.5"/>',
        f'<text x="{left + 24}" y="18" {_FONT}>pixel-count area (the map\'s own)</text>',
        f'<line x1="{left + 250}" y1="14" x2="{left + 280}" y2="14" stroke="#000"'
        ' stroke-width="1.5"/>',
        f'<circle cx="{left + 265}" cy="14" r="4" fill="#000"/>',
        f'<text x="{left + 288}" y="18" {_FONT}>estimated area, 95% interval</text>',
    ]


def histogram(counts: Sequence[int], edges: Sequence[float]) -> str:
    """Bars of the share of mapped pixels per confidence bin (probability 0..1)."""
    left, right, top, bottom, height = 56, 24, 12, 44, 260
    total = sum(counts)
    shares = [100 * c / total if total else 0.0 for c in counts]
    hi, ticks, tick_fmt = _axis(max(shares, default=1.0) or 1.0)
    span_x, span_y = _WIDTH - left - right, height - top - bottom
    base = top + span_y
    out = [_open(_WIDTH, height, "histogram", "confidence histogram, share of mapped pixels")]
    for t in ticks:
        y = base - span_y * t / hi
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{_WIDTH - right}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {_FONT}>'
            f"{tick_fmt.format(t)}%</text>"
        )
    width = span_x / max(1, len(counts))
    for i, (count, share) in enumerate(zip(counts, shares, strict=True)):
        h = span_y * share / hi
        out.append(
            f'<rect class="bar" x="{left + i * width + 1:.1f}" y="{base - h:.1f}"'
            f' width="{width - 2:.1f}" height="{h:.1f}" fill="#4575b4"><title>'
            f"{edges[i]:.2f} to {edges[i + 1]:.2f}: {count:,} px ({share:.1f}%)</title></rect>"
        )
    for i in range(0, len(edges), 2):
        x = left + i * width
        out.append(
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle" {_FONT}>{edges[i]:.1f}</text>'
        )
    out.append(
        f'<line x1="{left}" y1="{base}" x2="{_WIDTH - right}" y2="{base}" stroke="#000"/>'
        f'<text x="{left + span_x / 2:.1f}" y="{height - 6}" text-anchor="middle" {_FONT}>'
        "confidence (winning-class probability)</text>"
    )
    return "".join(out) + "</svg>"


def locations(
    units: Sequence[Unit],
    bounds: tuple[float, float, float, float],
    background_png: bytes | None = None,
    max_px: int = _WIDTH,
) -> str:
    """The units over the map's extent (left, bottom, right, top), coloured by agreement
    of map class and reference; the coarse class map beneath, where given."""
    x_min, y_min, x_max, y_max = bounds
    scale = max_px / max(x_max - x_min, y_max - y_min)
    width, height = (x_max - x_min) * scale, (y_max - y_min) * scale
    out = [_open(width, height, "locations", "the sample's locations over the map")]
    if background_png is not None:
        data = base64.b64encode(background_png).decode("ascii")
        out.append(
            f'<image x="0" y="0" width="{width:.1f}" height="{height:.1f}"'
            f' preserveAspectRatio="none" opacity="0.55" style="image-rendering:pixelated"'
            f' href="data:image/png;base64,{data}"/>'
        )
    out.append(
        f'<rect x="0" y="0" width="{width:.1f}" height="{height:.1f}" fill="none" stroke="#555"/>'
    )
    for u in units:
        agree = u.map_class == u.reference
        out.append(
            f'<circle class="unit {"agree" if agree else "disagree"}"'
            f' cx="{(u.x - x_min) * scale:.1f}" cy="{(y_max - u.y) * scale:.1f}" r="3.5"'
            f' fill="{AGREE if agree else DISAGREE}" stroke="#fff" stroke-width="0.8">'
            f"<title>unit {escape(u.id)}: map {escape(u.map_class)}, reference "
            f"{escape(u.reference)}</title></circle>"
        )
    return "".join(out) + "</svg>"


def swatch(color: str, shape: str = "rect") -> str:
    """A 12 px legend mark in ``color``: a square, or a dot."""
    mark = (
        f'<circle cx="6" cy="6" r="4.5" fill="{escape(color)}"/>'
        if shape == "dot"
        else f'<rect width="12" height="12" fill="{escape(color)}" stroke="#555"/>'
    )
    return f'<svg class="swatch" width="12" height="12" aria-hidden="true">{mark}</svg>'


def _open(width: float, height: float, kind: str, label: str) -> str:
    return (
        f'<svg class="chart {kind}" xmlns="http://www.w3.org/2000/svg" role="img"'
        f' aria-label="{escape(label)}" width="{width:.0f}" height="{height:.0f}"'
        f' viewBox="0 0 {width:.1f} {height:.1f}">'
    )


def _x_axis(
    ticks: Sequence[float],
    tick_fmt: str,
    x: Callable[[float], float],
    top: float,
    bottom: float,
    unit: str,
) -> list[str]:
    out = []
    for t in ticks:
        xt = x(t)
        out.append(
            f'<line x1="{xt:.1f}" y1="{top}" x2="{xt:.1f}" y2="{bottom}" stroke="#ddd"/>'
            f'<text x="{xt:.1f}" y="{bottom + 16}" text-anchor="middle" {_FONT}>'
            f"{tick_fmt.format(t)}</text>"
        )
    mid = (x(ticks[0]) + x(ticks[-1])) / 2
    out.append(
        f'<text x="{mid:.1f}" y="{bottom + 34}" text-anchor="middle" {_FONT}>{escape(unit)}</text>'
    )
    return out


def _axis(hi: float) -> tuple[float, list[float], str]:
    """A round axis end at or above ``hi``, its ticks (about five) and their format."""
    hi = hi if hi > 0 and math.isfinite(hi) else 1.0
    raw = hi / 5
    power = 10 ** math.floor(math.log10(raw))
    mantissa = next(m for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    step = mantissa * power
    count = math.ceil(hi / step - 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9) + (mantissa == 2.5))
    return step * count, [step * i for i in range(count + 1)], f"{{:,.{decimals}f}}"


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "\u2026"
