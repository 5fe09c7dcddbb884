"""Drawing a stratified random sample from a stratum raster too big for memory.

A state-wide map has billions of pixels; the sample needs a few hundred per
stratum, each pixel of a stratum equally likely (the estimators in
``cluster.accuracy.estimators`` weight unit u by N_h / n_h, which is right only
then). So the raster is read twice, chunk by chunk, never whole:

1. Count the pixels of each stratum (N_h), chunk by chunk.
2. Draw, for each stratum, n_h distinct ranks uniformly from 0 .. N_h - 1
   (the rank of a pixel is its position among the stratum's pixels in chunk
   order, then row-major order within the chunk).
3. Read the chunks again and turn each rank into a (row, col): a running count
   of each stratum's pixels says which chunk holds rank r, and the
   (r - offset)-th pixel of the stratum in that chunk is the one.

Memory is one chunk plus the sample. The draw is deterministic for a seed and
a chunk order: each stratum gets its own random stream, keyed by the seed and
the stratum's code, so changing one stratum's n_h leaves the others' points
as they were. ``chunks`` is a function returning a fresh iterator of
(row_off, col_off, array) each time it is called, in the same order, covering
each pixel once; pass 2 checks that it saw the counts of pass 1.

Strata are integer codes; ``cluster.accuracy.strata.ClassConfidenceStrata``
makes them from a class map and its confidence (strata = class x confidence
band, Stehman 2014's case of strata that are not the map classes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from cluster.accuracy.errors import AccuracyError

__all__ = [
    "Chunk",
    "Chunks",
    "SamplePoint",
    "StratifiedSample",
    "count_strata",
    "draw_ranks",
    "draw_stratified_sample",
    "locate_ranks",
]

Chunk = tuple[int, int, np.ndarray]  # row_off, col_off, 2-D integer stratum codes
Chunks = Callable[[], Iterable[Chunk]]
Allocation = Mapping[int, int] | Callable[[Mapping[int, int]], Mapping[int, int]]
_BINCOUNT_MAX = 1 << 16  # codes below this are counted with bincount (fast), else unique


@dataclass(frozen=True)
class SamplePoint:
    """One sample pixel: its position in the raster and its stratum's N_h and n_h."""

    row: int
    col: int
    stratum: int
    stratum_pixels: int  # N_h
    stratum_sample: int  # n_h


@dataclass(frozen=True)
class StratifiedSample:
    """A stratified random sample: points ordered by stratum code, then rank."""

    points: tuple[SamplePoint, ...]
    stratum_sizes: Mapping[int, int]  # N_h, pixels per stratum
    sample_sizes: Mapping[int, int]  # n_h
    stratum_names: Mapping[int, str]
    seed: int

    @property
    def rows(self) -> np.ndarray:
        return np.array([p.row for p in self.points], dtype=np.int64)

    @property
    def cols(self) -> np.ndarray:
        return np.array([p.col for p in self.points], dtype=np.int64)

    @property
    def strata(self) -> np.ndarray:
        return np.array([p.stratum for p in self.points], dtype=np.int64)


def draw_stratified_sample(
    chunks: Chunks,
    allocation: Allocation,
    *,
    seed: int,
    nodata: int | None = None,
    stratum_names: Mapping[int, str] | None = None,
) -> StratifiedSample:
    """Pass 1 (count), draw, pass 2 (locate): a stratified random sample of the raster.

    ``allocation`` maps each stratum code to n_h, or is a function of the
    counted stratum sizes that returns that mapping (such as
    ``lambda sizes: allocate_proportional(500, sizes, minimum=50)``). Every
    stratum present must be given an n_h (0 leaves it unsampled). ``nodata``
    pixels belong to no stratum.
    """
    sizes = count_strata(chunks, nodata=nodata)
    wanted = allocation(MappingProxyType(sizes)) if callable(allocation) else allocation
    ranks = draw_ranks(sizes, wanted, seed)
    found = locate_ranks(chunks, ranks, sizes, nodata=nodata)
    points = tuple(
        SamplePoint(int(row), int(col), h, sizes[h], len(ranks[h]))
        for h in sorted(ranks)
        for row, col in zip(*found[h], strict=True)
    )
    names = {h: (stratum_names or {}).get(h, str(h)) for h in sorted(sizes)}
    return StratifiedSample(
        points=points,
        stratum_sizes=MappingProxyType(dict(sorted(sizes.items()))),
        sample_sizes=MappingProxyType({h: len(ranks[h]) for h in sorted(ranks)}),
        stratum_names=MappingProxyType(names),
        seed=seed,
    )


def count_strata(chunks: Chunks, *, nodata: int | None = None) -> dict[int, int]:
    """Pass 1: pixels per stratum code (N_h), nodata left out, chunk by chunk."""
    sizes: dict[int, int] = {}
    for row_off, col_off, array in chunks():
        flat = _checked(row_off, col_off, array)
        for code, count in zip(*_chunk_counts(flat, nodata), strict=True):
            sizes[code] = sizes.get(code, 0) + count
    return sizes


