"""Decoded COG blocks shared by every read of a process, whichever handle reads.

A tile's window with its halo reaches into the blocks of its neighbours: a
576-px window over 256-px blocks decodes 9 to 16 blocks to use the pixels of
about 5, and the neighbours decode the shared ones again. GDAL's block cache
would keep them, but it is per open dataset, and the request threads hold
several handles of each file (``cluster.imagery.inflight``) so that tiles in
flight do not queue on one: each handle fetched and decoded the shared blocks
anew (measured on the sample's mosaic: 13.4 requests a tile with two handles a
file, 8.3 with one). So windowed reads go through one cache per process, of
whole blocks keyed by file and band: a block is fetched and decoded once, by
whichever thread needs it first, while the others that need it wait for it
instead of fetching it too. The values are the file's own (the same decoded
pixels GDAL would return), so nothing downstream changes, byte for byte.
A read that must fetch also fetches the window to its east in the same
request (the row's next tile, read next): one request where there were two,
at the price that a broken block there fails the read that fetched it.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import Future
from typing import Any

import numpy as np
from rasterio.io import DatasetReader
from rasterio.windows import Window

__all__ = ["DEFAULT_BYTES", "BlockCache", "CachedReads", "blocks"]

# Decoded pixels kept per process: the blocks of the tiles in flight and of those
# just read (a mosaic's tile holds ~17 MB of them), so a tile finds the blocks its
# halo shares with its neighbours in the row.
DEFAULT_BYTES = 128 * 2**20
_MIN_CELL = 256  # px: striped or small-block files are cached in cells of several blocks

Key = tuple[Hashable, int, int, int]  # file, band index, cell row, cell column
Cells = dict[Key, np.ndarray]
Claims = dict[Key, Future[np.ndarray]]


class BlockCache:
    """A bounded LRU of decoded cells (whole blocks, or runs of them) of many files."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._cells: OrderedDict[Key, np.ndarray] = OrderedDict()
        self._pending: dict[Key, Future[np.ndarray]] = {}
        self._bytes = 0
        self.hits = self.misses = 0
        self.ahead = True

    def read(
        self, src: DatasetReader, file: Hashable, indexes: list[int], win: Window
    ) -> np.ndarray:
        """``src.read(indexes, window=win)``, from cached cells where there are, reading
        the missing ones (their bounding window, in one read) through ``src``."""
        ch, cw = cell_shape(src)
        r0, c0 = int(win.row_off), int(win.col_off)
        r1, c1 = r0 + int(win.height), c0 + int(win.width)
        rows, cols = range(r0 // ch, -(-r1 // ch)), range(c0 // cw, -(-c1 // cw))
        wanted = [(file, i, r, c) for i in indexes for r in rows for c in cols]
        found, waiting, mine = self._claim(wanted)
        if mine and self.ahead:
            # The window to the east, in the same request: the next tile of the row.
            east = range(cols.stop, min(cols.stop + len(cols), -(-src.width // cw)))
            more = [(file, i, r, c) for i in indexes for r in rows for c in east]
            mine |= self._claim(more, take=False)[2]
        if mine:
            self._fetch(src, mine, (ch, cw))
        for key, future in (mine | waiting).items():
            found[key] = future.result()  # another thread's read: its failure is ours too
        dtype = np.result_type(*(found[(file, i, rows[0], cols[0])] for i in indexes))
        out = np.empty((len(indexes), r1 - r0, c1 - c0), dtype=dtype)
        for k, i in enumerate(indexes):
            for r in rows:
                for c in cols:
                    cell = found[(file, i, r, c)]
                    top, left = r * ch, c * cw
                    a, b = max(r0, top), min(r1, top + cell.shape[0])
                    e, f = max(c0, left), min(c1, left + cell.shape[1])
                    part = cell[a - top : b - top, e - left : f - left]
                    out[k, a - r0 : b - r0, e - c0 : f - c0] = part
        return out

    def clear(self) -> None:
        with self._lock:
            self._cells.clear()
            self._bytes = 0

    def _claim(self, wanted: list[Key], take: bool = True) -> tuple[Cells, Claims, Claims]:
        """Split ``wanted`` into cells held, cells another thread is reading (their
        futures) and cells this thread is to read (futures it must resolve)."""
        found: Cells = {}
        waiting: Claims = {}
        mine: Claims = {}
        with self._lock:
            for key in wanted:
                if (cell := self._cells.get(key)) is not None:
                    if take:
                        self._cells.move_to_end(key)
                        found[key] = cell
                elif (future := self._pending.get(key)) is not None:
                    waiting[key] = future
                else:
                    mine[key] = self._pending[key] = Future()
            if take:  # a read-ahead's cells are not this read's hits or misses
                self.hits += len(found) + len(waiting)
                self.misses += len(mine)
        return found, waiting, mine

    def _fetch(self, src: DatasetReader, mine: Claims, cell: tuple[int, int]) -> None:
        """Read the claimed cells (their bounding window) and hand them out and keep them;
        on failure, every thread waiting for them gets the error and nothing is kept."""
        (ch, cw), keys = cell, list(mine)
        indexes = sorted({k[1] for k in keys})
        rows, cols = [k[2] for k in keys], [k[3] for k in keys]
        top, left = min(rows) * ch, min(cols) * cw
        bottom, right = min(src.height, (max(rows) + 1) * ch), min(src.width, (max(cols) + 1) * cw)
        try:
            data = src.read(indexes, window=Window(left, top, right - left, bottom - top))
        except BaseException as exc:
            with self._lock:
                for key in keys:
                    del self._pending[key]
            for future in mine.values():
                future.set_exception(exc)
            raise
        cells = {}
        for key in keys:
            _, i, r, c = key
            y, x = r * ch - top, c * cw - left
            cells[key] = data[indexes.index(i), y : y + ch, x : x + cw].copy()
        with self._lock:
            for key, value in cells.items():
                del self._pending[key]
                self._cells[key] = value
                self._bytes += value.nbytes
            while self._bytes > self.max_bytes and self._cells:
                self._bytes -= self._cells.popitem(last=False)[1].nbytes
        for key, future in mine.items():
            future.set_result(cells[key])


def cell_shape(src: DatasetReader) -> tuple[int, int]:
    """Cells of whole blocks, at least ``_MIN_CELL`` px a side (a striped file's
    one-row strips would otherwise be cells of one row)."""
    bh, bw = src.block_shapes[0]
    return bh * math.ceil(_MIN_CELL / bh), bw * math.ceil(_MIN_CELL / bw)


class CachedReads:
    """A dataset whose windowed reads go through the process's :class:`BlockCache`;
    everything else is the dataset's own."""

    def __init__(self, src: DatasetReader, file: Hashable, cache: BlockCache) -> None:
        self._src, self._file, self._cache = src, file, cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self._src, name)

    def read(self, indexes: list[int], window: Window | None = None, **kwargs: Any) -> np.ndarray:
        if window is None or kwargs:  # a whole file, an overview: the dataset's own read
            return self._src.read(indexes, window=window, **kwargs)
        w = window
        inside = (
            w.col_off >= 0 and w.row_off >= 0
            and w.col_off + w.width <= self._src.width and w.row_off + w.height <= self._src.height
            and all(float(v).is_integer() for v in (w.col_off, w.row_off, w.width, w.height))
        )  # fmt: skip
        if not inside:
            return self._src.read(indexes, window=window)
        return self._cache.read(self._src, self._file, list(indexes), window)


blocks = BlockCache()
