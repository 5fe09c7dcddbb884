"""Source pixels onto a target window: the lattice shortcuts and GDAL's warper.

Reading must stay cheap next to a U-Net forward pass. Sources on a lattice
related to the grid's by whole-number factors, in its CRS or one a constant
shift away (ETRS89 vs WGS84 UTM: the same numbers within a millimetre), are
resampled in numpy (slices, nearest indexing, block means); only the rest
goes through GDAL's warper.

Where resampling mixes source pixels (bilinear, average), an item's quality
mask is applied to the source pixels first (``clear``): a masked value never
reaches a clear pixel, however the band's resolution differs from the mask's.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.warp import reproject, transform, transform_bounds
from rasterio.windows import Window
from rasterio.windows import from_bounds as window_from_bounds

from cluster.errors import ClusterError
from cluster.imagery.blocks import CachedReads
from cluster.imagery.stacitem import BandSource

__all__ = ["MASK_OUTSIDE", "Clear", "Methods", "Target", "crs", "sample", "to_values"]

Bounds = tuple[float, float, float, float]
Lattice = tuple[float, float, float, float]  # target origin (col, row) and pixel size, in source px
Methods = tuple[Resampling, Resampling]  # for sources as fine as the target or coarser; finer
Bands = list[BandSource] | None  # None: a mask, read as raw classes
_TOL = 1e-3  # pixels: a lattice this close to whole numbers is treated as exactly on them
_SHIFT_TOL = 1e-3  # CRS units (mm): two CRSs whose difference varies less are a shift apart
_CELL = 10_000.0  # CRS units: a CRS shift is verified once per cell of this size
MASK_OUTSIDE = -1  # mask value for "no mask pixel here", never a valid class
_local = threading.local()
Raster = DatasetReader | CachedReads  # a file, or a file read through the shared blocks
Clear = Callable[["Target"], np.ndarray]  # an item's usable pixels (bool) on any window


class Target:
    """A window (or the part of it still to fill): transform, shape and CRS. A tile's
    reads run on several threads at once, so the CRS is kept as WKT and each thread
    uses its own CRS object (GDAL's spatial references fill in caches as they are
    used, and one used by two threads at once crashed a reader)."""

    def __init__(self, transform: Affine, rows: slice, cols: slice, crs: CRS | str) -> None:
        self.transform = transform
        self.wkt = crs if isinstance(crs, str) else crs.to_wkt()
        self.shape = (rows.stop - rows.start, cols.stop - cols.start)

    @property
    def crs(self) -> CRS:
        return crs(self.wkt)

    @property
    def key(self) -> tuple[Affine, tuple[int, int], str]:
        return self.transform, self.shape, self.wkt

    def grown(self, n: int) -> Target:
        """The window with ``n`` more pixels on every side."""
        h, w = self.shape
        moved = self.transform @ Affine.translation(-n, -n)
        return Target(moved, slice(0, h + 2 * n), slice(0, w + 2 * n), self.wkt)

    @property
    def bounds(self) -> Bounds:
        (h, w), t = self.shape, self.transform
        return (t.c, t.f + h * t.e, t.c + w * t.a, t.f)


def sample(
    src: Raster,
    indexes: list[int],
    target: Target,
    methods: Methods,
    bands: Bands = None,
    clear: Clear | None = None,
) -> np.ndarray | None:
    """Bands of ``src`` on the target pixels, or None where the window misses ``src``:
    reflectance (float32, NaN = nodata), or for a mask raw classes (int32,
    MASK_OUTSIDE outside the file). ``clear``: the item's mask, applied to the source
    pixels where resampling mixes them (nearest takes one source pixel: the mask on
    the target pixels, applied by the caller, says the same)."""
    if src.crs is None:
        raise OSError("the file has no CRS; write one into it (e.g. gdal_edit -a_srs)")
    lattice = _lattice(src, target)
    if lattice is None:
        return _warp(src, indexes, target, methods, bands, clear)
    col0, row0, sx, sy = lattice
    method = methods[1] if min(sx, sy) >= 1.5 else methods[0]
    whole = all(abs(v - round(v)) < _TOL for v in (col0, row0, sx, sy))
    if method == Resampling.nearest or (whole and sx == sy == 1):
        return _nearest(src, indexes, lattice, target.shape, bands)
    if whole and sx == sy and method == Resampling.average:
        return _block_mean(src, indexes, lattice, target.shape, bands, clear)
    return _warp(src, indexes, target, (method, method), bands, clear)


def _lattice(src: Raster, target: Target) -> Lattice | None:
    """The target pixels in the source's pixel coordinates, if both are north-up
    lattices in CRSs a constant shift apart; sizes are rounded when within _TOL."""
    st, tt = src.transform, target.transform
    if st.b or st.d or tt.b or tt.d:
        return None
    shift = _shift(src.crs.to_wkt(), target.wkt, target.bounds)
    if shift is None:
        return None
    sx, sy = tt.a / st.a, tt.e / st.e
    if sx <= 0 or sy <= 0:
        return None
    sx, sy = (round(v) if abs(v - round(v)) < _TOL / 1000 and round(v) else v for v in (sx, sy))
    return ((tt.c + shift[0] - st.c) / st.a, (tt.f + shift[1] - st.f) / st.e, sx, sy)


def _nearest(
    src: Raster, indexes: list[int], lattice: Lattice, shape: tuple[int, int], bands: Bands
) -> np.ndarray | None:
    """Nearest neighbour by index arithmetic: each target pixel centre's source pixel.
    On an identical lattice this is an exact windowed read."""
    col0, row0, sx, sy = lattice
    h, w = shape
    ci = np.floor(col0 + (np.arange(w) + 0.5) * sx + 1e-9).astype(np.intp)
    ri = np.floor(row0 + (np.arange(h) + 0.5) * sy + 1e-9).astype(np.intp)
    cols = np.flatnonzero((ci >= 0) & (ci < src.width))
    rows = np.flatnonzero((ri >= 0) & (ri < src.height))
    if cols.size == 0 or rows.size == 0:
        return None  # the window misses the file
    ci, ri = ci[cols], ri[rows]
    win = Window(ci[0], ri[0], ci[-1] + 1 - ci[0], ri[-1] + 1 - ri[0])
    vals = to_values(src, src.read(indexes, window=win), indexes, bands)
    if win.width != cols.size or win.height != rows.size:  # not one-to-one: pick pixels
        vals = vals[:, ri - ri[0]][:, :, ci - ci[0]]
    fill, dtype = (np.nan, np.float32) if bands is not None else (MASK_OUTSIDE, np.int32)
    out = np.full((len(indexes), h, w), fill, dtype=dtype)
    out[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = vals
    return out


def _block_mean(
    src: Raster,
    indexes: list[int],
    lattice: Lattice,
    shape: tuple[int, int],
    bands: Bands,
    clear: Clear | None,
) -> np.ndarray | None:
    """Average of the k x k source pixels under each target pixel, nodata left out
    (GDAL's "average" on a whole-number lattice, without the warper's overhead)."""
    c0, r0, k = round(lattice[0]), round(lattice[1]), round(lattice[2])
    (h, w), n = shape, len(indexes)
    # Target pixels whose block overlaps the file, and the source span they cover.
    j0, j1 = max(0, -c0 // k), min(w, -(-(src.width - c0) // k))
    i0, i1 = max(0, -r0 // k), min(h, -(-(src.height - r0) // k))
    if j0 >= j1 or i0 >= i1:
        return None
    span = Window(c0 + j0 * k, r0 + i0 * k, (j1 - j0) * k, (i1 - i0) * k)
    win = span.intersection(Window(0, 0, src.width, src.height))
    vals = _masked(to_values(src, src.read(indexes, window=win), indexes, bands), src, win, clear)
    if (win.width, win.height) != (span.width, span.height):  # blocks cut by the file's edge
        ro, co = int(win.row_off - span.row_off), int(win.col_off - span.col_off)
        pad = ((0, 0), (ro, span.height - ro - win.height), (co, span.width - co - win.width))
        vals = np.pad(vals, pad, constant_values=np.nan)
    ok = ~np.isnan(vals)
    clean = bool(ok.all())
    if not clean:
        vals = np.where(ok, vals, np.float32(0))
    # Strided sums: far faster than reducing a (n, h, k, w, k) view over axes 2 and 4.
    total = sum(vals[:, i::k, j::k] for i in range(k) for j in range(k))
    out = np.full((n, h, w), np.nan, dtype=np.float32)
    if clean:
        np.multiply(total, np.float32(1 / k**2), out=out[:, i0:i1, j0:j1])
    else:
        count = sum(ok[:, i::k, j::k].astype(np.float32) for i in range(k) for j in range(k))
        np.divide(total, count, out=out[:, i0:i1, j0:j1], where=count > 0)
    return out


def _warp(
    src: Raster,
    indexes: list[int],
    target: Target,
    methods: Methods,
    bands: Bands,
    clear: Clear | None,
) -> np.ndarray | None:
    """GDAL's warper, for what the lattice shortcuts cannot do: only the source
    window under the target (plus the kernel's reach) is read."""
    h, w = target.shape
    box = _source_box(src.crs.to_wkt(), target.wkt, target.bounds)
    need = window_from_bounds(*box, transform=src.transform)
    ratio = math.sqrt(need.width / w * need.height / h)  # target pixel size in source pixels
    margin = 3 + math.ceil(ratio)  # kernel reach of bilinear/cubic/average, in source pixels
    c0, r0 = (max(0, math.floor(v) - margin) for v in (need.col_off, need.row_off))
    c1 = min(src.width, math.ceil(need.col_off + need.width) + margin)
    r1 = min(src.height, math.ceil(need.row_off + need.height) + margin)
    if c1 <= c0 or r1 <= r0:
        return None
    win = Window(c0, r0, c1 - c0, r1 - r0)
    source = _masked(to_values(src, src.read(indexes, window=win), indexes, bands), src, win, clear)
    fill = np.nan if bands is not None else MASK_OUTSIDE
    dest = np.full((len(indexes), h, w), fill, dtype=source.dtype)
    reproject(
        source,
        dest,
        src_transform=src.transform @ Affine.translation(c0, r0),
        src_crs=src.crs,
        src_nodata=np.nan if bands is not None else None,
        dst_transform=target.transform,
        dst_crs=target.crs,
        dst_nodata=fill,
        resampling=methods[1] if ratio >= 1.5 else methods[0],
    )
    return dest


def _masked(vals: np.ndarray, src: Raster, win: Window, clear: Clear | None) -> np.ndarray:
    """Source pixels the item's mask leaves unusable set to nodata (NaN), in place,
    before anything averages them into a neighbour."""
    if clear is not None:
        moved = src.transform @ Affine.translation(win.col_off, win.row_off)
        rows, cols = slice(0, int(win.height)), slice(0, int(win.width))
        box = Target(moved, rows, cols, src.crs.to_wkt())
        vals[:, ~clear(box)] = np.nan
    return vals


def to_values(src: DatasetReader, raw: np.ndarray, indexes: list[int], bands: Bands) -> np.ndarray:
    """Reflectance (DN * scale + offset, float32) with NaN for nodata; for a mask
    (no ``bands``) the classes as int32."""
    if bands is None:
        return raw.astype(np.int32)
    out = raw.astype(np.float32)
    for k, (band, index) in enumerate(zip(bands, indexes, strict=True)):
        nodata = band.nodata if band.nodata is not None else src.nodatavals[index - 1]
        invalid = np.isnan(out[k]) if nodata is None or math.isnan(nodata) else raw[k] == nodata
        out[k] *= np.float32(band.scale)
        out[k] += np.float32(band.offset)
        out[k][invalid] = np.nan
    return out


def _shift(src_wkt: str, dst_wkt: str, bounds: Bounds) -> tuple[float, float] | None:
    """(dx, dy) taking target coordinates to source ones, if constant over ``bounds``
    (windows wider than a cell are left to the warper)."""
    if _same_crs(src_wkt, dst_wkt):
        return (0.0, 0.0)
    if bounds[2] - bounds[0] > _CELL or bounds[3] - bounds[1] > _CELL:
        return None
    cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    return _cell_shift(src_wkt, dst_wkt, math.floor(cx / _CELL), math.floor(cy / _CELL))


@lru_cache(maxsize=4096)
def _cell_shift(src_wkt: str, dst_wkt: str, i: int, j: int) -> tuple[float, float] | None:
    """Verified over the cell and its neighbours, so any window centred in it is covered."""
    box = ((i - 1) * _CELL, (j - 1) * _CELL, (i + 2) * _CELL, (j + 2) * _CELL)
    xs, ys = np.meshgrid(np.linspace(box[0], box[2], 5), np.linspace(box[1], box[3], 5))
    try:
        tx, ty = transform(crs(dst_wkt), crs(src_wkt), xs.ravel(), ys.ravel())
    except Exception:
        return None
    dx, dy = np.asarray(tx) - xs.ravel(), np.asarray(ty) - ys.ravel()
    if not (np.ptp(dx) <= _SHIFT_TOL and np.ptp(dy) <= _SHIFT_TOL):  # NaN fails too
        return None
    return float(dx.mean()), float(dy.mean())


@lru_cache(maxsize=256)  # all bands of the items of a tile share one target window
def _source_box(src_wkt: str, dst_wkt: str, bounds: Bounds) -> Bounds:
    return transform_bounds(crs(dst_wkt), crs(src_wkt), *bounds)


def crs(text: str) -> CRS:
    """The CRS of ``text``, this thread's own object (made once per thread)."""
    cache: dict[str, CRS] = _local.__dict__.setdefault("crs", {})
    if (hit := cache.get(text)) is None:
        try:
            hit = CRS.from_user_input(text)
        except Exception as exc:
            raise ClusterError(f"CRS {text!r} is not one rasterio knows ({exc})") from exc
        if len(cache) >= 64:
            cache.clear()
        cache[text] = hit
    return hit


@lru_cache(maxsize=256)
def _same_crs(a: str, b: str) -> bool:
    return a == b or crs(a) == crs(b)
