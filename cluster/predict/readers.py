"""Readers: a prediction actor's tiles read, checked and normalised, and its results
written, beside it.

A GPU eats tiles faster than one CPU thread reads them (the read is GDAL and
numpy, which hold the GIL in part), and faster than one process encodes and
writes its chunks, so each GPU actor has a pool of reader processes on its own
node, one per CPU it holds. The actor hands them tile ids; each writes a
tile's input into one of the actor's shared-memory slots (see
:mod:`cluster.predict.slots`; through Ray's node-local object store where
``/dev/shm`` has no room) and writes the maps the actor hands back. Imagery
never passes through the driver, and readers ask Ray for no CPUs of their
own: they use the ones their actor holds, and die with it (Ray ties an
actor's actors to its owner).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.errors import ClusterError
from cluster.imagery import inflight, throttle
from cluster.imagery.composite import Stack, read_stack
from cluster.predict.inputcheck import InputCheckError, check_tile
from cluster.predict.quality import tile_quality
from cluster.predict.setup import PredictorSetup, TileResult, open_catalog, read_card, time_recipe
from cluster.predict.slots import AttachedSlots, SlotSpec
from cluster.predict.store import TileStore
from cluster.storage.gdalenv import configure_gdal
from cluster.tiles.grid import Tile, region_mask
from cluster.tiles.region import load_region
from unet.checkpoint import ModelCard
from unet.data import normalize

log = logging.getLogger(__name__)
# Readers yield the CPUs to the model (on a CPU node: torch's threads, which stall
# all together when one is preempted; on a GPU node: the thread feeding the GPU).
# Reading ahead, they need no haste, only their share of the idle time.
READER_NICE = 10
# Tile-sized arrays (megabytes each, a dozen per read) from the heap and kept there:
# by default glibc maps and unmaps each one, and every 4 KiB of it faults again
# (1,700 faults per 512-px tile in a reader, about a third of its time in the kernel).
# Nor does numpy ask for huge pages for them: the request threads' malloc arenas
# give their heaps back and take them again, and each time the kernel zeroed 2 MiB
# pages anew (a quarter of a remote reader's time at 32 requests in flight; its
# mosaic at 50 ms went from 20 to 24 tiles/s without, a local one's stayed at 34).
TILE_WORKER_ENV = {
    "env_vars": {
        "MALLOC_MMAP_THRESHOLD_": str(64 * 2**20),
        "MALLOC_TRIM_THRESHOLD_": str(256 * 2**20),
        "NUMPY_MADVISE_HUGEPAGE": "0",
    }
}
# Neighbouring tiles in a row read by one reader (see ReaderPool._reader_of).
COLUMN_RUN = 4
# A tile's maps as stored: (tile id, classes, confidence, quality).
TileMap = tuple[str, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class TileInput:
    """A tile ready for the model, or why it is not (``x`` and ``keep`` None)."""

    result: TileResult
    x: np.ndarray | None = None  # float32 (channels, h, w): normalised, haloed, NaN -> 0
    keep: np.ndarray | None = None  # bool (tile, tile): core pixels with input, in the region
    quality: np.ndarray | None = None  # uint8 (2, tile, tile): cluster.predict.quality


class TileReader:
    """Reads tiles as the checkpoint's recipe makes them; a Ray actor in a
    :class:`ReaderPool`, or a plain object where the predictor reads itself."""

    def __init__(
        self,
        setup: PredictorSetup,
        card: ModelCard | None = None,
        nice: int = 0,
        slots: SlotSpec | None = None,
    ) -> None:
        if nice:
            os.nice(nice)
        configure_gdal()
        inflight.set_requests(setup.requests_in_flight, setup.handles_per_file)
        self.setup = setup
        self.card = card or read_card(setup.checkpoint)
        self.grid = setup.grid
        self.region = load_region(setup.region, self.grid.crs)
        self.catalog = open_catalog(setup, self.card, self.region)
        self.time = time_recipe(self.card, setup, setup.checkpoint)
        self.mean = np.asarray(self.card.mean, dtype=np.float32)
        self.std = np.asarray(self.card.std, dtype=np.float32)
        self._store: TileStore | None = None  # opened at the first write: the driver makes it
        self._store_lock = threading.Lock()
        # Tiles read at once: each waits on its files' round trips while others decode.
        self._tiles = ThreadPoolExecutor(
            setup.tiles_in_flight, "statemap-tile", initializer=inflight.enter_env
        )
        # The actor's input slots, mapped and touched now: each page a reader first
        # writes faults, and a short run would time it (1,300 faults a 512-px tile).
        self._slots = AttachedSlots(slots, touch=True) if slots else None

    def pid(self) -> int:
        return os.getpid()

    def stack(self, tile: Tile) -> Stack:
        """Haloed input of a tile as the checkpoint's recipe makes it, NaN where no item
        has a valid pixel; checked, item by item (or composite by composite), against
        the training statistics (InputCheckError)."""
        bounds = self.grid.tile_bounds(tile, halo=True)
        items = self.catalog.items_for(bounds)
        shape = self.grid.tile_shape(halo=True)
        sources = np.empty(shape, dtype=np.int16)
        stack = read_stack(items, bounds, shape, self.grid.crs, self.time, self.setup.year,
                           n_bands=len(self.card.bands), sources=sources)  # fmt: skip
        problem = check_tile(stack, sources, self.card, self.setup.checkpoint, self.time)
        if problem is not None:
            if not self.setup.accept_input_shift:
                raise InputCheckError(problem)
            log.warning("tile %s: %s", tile.id, problem)
        return stack

    def read(self, tile_id: str) -> TileInput:
        """The tile's model input and which of its pixels to map; a tile that cannot be
        read fails alone, one whose inputs look wrong stops the run (``fatal``)."""
        start = time.perf_counter()
        try:
            tile = Tile.parse(tile_id)
            stack = self.stack(tile)
        except InputCheckError as exc:
            return TileInput(TileResult(tile_id, False, f"tile {tile_id}: {exc}", fatal=True,
                                        **throttle.take()))  # fmt: skip
        except ClusterError as exc:
            return TileInput(TileResult(tile_id, False, f"tile {tile_id}: {exc}",
                                        **throttle.take()))  # fmt: skip
        h, size = self.grid.halo, self.grid.tile_size
        core = (slice(h, h + size), slice(h, h + size))
        inside = region_mask(self.grid, tile, self.region)
        keep = np.isfinite(stack.data[:, *core]).all(axis=0) & inside
        gap, filled = 0, 0
        if stack.gaps.any():  # mapped pixels left nodata for want of a sub-period, and filled
            gaps, fills = (a[core] & inside for a in (stack.gaps, stack.filled))
            gap, filled = int((gaps & ~fills).sum()), int(fills.sum())
        quality = tile_quality(stack.clear[core], stack.filled[core], keep)
        x = normalize(stack.data, self.mean, self.std)
        result = TileResult(tile_id, True, read_s=time.perf_counter() - start,
                            gap_px=gap, filled_px=filled, **throttle.take())  # fmt: skip
        return TileInput(result, x, keep, quality)

    def read_many(self, tile_ids: Sequence[str]) -> list[TileInput]:
        """:meth:`read` of each tile, ``setup.tiles_in_flight`` of them at once; calls
        made at once (a threaded actor's) share that bound."""
        if len(tile_ids) == 1:
            return [self.read(tile_ids[0])]
        return list(self._tiles.map(self.read, tile_ids))

    def read_into(
        self, tile_ids: Sequence[str], slots: Sequence[int]
    ) -> list[tuple[TileResult, bool]]:
        """:meth:`read` of each tile, its input written into the actor's slot instead of
        returned; whether there is one (else the slot is left as it was)."""
        if self._slots is None:
            raise ClusterError("read_into on a reader started without its actor's slots")
        into = self._slots

        def read(tile_id: str, slot: int) -> tuple[TileResult, bool]:
            tile_input = self.read(tile_id)
            if tile_input.x is not None:
                into.x[slot] = tile_input.x
                into.keep[slot] = tile_input.keep
                into.quality[slot] = tile_input.quality
            return tile_input.result, tile_input.x is not None

        return list(self._tiles.map(read, tile_ids, slots))

    def write(
        self, tile_id: str, classes: np.ndarray, confidence: np.ndarray, quality: np.ndarray
    ) -> None:
        """Write a tile's class map, confidence and quality (uint8, nodata already set)
        into its own chunks: no other tile's writer touches them."""
        with self._store_lock:
            if self._store is None:
                self._store = TileStore.open(self.setup.store, writable=True)
        self._store.write_tile(Tile.parse(tile_id), classes, confidence, quality)

    def write_many(self, maps: Sequence[TileMap]) -> None:
        for tile_map in maps:
            self.write(*tile_map)


def cpus_per_gpu() -> int:
    """This node's CPUs over its GPUs (at least 1): the readers a GPU actor here needs
    even when it was asked for fewer CPUs (an autoscaled node, unknown when asked)."""
    here = ray.get_runtime_context().get_node_id()
    node = next(n["Resources"] for n in ray.nodes() if n["NodeID"] == here)
    return max(int(node.get("CPU", 1) // max(node.get("GPU", 1), 1)), 1)


class ReaderPool:
    """``n`` :class:`TileReader` actors on the calling actor's node, each with its columns.

    Each reader is one process taking the calls of all the batches its actor
    holds at once (a threaded actor), reading up to ``setup.tiles_in_flight``
    of their tiles together, so tiles submitted ahead are read while the model
    runs and while other tiles wait for their files; how far ahead is up to the
    caller (the driver bounds the batches an actor holds by a memory budget).
    A reader that dies alone is restarted and its calls retried (a read has no
    side effects, a rewritten tile is byte-identical); one whose node is lost
    takes its actor with it anyway.
    """

    def __init__(
        self, setup: PredictorSetup, n: int, card: ModelCard, slots: SlotSpec | None = None
    ) -> None:
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        remote = ray.remote(num_cpus=0, max_restarts=3, max_task_retries=3)(TileReader).options(
            # every batch the actor holds reads at once, and writes beside them
            scheduling_strategy=here, runtime_env=TILE_WORKER_ENV,
            max_concurrency=setup.queued + 1,
        )  # fmt: skip
        self.readers = [remote.remote(setup, card, READER_NICE, slots) for _ in range(max(n, 1))]
        ray.get([reader.pid.remote() for reader in self.readers])  # started: time tiles only

    def _reader_of(self, tile_id: str) -> int:
        """A tile's reader, by its column: runs of ``COLUMN_RUN`` neighbouring tiles of
        a row, and the same columns of the rows above, go to the same reader, whose
        GDAL block cache then holds the blocks their halos share. Dealt out tile by
        tile, each reader decoded about twice the blocks (measured: 55 against 33 ms
        per 512-px tile on the sample)."""
        return Tile.parse(tile_id).col // COLUMN_RUN % len(self.readers)

    def _each(self, method: str, tile_ids: Sequence[str], *args: Sequence[Any]) -> list[Any]:
        """``method`` of each tile's reader over its tiles (and their ``args``), one call
        per reader (a Ray call costs about a millisecond of the actor's time, more than
        writing a tile), results in the order of ``tile_ids``."""
        groups: dict[int, list[int]] = {}
        for i, tile_id in enumerate(tile_ids):
            groups.setdefault(self._reader_of(tile_id), []).append(i)
        calls = {
            k: getattr(self.readers[k], method).remote(*([a[i] for i in idx] for a in args))
            for k, idx in groups.items()
        }
        out: list[Any] = [None] * len(tile_ids)
        for k, idx in groups.items():
            for i, value in zip(idx, ray.get(calls[k]) or [None] * len(idx), strict=True):
                out[i] = value
        return out

    def read(self, tile_ids: Sequence[str]) -> list[TileInput]:
        """Each tile's :class:`TileInput`, read by the reader of its columns."""
        return self._each("read_many", tile_ids, tile_ids)

    def read_into(
        self, tile_ids: Sequence[str], slots: Sequence[int]
    ) -> list[tuple[TileResult, bool]]:
        """Each tile's result, its input (if any) written into its slot (a pool started
        with the actor's slots)."""
        return self._each("read_into", tile_ids, tile_ids, slots)

    def write(self, maps: Sequence[TileMap]) -> None:
        """Write (tile id, classes, confidence, quality) of each tile, by the reader of its columns
        (whose share of the work is even); returns once all are written."""
        self._each("write_many", [m[0] for m in maps], maps)

    def close(self) -> None:
        for reader in self.readers:
            ray.kill(reader)
