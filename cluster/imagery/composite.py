"""Composites of all clear observations per pixel, and stacks of them over sub-periods.

The run's tiles and the training chips both come through :func:`read_stack`,
so a model is trained on pixels made exactly as it will be given them.

A composite is streamed over items: each item's quality mask is read once
(a bool per pixel), then band by band every item's values are gathered,
reduced and dropped, so at most one band of all dates is held (40 dates of a
576-px window: 53 MB, not the 530 MB of ten bands), and the next values on
their way (at most ``_AHEAD_BYTES``). All masks and the first band are asked
for at once, so a composite of 12 dates waits for a few round trips, not 60. An observation counts
for a band where the item's mask is clear and that band has a value; a pixel
with fewer than ``min_clear`` of them is nodata (NaN). Medians and
percentiles interpolate linearly between order statistics, as numpy's
``nanpercentile`` does.

A stack also says how many clear observations each pixel's input rests on
(``Stack.clear``), counted while compositing, so a map's quality layer costs
no second read: per layer the observations behind every band of the pixel
(the mosaic: 1 where an item filled it), summed over layers. A layer filled
from a neighbouring sub-period adds none of its own: its observations are
the neighbour's, already counted; ``Stack.filled`` flags those pixels.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from cluster.imagery.inflight import discard, submit
from cluster.imagery.reader import clear_on, read_band, read_window, window
from cluster.imagery.resample import Methods, Target
from cluster.imagery.stacitem import ItemRef
from cluster.imagery.temporal import TimeRecipe, items_within

__all__ = ["Stack", "composite_window", "read_stack"]

_NETWORK = 16  # up to this many dates a sorting network, above it numpy's sort
_AHEAD_BYTES = 32 * 2**20  # a composite's values read ahead, per tile in flight

Bounds = tuple[float, float, float, float]


@dataclass(frozen=True)
class Stack:
    """A window's model input and how complete it is."""

    data: np.ndarray  # float32 (bands x layers, h, w), layer-major; NaN: no input
    layer_items: tuple[tuple[ItemRef, ...], ...]  # the items each layer was made from
    gaps: np.ndarray  # bool (h, w): some layer had no clear value where another had one
    filled: np.ndarray  # bool (h, w): of those, pixels filled from a neighbouring layer
    clear: np.ndarray  # int32 (h, w): clear observations behind the pixel, summed over layers


def composite_window(
    items: Sequence[ItemRef],
    bounds: Bounds,
    shape: tuple[int, int],
    crs: str,
    recipe: TimeRecipe,
    *,
    n_bands: int | None = None,
    resampling: str = "bilinear",
    downsampling: str = "average",
    sources: np.ndarray | None = None,
    count: np.ndarray | None = None,
) -> np.ndarray:
    """float32 (n_bands, h, w) composite of ``items`` on the window, NaN where a pixel has
    too few clear observations; ``first`` is :func:`read_window`'s mosaic (``sources`` as
    there; composites set them to -1: no single item is the source). ``count``, an int
    array of ``shape``, is given each pixel's clear observations behind every band of
    the result (the least of its bands' counts; 0 where the result is nodata; the
    mosaic: 1 where an item filled the pixel), as the reduction counts them."""
    if recipe.compositing == "first":
        out = read_window(items, bounds, shape, crs, resampling, downsampling=downsampling,
                          n_bands=n_bands, sources=sources)  # fmt: skip
        if count is not None:
            count[...] = np.isfinite(out).all(axis=0)
        return out
    if sources is not None:
        sources[...] = -1
    target, methods, bands = window(items, bounds, shape, crs, resampling, downsampling, n_bands)
    reads = _BandReads(items, target, methods, bands)
    out = np.empty((bands, *target.shape), dtype=np.float32)
    least = np.full(target.shape, np.iinfo(np.int32).max, dtype=np.int32)
    for b in range(bands):
        if recipe.compositing == "mean":
            total = np.zeros(target.shape, dtype=np.float64)
            seen = np.zeros(target.shape, dtype=np.int32)
            for mask, values in reads.band(b):
                if values is not None:
                    ok = mask & ~np.isnan(values)
                    total += np.where(ok, values, 0.0)
                    seen += ok
            with np.errstate(invalid="ignore", divide="ignore"):
                out[b] = total / seen
        else:
            stack = np.full((reads.clear, *target.shape), np.nan, dtype=np.float32)
            for layer, (mask, values) in zip(stack, reads.band(b), strict=True):
                if values is not None:
                    np.copyto(layer, values, where=mask)
            q = 50.0 if recipe.compositing == "median" else recipe.percentile
            out[b], seen = _percentile(stack, q)
            del stack
        out[b][seen < recipe.min_clear] = np.nan
        np.minimum(least, seen, out=least)
    if count is not None:
        count[...] = np.where(np.isfinite(out).all(axis=0), least, 0)
    return out


