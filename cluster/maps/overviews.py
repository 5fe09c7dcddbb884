"""Overview levels of a uint8 map in numpy, pixel-identical to GDAL's MODE and AVERAGE.

Why not GDAL's own overview builder: for a Byte band its MODE clears a
256-entry histogram for every output pixel; on the benchmark's 10,240 x
10,240 class map (2 CPUs) GDAL's MODE overviews took about 3 s, over a third
of the whole compile, these about 0.4 s. A 2 x 2 window needs no histogram:
comparing its four pixels is enough.

Each level halves the previous one (factor 2, as GDAL computes a pyramid:
level k from level k - 1, not from full resolution), and the choices are
GDAL's exactly (checked against GDAL in tests/cluster/maps/test_compile.py):

- MODE: nodata pixels are skipped; the most frequent value wins, and between
  equally frequent values the one that reached that count first when scanning
  the window row by row (GDAL keeps a running maximum, replaced only when
  beaten); an all-nodata window is nodata.
- AVERAGE: the mean of the valid pixels, rounded half up
  (``(sum + n // 2) // n``); an all-nodata window is nodata.

An odd row or column count is padded with nodata, so a level is
``ceil(size / 2)`` a side (gdaladdo's sizes) and its last row or column is
the mode or mean of the valid pixels that remain.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["halve"]


def halve(x: np.ndarray, method: Literal["MODE", "AVERAGE"], nodata: int) -> np.ndarray:
    """The next overview level of the uint8 array ``x``: one pixel per 2 x 2 window."""
    h, w = x.shape
    if h % 2 or w % 2:
        padded = np.full((h + h % 2, w + w % 2), nodata, np.uint8)
        padded[:h, :w] = x
        x = padded
    # The window's pixels in GDAL's scan order: top left, top right, bottom left, bottom right.
    quad = (x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2])
    return _mode(*quad, nodata) if method == "MODE" else _average(quad, nodata)


def _mode(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, nodata: int) -> np.ndarray:
    """GDAL's rule restated: the winner is the value whose last (count-th) occurrence
    comes first. ``o*`` is each position's occurrence number of its value, so the
    highest count is the highest occurrence number, and the earliest position holding
    it is the winner; counts are uint8 (at most 4), so no wide temporaries."""
    va, vb, vc, vd = a != nodata, b != nodata, c != nodata, d != nodata
    oa = va.view(np.uint8)
    ob = vb.view(np.uint8) + (vb & (a == b)).view(np.uint8)
    oc = vc.view(np.uint8) + (vc & (a == c)).view(np.uint8) + (vc & (b == c)).view(np.uint8)
    od = vd.view(np.uint8) + (vd & (a == d)).view(np.uint8)
    od += (vd & (b == d)).view(np.uint8)
    od += (vd & (c == d)).view(np.uint8)
    top = np.maximum(np.maximum(oa, ob), np.maximum(oc, od))
    out = np.where(od == top, d, np.uint8(nodata))  # a window of nodata: top == 0 == od
    np.copyto(out, c, where=oc == top)
    np.copyto(out, b, where=ob == top)
    np.copyto(out, a, where=oa == top)
    return out


def _average(quad: tuple[np.ndarray, ...], nodata: int) -> np.ndarray:
    total = np.zeros(quad[0].shape, np.uint16)
    count = np.zeros(quad[0].shape, np.uint8)
    for q in quad:
        valid = q != nodata
        total += np.where(valid, q, np.uint8(0))
        count += valid.view(np.uint8)
    out = np.full(total.shape, nodata, np.uint8)
    some = count > 0
    n = count[some].astype(np.uint16)
    out[some] = (total[some] + n // 2) // n
    return out
