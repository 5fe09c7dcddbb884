"""Read one tile's window of imagery: warped onto the grid, masked, mosaicked.

For each item meeting a tile, in catalog order, the reader fetches only the
part of each file under the window (a few COG block reads), resamples it onto
the grid, drops pixels that are nodata or cloud-masked, and fills only pixels
no earlier item filled; it stops once all are filled and reads later items
only over the box still missing. A pixel takes all bands from one item:
mixing dates within a pixel would make spectra that never existed.

Reading must stay cheap next to a U-Net forward pass. Sources on a lattice
related to the grid's by whole-number factors, in its CRS or one a constant
shift away (ETRS89 vs WGS84 UTM: the same numbers within a millimetre), are
resampled in numpy (slices, nearest indexing, block means); only the rest
goes through GDAL's warper. Open datasets are cached per thread.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
from cluster.imagery.providers import BUCKET_ENDPOINTS
from cluster.imagery.stacitem import BandSource, ItemRef
from cluster.storage import objstore
from cluster.storage.gdalenv import configure_gdal

__all__ = ["AssetReadError", "close_datasets", "read_window"]

Bounds = tuple[float, float, float, float]
Lattice = tuple[float, float, float, float]  # target origin (col, row) and pixel size, in source px
Methods = tuple[Resampling, Resampling]  # for sources as fine as the target or coarser; finer
Bands = list[BandSource] | None  # None: a mask, read as raw classes
_MAX_OPEN = 64  # datasets kept open per thread: the items of a few neighbouring tiles
_TOL = 1e-3  # pixels: a lattice this close to whole numbers is treated as exactly on them
_SHIFT_TOL = 1e-3  # CRS units (mm): two CRSs whose difference varies less are a shift apart
_CELL = 10_000.0  # CRS units: a CRS shift is verified once per cell of this size
_MASK_OUTSIDE = -1  # mask value for "no mask pixel here", never a valid class
_local = threading.local()


class AssetReadError(ClusterError):
    """An asset file is missing, unreadable or corrupt: names item, asset key and href,
    so a run fails just the tiles needing it and says which file to fix. Picklable
    with its fields, since Ray ships exceptions between processes."""

    def __init__(self, item_id: str, asset: str, href: str, reason: str) -> None:
        self.item_id, self.asset, self.href, self.reason = item_id, asset, href, reason
        super().__init__(
            f"item {item_id} asset {asset!r} ({href}) cannot be read: {reason}. Only tiles "
            "needing it fail; repair or replace the file (or drop the item) and rerun them"
        )

    def __reduce__(self) -> tuple[type, tuple[str, str, str, str]]:
        return (type(self), (self.item_id, self.asset, self.href, self.reason))


def read_window(
    items: Sequence[ItemRef],
    bounds: Bounds,
    shape: tuple[int, int],
    crs: str,
    resampling: str = "bilinear",
    *,
    downsampling: str = "average",
    n_bands: int | None = None,
    sources: np.ndarray | None = None,
) -> np.ndarray:
    """float32 (n_bands, h, w) reflectance on the window; NaN where no item has a valid pixel.

    ``bounds`` (minx, miny, maxx, maxy in ``crs``) and ``shape`` (h, w) give
    the target pixels, e.g. ``grid.tile_bounds(tile, halo=True)`` and
    ``grid.tile_shape(halo=True)``. ``items`` are mosaicked in the given order,
    the first valid pixel winning. ``resampling`` is for sources as fine as the
    target or coarser (20 m bands onto 10 m), ``downsampling`` for finer ones
    (orthophotos onto 10 m: bilinear would alias). ``n_bands`` is needed only
    when ``items`` may be empty. ``sources``, an int array of ``shape``, is given
    each pixel's position in ``items`` (-1: none), so a check can name the item
    a suspicious value came from. An unreadable file raises AssetReadError.
    """
    configure_gdal()  # idempotent and cheap; entry points and actors call it first anyway
    h, w = (int(v) for v in shape)
    minx, miny, maxx, maxy = (float(v) for v in bounds)
    if h < 1 or w < 1 or not (minx < maxx and miny < maxy):
        raise ClusterError(f"window {bounds} of shape {shape} is empty; give bounds and (h, w) > 0")
    counts = {len(item.bands) for item in items} | ({n_bands} if n_bands is not None else set())
    if len(counts) != 1:
        raise ClusterError(
            f"items {[i.id for i in items]} carry {sorted(counts)} bands; all must carry the same "
            "bands (open them with one Catalog), and n_bands is required when there are no items"
        )
    if not {resampling, downsampling} <= Resampling.__members__.keys():
        names = ", ".join(Resampling.__members__)
        raise ClusterError(f"resampling {resampling!r}/{downsampling!r}: use one of {names}")
    methods = (Resampling[resampling], Resampling[downsampling])
    window = Affine((maxx - minx) / w, 0, minx, 0, -(maxy - miny) / h, maxy)
    dst_crs = _crs(crs)
    out = np.full((counts.pop(), h, w), np.nan, dtype=np.float32)
    todo = np.ones((h, w), dtype=bool)
    if sources is not None:
        sources[...] = -1
    for position, item in enumerate(items):
        rows, cols = (np.flatnonzero(todo.any(axis=a)) for a in (1, 0))
        if rows.size == 0:
            break  # every pixel filled: later items are not even opened
        rows, cols = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        target = _Target(window @ Affine.translation(cols.start, rows.start), rows, cols, dst_crs)
        valid = todo[rows, cols].copy()
        data = _read_item(item, target, valid, methods)
        if data is not None:
            np.copyto(out[:, rows, cols], data, where=valid)
            todo[rows, cols] &= ~valid
            if sources is not None:
                sources[rows, cols][valid] = position
    return out


def close_datasets() -> None:
    """Close the datasets this thread keeps open (e.g. before an actor exits)."""
    cache = _local.__dict__.get("cache", {})
    while cache:
        cache.popitem()[1][0].close()


class _Target:
    """The part of the window still to fill: transform, shape and CRS."""

    def __init__(self, transform: Affine, rows: slice, cols: slice, crs: CRS) -> None:
        self.transform, self.crs = transform, crs
        self.shape = (rows.stop - rows.start, cols.stop - cols.start)

    @property
    def bounds(self) -> Bounds:
        (h, w), t = self.shape, self.transform
        return (t.c, t.f + h * t.e, t.c + w * t.a, t.f)


def _read_item(
    item: ItemRef, target: _Target, valid: np.ndarray, methods: Methods
) -> np.ndarray | None:
    """(n, h, w) reflectance of one item; ``valid`` (pixels still wanted) is narrowed in
    place to those it fills; None once it is clear it fills none. The mask is read first
    (one small file) so cloudy items skip their band reads; bands sharing a file (a
    multiband orthophoto) are read in one call."""
    if item.mask is not None:
        with _asset_errors(item, item.mask.asset, item.mask.href):
            nearest = (Resampling.nearest, Resampling.nearest)
            classes = _sample(_dataset(item.mask.href), [1], target, nearest)
        if classes is None:
            return None
        valid &= (classes[0] != _MASK_OUTSIDE) & ~np.isin(classes[0], item.mask.invalid)
        if not valid.any():
            return None
    data = np.empty((len(item.bands), *target.shape), dtype=np.float32)
    for href in dict.fromkeys(b.href for b in item.bands):
        positions = [p for p, b in enumerate(item.bands) if b.href == href]
        bands = [item.bands[p] for p in positions]
        with _asset_errors(item, bands[0].asset, href):
            part = _sample(_dataset(href), [b.band_index for b in bands], target, methods, bands)
        if part is None:
            return None
        valid &= ~np.isnan(part).any(axis=0)
        if not valid.any():
            return None  # nothing here where pixels are missing: skip the other bands
        data[positions] = part
    return data


def _sample(
    src: DatasetReader, indexes: list[int], target: _Target, methods: Methods, bands: Bands = None
) -> np.ndarray | None:
    """Bands of ``src`` on the target pixels, or None where the window misses ``src``:
    reflectance (float32, NaN = nodata), or for a mask raw classes (int32,
    _MASK_OUTSIDE outside the file)."""
    if src.crs is None:
        raise OSError("the file has no CRS; write one into it (e.g. gdal_edit -a_srs)")
    lattice = _lattice(src, target)
    if lattice is None:
        return _warp(src, indexes, target, methods, bands)
    col0, row0, sx, sy = lattice
    method = methods[1] if min(sx, sy) >= 1.5 else methods[0]
    whole = all(abs(v - round(v)) < _TOL for v in (col0, row0, sx, sy))
    if method == Resampling.nearest or (whole and sx == sy == 1):
        return _nearest(src, indexes, lattice, target.shape, bands)
    if whole and sx == sy and method == Resampling.average:
        return _block_mean(src, indexes, lattice, target.shape, bands)
    return _warp(src, indexes, target, (method, method), bands)


def _lattice(src: DatasetReader, target: _Target) -> Lattice | None:
    """The target pixels in the source's pixel coordinates, if both are north-up
    lattices in CRSs a constant shift apart; sizes are rounded when within _TOL."""
    st, tt = src.transform, target.transform
    if st.b or st.d or tt.b or tt.d:
        return None
    shift = _shift(src.crs.to_wkt(), target.crs.to_wkt(), target.bounds)
    if shift is None:
        return None
    sx, sy = tt.a / st.a, tt.e / st.e
    if sx <= 0 or sy <= 0:
        return None
    sx, sy = (round(v) if abs(v - round(v)) < _TOL / 1000 and round(v) else v for v in (sx, sy))
    return ((tt.c + shift[0] - st.c) / st.a, (tt.f + shift[1] - st.f) / st.e, sx, sy)


def _nearest(
    src: DatasetReader, indexes: list[int], lattice: Lattice, shape: tuple[int, int], bands: Bands
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
    vals = _values(src, src.read(indexes, window=win), indexes, bands)
    if win.width != cols.size or win.height != rows.size:  # not one-to-one: pick pixels
        vals = vals[:, ri - ri[0]][:, :, ci - ci[0]]
    fill, dtype = (np.nan, np.float32) if bands is not None else (_MASK_OUTSIDE, np.int32)
    out = np.full((len(indexes), h, w), fill, dtype=dtype)
    out[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = vals
    return out


def _block_mean(
    src: DatasetReader, indexes: list[int], lattice: Lattice, shape: tuple[int, int], bands: Bands
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
    vals = _values(src, src.read(indexes, window=win), indexes, bands)
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
    src: DatasetReader, indexes: list[int], target: _Target, methods: Methods, bands: Bands
) -> np.ndarray | None:
    """GDAL's warper, for what the lattice shortcuts cannot do: only the source
    window under the target (plus the kernel's reach) is read."""
    h, w = target.shape
    box = _source_box(src.crs.to_wkt(), target.crs.to_wkt(), target.bounds)
    need = window_from_bounds(*box, transform=src.transform)
    ratio = math.sqrt(need.width / w * need.height / h)  # target pixel size in source pixels
    margin = 3 + math.ceil(ratio)  # kernel reach of bilinear/cubic/average, in source pixels
    c0, r0 = (max(0, math.floor(v) - margin) for v in (need.col_off, need.row_off))
    c1 = min(src.width, math.ceil(need.col_off + need.width) + margin)
    r1 = min(src.height, math.ceil(need.row_off + need.height) + margin)
    if c1 <= c0 or r1 <= r0:
        return None
    win = Window(c0, r0, c1 - c0, r1 - r0)
    source = _values(src, src.read(indexes, window=win), indexes, bands)
    fill = np.nan if bands is not None else _MASK_OUTSIDE
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


def _values(src: DatasetReader, raw: np.ndarray, indexes: list[int], bands: Bands) -> np.ndarray:
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
        tx, ty = transform(_crs(dst_wkt), _crs(src_wkt), xs.ravel(), ys.ravel())
    except Exception:
        return None
    dx, dy = np.asarray(tx) - xs.ravel(), np.asarray(ty) - ys.ravel()
    if not (np.ptp(dx) <= _SHIFT_TOL and np.ptp(dy) <= _SHIFT_TOL):  # NaN fails too
        return None
    return float(dx.mean()), float(dy.mean())


@contextmanager
def _asset_errors(item: ItemRef, asset: str, href: str) -> Iterator[None]:
    """Any failure to open or read a file becomes an AssetReadError naming it; the
    file leaves the cache so that a repaired one is reopened next time."""
    try:
        yield
    except ClusterError:
        raise
    except Exception as exc:
        _evict(href)
        causes = (exc, exc.__cause__ or exc.__context__)  # rasterio puts GDAL's words in a cause
        said = [str(c).strip().rstrip(".") for c in causes if c is not None]
        reason = ": ".join(m for m in said if m and "previous exception" not in m) or repr(exc)
        raise AssetReadError(item.id, asset, href, reason) from exc


def _dataset(href: str) -> DatasetReader:
    """An open dataset for ``href`` from this thread's cache. A local file is reopened
    when it changed on disk (or vanished), so a replaced file is never read stale."""
    cache: OrderedDict[str, tuple[DatasetReader, tuple[int, ...] | None]]
    cache = _local.__dict__.setdefault("cache", OrderedDict())
    stat = os.stat(href) if "://" not in href else None  # FileNotFoundError: deleted asset
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns) if stat is not None else None
    if (hit := cache.get(href)) is not None and hit[1] == stamp:
        cache.move_to_end(href)
        return hit[0]
    _evict(href)
    src = objstore.open_raster(href, BUCKET_ENDPOINTS)
    cache[href] = (src, stamp)
    while len(cache) > _MAX_OPEN:
        cache.popitem(last=False)[1][0].close()
    return src


def _evict(href: str) -> None:
    if (hit := _local.__dict__.get("cache", {}).pop(href, None)) is not None:
        hit[0].close()


@lru_cache(maxsize=256)  # all bands of the items of a tile share one target window
def _source_box(src_wkt: str, dst_wkt: str, bounds: Bounds) -> Bounds:
    return transform_bounds(_crs(dst_wkt), _crs(src_wkt), *bounds)


@lru_cache(maxsize=64)
def _crs(text: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except Exception as exc:
        raise ClusterError(f"CRS {text!r} is not one rasterio knows ({exc})") from exc


@lru_cache(maxsize=256)
def _same_crs(a: str, b: str) -> bool:
    return a == b or _crs(a) == _crs(b)