class _BandReads:
    """A composite's reads, issued ahead in the order they are used: every item's
    mask and the first band of every item at once (one round trip for all dates),
    then, as each value is taken, the next read in line (the next band of the items
    with a clear pixel), so reads stay in flight while values are reduced. At most
    ``_AHEAD_BYTES`` of values are held or on their way (at least one item's band),
    and an item the masks rule out is never waited for nor can it fail the tile."""

    def __init__(self, items: Sequence[ItemRef], target: Target, methods: Methods, n: int) -> None:
        self.target, self.methods = target, methods
        self.clears = [clear_on(item) for item in items]  # each item's mask, kept for its bands
        masks = [submit(_mask_href(i), c, target) for i, c in zip(items, self.clears, strict=True)]
        self.ahead = max(1, min(len(items), _AHEAD_BYTES // (4 * math.prod(target.shape))))
        self.items = list(items)
        self.line = deque((b, i) for b in range(n) for i in range(len(items)))
        self.issued: dict[tuple[int, int], Future[np.ndarray | None]] = {}
        self._top_up()
        try:
            self.masks = {i: m for i, f in enumerate(masks) if (m := f.result()).any()}
        except BaseException:
            discard([*masks, *self.issued.values()])
            raise
        ruled_out = [key for key in self.issued if key[1] not in self.masks]
        discard([self.issued.pop(key) for key in ruled_out])
        self.line = deque(key for key in self.line if key[1] in self.masks)
        self.clear = len(self.masks)
        self._top_up()

    def _top_up(self) -> None:
        while self.line and len(self.issued) < self.ahead:
            b, i = key = self.line.popleft()
            item = self.items[i]
            self.issued[key] = submit(
                item.bands[b].href, read_band, item, b, self.target, self.methods, self.clears[i]
            )

    def band(self, b: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Each clear item's mask and band ``b`` (None: the window misses its file)."""
        for i, mask in self.masks.items():
            future = self.issued.pop((b, i))
            self._top_up()
            try:
                values = future.result()
            except BaseException:
                discard(list(self.issued.values()))
                self.issued.clear()
                raise
            del future
            yield mask, values


def read_stack(
    items: Sequence[ItemRef],
    bounds: Bounds,
    shape: tuple[int, int],
    crs: str,
    recipe: TimeRecipe,
    year: int | None,
    *,
    n_bands: int,
    sources: np.ndarray | None = None,
) -> Stack:
    """The recipe's layers of the window, stacked: one composite per sub-period of the
    ``items`` acquired in it (``year`` places relative sub-periods). ``sources`` is
    filled only for a single ``first`` layer, where each pixel has one item."""
    layers, picked = [], []
    single = len(recipe.windows(year)) == 1
    clear, count = np.zeros(shape, dtype=np.int32), np.empty(shape, dtype=np.int32)
    for when in recipe.windows(year):
        chosen = items_within(items, when)
        picked.append(tuple(chosen))
        layers.append(composite_window(chosen, bounds, shape, crs, recipe, n_bands=n_bands,
                                       sources=sources if single else None,
                                       count=count))  # fmt: skip
        clear += count  # a layer's own observations: one filled below adds none
    if sources is not None and not single:
        sources[...] = -1
    missing = np.stack([np.isnan(layer).any(axis=0) for layer in layers])
    gaps = missing.any(axis=0) & ~missing.all(axis=0)
    filled = np.zeros_like(gaps)
    if recipe.fill == "neighbour" and gaps.any():
        originals = [layer.copy() for layer in layers]
        for p, layer in enumerate(layers):
            for q in _neighbours(p, len(layers)):
                take = np.isnan(layer).any(axis=0) & ~missing[q]
                if not take.any():
                    continue
                layer[:, take] = originals[q][:, take]
                filled |= take
    return Stack(np.concatenate(layers), tuple(picked), gaps, filled & gaps, clear)


def _mask_href(item: ItemRef) -> str:
    return item.mask.href if item.mask is not None else item.bands[0].href


def _neighbours(p: int, n: int) -> list[int]:
    """Other layers by distance from ``p``, the earlier first on a tie."""
    return sorted((q for q in range(n) if q != p), key=lambda q: (abs(q - p), q))


def _sort_network(stack: np.ndarray) -> None:
    """Sort along axis 0 in place by odd-even transposition: n passes of element-wise
    min/max over whole layers. For a few dates this beats ``ndarray.sort``, which sorts
    every pixel's column on its own (4 dates of a 320-px tile: 1 ms against 7 ms)."""
    low = np.empty_like(stack[0])
    n = stack.shape[0]
    for step in range(n):
        for i in range(step % 2, n - 1, 2):
            a, b = stack[i], stack[i + 1]
            np.minimum(a, b, out=low)
            np.maximum(a, b, out=b)
            a[...] = low


def _percentile(stack: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ``q``-th percentile over axis 0 ignoring NaN (linear between order
    statistics), and the count of values; sorts ``stack`` in place (NaN sort last)."""
    if stack.shape[0] == 0:
        return np.full(stack.shape[1:], np.nan, dtype=np.float32), np.zeros(stack.shape[1:], int)
    missing = np.isnan(stack)
    count = stack.shape[0] - missing.sum(axis=0)
    if stack.shape[0] <= _NETWORK:
        stack[missing] = np.inf  # sorts last, as NaN does in np.sort
        _sort_network(stack)
    else:
        stack.sort(axis=0)
    pos = (q / 100.0) * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    below = np.take_along_axis(stack, lo[None], axis=0)[0]
    above = np.take_along_axis(stack, hi[None], axis=0)[0]
    frac = (pos - lo).astype(np.float32)
    with np.errstate(invalid="ignore"):  # inf - inf where a pixel has no value: set below
        out = below + (above - below) * frac
    out[count == 0] = np.nan
    return out.astype(np.float32), count
