"""Read one tile's window of imagery: warped onto the grid, masked, mosaicked.

For each item meeting a tile, in catalog order, the reader fetches only the
part of each file under the window (a few COG block reads), resamples it onto
the grid, drops pixels that are nodata or cloud-masked, and fills only pixels
no earlier item filled; it stops once all are filled and reads later items
only over the box still missing. A pixel takes all bands from one item:
mixing dates within a pixel would make spectra that never existed.

Reads go to the request threads of ``cluster.imagery.inflight``, all files of
an item at once, and datasets stay open there across tiles; resampling onto
the grid is in ``cluster.imagery.resample``. Composites and stacks over time
read through ``read_clear`` and ``read_band`` (``cluster.imagery.composite``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from scipy import ndimage

from cluster.errors import ClusterError
from cluster.imagery.inflight import close_datasets, dataset, discard, submit
from cluster.imagery.resample import MASK_OUTSIDE, Clear, Methods, Target, sample, to_values
from cluster.imagery.resample import crs as crs_of
from cluster.imagery.signing import SigningError
from cluster.imagery.stacitem import BandSource, ItemRef
from cluster.storage.gdalenv import configure_gdal
from cluster.storage.redact import redact

__all__ = [
    "AssetReadError",
    "Target",
    "band_files",
    "clear_on",
    "close_datasets",
    "read_band",
    "read_clear",
    "read_file",
    "read_overview",
    "read_window",
    "window",
]

Bounds = tuple[float, float, float, float]


class AssetReadError(ClusterError):
    """An asset file is missing, unreadable or corrupt: names item, asset key and href,
    so a run fails just the tiles needing it and says which file to fix. Picklable
    with its fields, since Ray ships exceptions between processes."""

    def __init__(self, item_id: str, asset: str, href: str, reason: str) -> None:
        reason = redact(reason)  # GDAL names the URL it opened: signed, for some providers
        self.item_id, self.asset, self.href, self.reason = item_id, asset, href, reason
        super().__init__(  # an href may carry a provider's token: not into messages
            f"item {item_id} asset {asset!r} ({redact(href)}) cannot be read: {reason}. Only tiles "
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
    whole, methods, bands = window(items, bounds, shape, crs, resampling, downsampling, n_bands)
    h, w = whole.shape
    out = np.full((bands, h, w), np.nan, dtype=np.float32)
    todo = np.ones((h, w), dtype=bool)
    if sources is not None:
        sources[...] = -1
    for position, item in enumerate(items):
        rows, cols = (np.flatnonzero(todo.any(axis=a)) for a in (1, 0))
        if rows.size == 0:
            break  # every pixel filled: later items are not even opened
        rows, cols = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
        shift = Affine.translation(cols.start, rows.start)
        target = Target(whole.transform @ shift, rows, cols, whole.wkt)
        valid = todo[rows, cols].copy()
        data = _read_item(item, target, valid, methods)
        if data is not None:
            np.copyto(out[:, rows, cols], data, where=valid)
            todo[rows, cols] &= ~valid
            if sources is not None:
                sources[rows, cols][valid] = position
    return out


def window(
    items: Sequence[ItemRef],
    bounds: Bounds,
    shape: tuple[int, int],
    crs: str,
    resampling: str = "bilinear",
    downsampling: str = "average",
    n_bands: int | None = None,
) -> tuple[Target, Methods, int]:
    """The checked target window, resampling methods and band count of a read."""
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
    transform = Affine((maxx - minx) / w, 0, minx, 0, -(maxy - miny) / h, maxy)
    target = Target(transform, slice(0, h), slice(0, w), crs_of(crs))
    return target, (Resampling[resampling], Resampling[downsampling]), counts.pop()


def read_clear(item: ItemRef, target: Target) -> np.ndarray:
    """bool (h, w): the pixels ``item``'s quality mask leaves usable (all, without a mask;
    none where the mask file does not reach); none within ``dilate_m`` of cloud or
    shadow, which is read from that far beyond the window."""
    mask = item.mask
    if mask is None:
        return np.ones(target.shape, dtype=bool)
    size = math.sqrt(abs(target.transform.determinant))
    grow = math.ceil(mask.dilate_m / size - 1e-9) if mask.dilate and mask.dilate_m > 0 else 0
    nearest = (Resampling.nearest, Resampling.nearest)
    with _asset_errors(item, mask.asset, mask.href), dataset(mask.href) as src:
        classes = sample(src, [1], target.grown(grow) if grow else target, nearest)
    if classes is None:
        return np.zeros(target.shape, dtype=bool)
    c = classes[0]
    bad = (c == MASK_OUTSIDE) | np.isin(c, mask.invalid)
    if grow:
        bad |= ndimage.binary_dilation(np.isin(c, mask.dilate), _disk(mask.dilate_m / size))
        bad = bad[grow:-grow, grow:-grow]
    return ~bad


@lru_cache(maxsize=16)
def _disk(radius: float) -> np.ndarray:
    """Pixels whose centres lie within ``radius`` pixels of the centre one."""
    r = math.ceil(radius - 1e-9)
    i, j = np.ogrid[-r : r + 1, -r : r + 1]
    return i * i + j * j <= radius * radius + 1e-9


class _ClearOn:
    """An item's usable pixels on any window a read asks about (the tile's, a band's
    source window, shared by the bands of one resolution): each worked out once."""

    def __init__(self, item: ItemRef) -> None:
        self.item = item
        self._done: dict[tuple[Affine, tuple[int, int], str], np.ndarray] = {}
        self._lock = threading.Lock()

    def __call__(self, target: Target) -> np.ndarray:
        if self.item.mask is None:
            return np.ones(target.shape, dtype=bool)
        with self._lock:
            hit = self._done.get(target.key)
        if hit is None:
            hit = read_clear(self.item, target)
            with self._lock:
                self._done[target.key] = hit
        return hit


def clear_on(item: ItemRef) -> Clear:
    """``read_clear`` of one item, kept for the windows of one tile's reads: what
    ``sample`` masks source pixels with."""
    return _ClearOn(item)


def read_band(
    item: ItemRef, k: int, target: Target, methods: Methods, clear: Clear | None = None
) -> np.ndarray | None:
    """float32 (h, w) reflectance of ``item``'s band ``k`` (NaN: nodata), or None where
    the window misses its file. Composites read band by band, so that only one band
    of all dates is ever held."""
    part = read_file(item, [item.bands[k]], target, methods, clear)
    return None if part is None else part[0]


def read_file(
    item: ItemRef,
    bands: Sequence[BandSource],
    target: Target,
    methods: Methods,
    clear: Clear | None = None,
) -> np.ndarray | None:
    """float32 (len(bands), h, w) reflectance of ``bands``, all in one file of ``item``,
    or None where the window misses it; ``clear`` (``clear_on(item)``) masks the
    source pixels before resampling mixes them."""
    href = bands[0].href
    with _asset_errors(item, bands[0].asset, href), dataset(href) as src:
        return sample(src, [b.band_index for b in bands], target, methods, list(bands), clear)


def band_files(item: ItemRef) -> list[list[int]]:
    """Positions of ``item``'s bands grouped by file, files in band order: the unit a
    read fetches (bands sharing a file, a multiband orthophoto, in one call)."""
    return [[p for p, b in enumerate(item.bands) if b.href == href]
            for href in dict.fromkeys(b.href for b in item.bands)]  # fmt: skip


def read_overview(
    item: ItemRef, bands: Sequence[BandSource] | None, min_pixels: int
) -> tuple[np.ndarray, Affine, str]:
    """One file of ``item`` whole, at its coarsest overview of at least ``min_pixels``
    pixels (one small read; the full file where it has no overviews): reflectance of
    ``bands`` (all in that file) as a tile's read makes it, or with None the mask's
    raw classes. With the read's transform and the file's CRS (WKT)."""
    if bands is None:
        if item.mask is None:
            raise ClusterError(f"item {item.id} has no mask to read")
        href, asset, indexes = item.mask.href, item.mask.asset, [1]
    else:
        href, asset, indexes = bands[0].href, bands[0].asset, [b.band_index for b in bands]
    with _asset_errors(item, asset, href), dataset(href) as src:
        sizes = [(-(-src.height // f), -(-src.width // f)) for f in [1, *src.overviews(indexes[0])]]
        h, w = min((s for s in sizes if s[0] * s[1] >= min_pixels), key=lambda s: s[0] * s[1],
                   default=sizes[0])  # fmt: skip
        raw = src.read(indexes, out_shape=(len(indexes), h, w), resampling=Resampling.nearest)
        transform = src.transform @ Affine.scale(src.width / w, src.height / h)
        values = to_values(src, raw, indexes, None if bands is None else list(bands))
        return values, transform, src.crs.to_wkt()


def _read_item(
    item: ItemRef, target: Target, valid: np.ndarray, methods: Methods
) -> np.ndarray | None:
    """(n, h, w) reflectance of one item; ``valid`` (pixels still wanted) is narrowed in
    place to those it fills; None once it is clear it fills none. The mask and every
    file of the item are asked for at once (one round trip, not one per file); they
    are then used in turn, mask first, as if read one after another: a file the
    item turns out not to need (cloudy where pixels are missing) is not waited for,
    nor can it fail the tile. Bands sharing a file (a multiband orthophoto) are read
    in one call."""
    files = band_files(item)
    clear = clear_on(item)
    mask = submit(item.mask.href, clear, target) if item.mask else None
    reads = [submit(item.bands[positions[0]].href, read_file, item,
                    [item.bands[p] for p in positions], target, methods, clear)
             for positions in files]  # fmt: skip
    try:
        if mask is not None:
            valid &= mask.result()
            if not valid.any():
                return None
        data = np.empty((len(item.bands), *target.shape), dtype=np.float32)
        for positions, read in zip(files, reads, strict=True):
            part = read.result()
            if part is None:
                return None
            valid &= ~np.isnan(part).any(axis=0)
            if not valid.any():
                return None  # nothing here where pixels are missing: skip the other bands
            data[positions] = part
        return data
    finally:
        discard(reads)


@contextmanager
def _asset_errors(item: ItemRef, asset: str, href: str) -> Iterator[None]:
    """Any failure to open or read a file becomes an AssetReadError naming it; the
    file leaves the cache so that a repaired one is reopened next time."""
    try:
        yield
    except SigningError as exc:
        raise AssetReadError(item.id, asset, href, str(exc)) from None
    except ClusterError:
        raise
    except Exception as exc:
        causes = (exc, exc.__cause__ or exc.__context__)  # rasterio puts GDAL's words in a cause
        said = [str(c).strip().rstrip(".") for c in causes if c is not None]
        reason = ": ".join(m for m in said if m and "previous exception" not in m) or repr(exc)
        # GDAL's words may name a signed URL: the cause then stays behind, its words too.
        raise AssetReadError(item.id, asset, href, reason) from (
            exc if redact(reason) == reason else None
        )
