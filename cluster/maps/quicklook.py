"""A quicklook PNG of a whole class map, with its legend.

``write_quicklook`` reads the class COG (or the VRT mosaic of its parts) at
most ``max_px`` pixels on the long side in one ``read(out_shape=...)``, so
GDAL serves it from the overviews rather than the full resolution, colours it
with the class colours (nodata shows the white background), and lays a legend of the class
names beside it. The map is drawn pixel for pixel (no interpolation): the PNG
is ``map width + legend width`` wide and ``map height`` (or the legend's, if
taller) high, and never more than ``max_px`` on its long side. No timestamps
or software tags are written, so the same map gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rasterio.enums import Resampling

from cluster.errors import ClusterError
from cluster.maps.compile import class_tags

__all__ = ["legend_width", "write_quicklook"]

_DPI = 100
_FONT_PT = 8
_MIN_LEGEND_PX = 96


def legend_width(max_px: int) -> int:
    """Pixels given to the legend, to the right of the map."""
    return max(_MIN_LEGEND_PX, max_px // 4)


def _classes(src: rasterio.DatasetReader, path: Path) -> tuple[list[str], list[str]]:
    """Class names and colours from the tags ``compile`` writes (a GeoTIFF colour
    table alone cannot say which entries are classes: GTiff drops its alpha)."""
    return class_tags(src.tags(), path)


def write_quicklook(cog: Path, out_png: Path, max_px: int = 1024) -> Path:
    """Write a PNG of the class map ``cog`` with a legend to ``out_png``, return it."""
    if max_px < 2 * _MIN_LEGEND_PX:
        raise ClusterError(f"max_px must be at least {2 * _MIN_LEGEND_PX}, got {max_px}")
    with rasterio.open(cog) as src:
        names, colors = _classes(src, Path(cog))
        legend_px = legend_width(max_px)
        scale = min((max_px - legend_px) / src.width, max_px / src.height, 1.0)
        shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
        classes = src.read(1, out_shape=shape, resampling=Resampling.nearest)

    lut = np.zeros((256, 4), np.uint8)  # unknown values and nodata: transparent
    for value, color in enumerate(colors):
        lut[value] = (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16), 255)
    rgba = lut[classes]

    height, width = shape
    fig_h = max(height, min(max_px, 24 + 16 * len(names)))
    fig = Figure(figsize=((width + legend_px) / _DPI, fig_h / _DPI), dpi=_DPI)
    ax = fig.add_axes((0, 1 - height / fig_h, width / (width + legend_px), height / fig_h))
    ax.imshow(rgba, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    handles = [
        Patch(facecolor=c, edgecolor="black", linewidth=0.5, label=n)
        for n, c in zip(names, colors, strict=True)
    ]
    fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(width / (width + legend_px), 1.0),
        frameon=False,
        fontsize=_FONT_PT,
        title="class",
        title_fontsize=_FONT_PT,
    )
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=_DPI, metadata={"Software": None}, facecolor="white")
    return out
