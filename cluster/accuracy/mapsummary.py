"""What the report shows of the map itself, from one pass over the store, block by block.

The HTML report needs a small picture of the class map (the quicklook where
the run's own ``quicklook.png`` cannot be reached, and always the background
under the sample's locations, which must line up with them) and the histogram
of the confidence array. A state's map is billions of pixels, so neither may
load it whole: ``summarize`` reads ``StoreMap.windows`` blocks one at a time,
keeps every ``stride``-th pixel of the class block (the same pixels whatever
the block size, so the picture does not depend on ``block_px``) and adds the
block's confidence values to a 256-entry count, from which the bins follow
exactly (no floating-point binning of billions of values). Memory is one block.

The picture is written as PNG by a small encoder of our own (zlib + the PNG
chunk layout) rather than through matplotlib: the same map gives the same
bytes, and nothing is drawn but the pixels.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.storechunks import CONFIDENCE_SCALE, StoreMap
from cluster.predict.store import NODATA

__all__ = ["BINS", "MapSummary", "class_png", "summarize"]

BINS = 20  # confidence histogram bins over probability 0..1
DEFAULT_MAX_PX = 640  # long side of the map picture


@dataclass(frozen=True)
class MapSummary:
    """A coarse class raster (every ``stride``-th pixel, 255 nodata) and the confidence bins."""

    classes: np.ndarray
    stride: int
    confidence_counts: tuple[int, ...]  # pixels per bin, BINS of them; nodata left out
    confidence_nodata: int

    @property
    def bin_edges(self) -> tuple[float, ...]:
        return tuple(i / BINS for i in range(BINS + 1))


def summarize(source: StoreMap, *, max_px: int = DEFAULT_MAX_PX) -> MapSummary:
    """The coarse class raster and confidence histogram of ``source``, block by block."""
    if not (isinstance(max_px, int) and max_px > 0):
        raise AccuracyError(f"max_px must be a positive whole number, not {max_px!r}")
    height, width = source.shape
    stride = max(1, math.ceil(max(height, width) / max_px))
    coarse = np.full((math.ceil(height / stride), math.ceil(width / stride)), NODATA, np.uint8)
    counts = np.zeros(NODATA + 1, np.int64)
    for window in source.windows():
        row, col, _, _ = window
        counts += np.bincount(source.read("confidence", window).ravel(), minlength=NODATA + 1)
        r0, c0 = (-row) % stride, (-col) % stride  # first kept pixel: a multiple of stride
        kept = source.read("class", window)[r0::stride, c0::stride]
        top, left = (row + r0) // stride, (col + c0) // stride
        coarse[top : top + kept.shape[0], left : left + kept.shape[1]] = kept
    return MapSummary(coarse, stride, confidence_bins(counts), int(counts[NODATA]))


def confidence_bins(counts: np.ndarray) -> tuple[int, ...]:
    """Counts per stored value (0..254, 255 nodata) into BINS bins of probability value/254.

    Bin k holds probabilities in [k/BINS, (k+1)/BINS), the last one 1.0 too;
    integer arithmetic, so a value on an edge falls in the bin it starts."""
    values = np.arange(int(CONFIDENCE_SCALE) + 1)
    bins = np.minimum(values * BINS // int(CONFIDENCE_SCALE), BINS - 1)
    out = np.bincount(bins, weights=counts[: values.size], minlength=BINS)
    return tuple(int(v) for v in out)


def class_png(classes: np.ndarray, colors: Sequence[str]) -> bytes:
    """The class raster as an RGBA PNG in the class colours ('#rrggbb'); nodata transparent."""
    lut = np.zeros((NODATA + 1, 4), np.uint8)
    for value, color in enumerate(colors):
        lut[value] = (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16), 255)
    return png_rgba(lut[classes])


def png_rgba(rgba: np.ndarray) -> bytes:
    """An 8-bit RGBA image (height, width, 4) as PNG bytes: no filter, no metadata."""
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8 or 0 in rgba.shape:
        raise AccuracyError(
            f"expected a non-empty (height, width, 4) uint8 image, got {rgba.dtype} {rgba.shape}"
        )
    height, width, _ = rgba.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgba.reshape(height, width * 4)], 1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bit RGBA
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + chunk(b"IEND", b"")
    )