def draw_ranks(
    stratum_sizes: Mapping[int, int], sample_sizes: Mapping[int, int], seed: int
) -> dict[int, np.ndarray]:
    """n_h distinct ranks per stratum, uniform on 0 .. N_h - 1, sorted.

    Each stratum's stream is ``SeedSequence(seed, spawn_key=...)`` keyed by the
    stratum code, so a stratum's ranks depend only on the seed, its code, N_h
    and n_h.
    """
    if not (isinstance(seed, int | np.integer) and seed >= 0):
        raise AccuracyError(f"seed must be a whole number >= 0, not {seed!r}")
    missing = sorted(set(stratum_sizes) - set(sample_sizes))
    if missing:
        h = missing[0]
        raise AccuracyError(
            f"stratum {h} ({stratum_sizes[h]} pixels) has no sample size in the allocation; "
            "give it one (0 leaves it unsampled, and then its area cannot be estimated)"
        )
    ranks = {}
    for h in sorted(sample_sizes):
        n_h, size = sample_sizes[h], stratum_sizes.get(h, 0)
        if not (isinstance(n_h, int | np.integer) and n_h >= 0):
            raise AccuracyError(f"stratum {h}: sample size {n_h!r} is not a whole number >= 0")
        if n_h > size:
            raise AccuracyError(
                f"stratum {h} has {size} pixels but the allocation asks for {n_h} sample units; "
                "lower its n_h (or check the stratum code)"
            )
        key = (0, int(h)) if h >= 0 else (1, -int(h))
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))
        ranks[int(h)] = _distinct_ranks(rng, size, int(n_h))
    return ranks


def locate_ranks(
    chunks: Chunks,
    ranks: Mapping[int, np.ndarray],
    stratum_sizes: Mapping[int, int],
    *,
    nodata: int | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Pass 2: each stratum's sorted ranks as (rows, cols), in rank order."""
    seen = dict.fromkeys(stratum_sizes, 0)
    rows: dict[int, list[np.ndarray]] = {h: [] for h in ranks}
    cols: dict[int, list[np.ndarray]] = {h: [] for h in ranks}
    for row_off, col_off, array in chunks():
        flat = _checked(row_off, col_off, array)
        width = np.asarray(array).shape[1]
        for code, count in zip(*_chunk_counts(flat, nodata), strict=True):
            if code not in seen:
                raise AccuracyError(
                    f"chunk at row {row_off}, col {col_off} holds stratum {code}, which the "
                    "first pass did not see; chunks() must yield the same chunks in the same "
                    "order every time it is called"
                )
            start = seen[code]
            wanted = ranks.get(code)
            if wanted is not None and len(wanted):
                lo, hi = np.searchsorted(wanted, [start, start + count])
                if hi > lo:
                    where = np.flatnonzero(flat == code)[wanted[lo:hi] - start]
                    rows[code].append(row_off + where // width)
                    cols[code].append(col_off + where % width)
            seen[code] = start + count
    changed = [h for h, count in seen.items() if count != stratum_sizes[h]]
    if changed:
        h = changed[0]
        raise AccuracyError(
            f"stratum {h}: {seen[h]} pixels on the second pass, {stratum_sizes[h]} on the "
            "first; chunks() must yield the same chunks in the same order every time"
        )
    return {
        h: (
            np.concatenate(rows[h]) if rows[h] else np.empty(0, np.int64),
            np.concatenate(cols[h]) if cols[h] else np.empty(0, np.int64),
        )
        for h in ranks
    }


def _distinct_ranks(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """``count`` distinct integers uniform on 0 .. size - 1, sorted, in O(count) memory.

    The first ``count`` distinct values of an i.i.d. uniform sequence are a
    uniformly random subset (the sequence is exchangeable); the sequence is
    drawn in batches and its first occurrences kept in order. When the sample
    is a large part of the stratum, a permutation is as cheap and never
    needs a second batch.
    """
    if count == 0:
        return np.empty(0, np.int64)
    if size <= 4 * count:
        return np.sort(rng.permutation(size)[:count]).astype(np.int64)
    picked = np.empty(0, np.int64)
    while len(picked) < count:
        need = count - len(picked)
        sequence = np.concatenate([picked, rng.integers(0, size, need + need // 4 + 8)])
        _, first = np.unique(sequence, return_index=True)
        picked = sequence[np.sort(first)][:count]
    return np.sort(picked)


def _checked(row_off: int, col_off: int, array: np.ndarray) -> np.ndarray:
    """The chunk's codes, flat (row-major), after checking it is a 2-D integer array."""
    array = np.asarray(array)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise AccuracyError(
            f"chunk at row {row_off}, col {col_off} is a {array.ndim}-D {array.dtype} array; "
            "give stratum codes as a 2-D integer array (classes and confidence go through "
            "ClassConfidenceStrata first)"
        )
    if row_off < 0 or col_off < 0:
        raise AccuracyError(
            f"chunk at row {row_off}, col {col_off}: offsets must be >= 0 (pixel offsets of "
            "the chunk's top-left corner in the raster)"
        )
    return array.ravel()


def _chunk_counts(flat: np.ndarray, nodata: int | None) -> tuple[list[int], list[int]]:
    """Stratum codes present in a chunk and their pixel counts, nodata left out."""
    values = flat if nodata is None else flat[flat != nodata]
    if values.size == 0:
        return [], []
    if values.min() >= 0 and values.max() < _BINCOUNT_MAX:
        counts = np.bincount(values.astype(np.intp, copy=False))
        codes = np.flatnonzero(counts)
        return codes.tolist(), counts[codes].tolist()
    codes, counts = np.unique(values, return_counts=True)
    return codes.tolist(), counts.tolist()
