"""The prediction actor: one U-Net replica, fed tile ids, writing its own chunks.

Only tile ids and URIs reach an actor; it reads its weights itself, and its
imagery comes from its pool of readers on the same node (``setup.readers``;
see :mod:`cluster.predict.readers`), so the driver never holds either. Calls
run in a few threads (``max_concurrency``): each hands its batch's tiles to
the readers at once, so the next batches are being read while one is on the
model and the last one is written, and a lock keeps the model to one batch at
a time. Every batch is padded to the same shape, so a tile's result does not
depend on which tiles share its batch.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property

import numpy as np
import torch

from cluster.errors import ClusterError
from cluster.predict.readers import ReaderPool, TileReader, cpus_per_gpu
from cluster.predict.setup import NODATA, PredictorSetup, TileResult, checkpoint_bytes
from cluster.predict.slots import Slots, SlotSpec, shared_memory_fits
from cluster.predict.store import TileStore
from cluster.storage.gdalenv import configure_gdal
from unet.checkpoint import parse_checkpoint
from unet.model import autocast, pick_device, prepare_for_device


def confidence_to_uint8(p: np.ndarray) -> np.ndarray:
    """Winning-class probability in [0, 1] as 0-254; 255 stays nodata."""
    return np.rint(np.clip(p, 0.0, 1.0) * 254.0).astype(np.uint8)


def _masked(
    tile_id: str, keep: np.ndarray, cls: np.ndarray, conf: np.ndarray
) -> tuple[str, np.ndarray, np.ndarray]:
    """(tile id, classes, confidence) as stored: nodata where the tile has no input or
    lies outside the region."""
    classes = np.where(keep, cls, NODATA).astype(np.uint8)
    confidence = np.where(keep, confidence_to_uint8(conf), NODATA).astype(np.uint8)
    return tile_id, classes, confidence


class Predictor:
    """Plain class, wrapped as a Ray actor by ``cluster.predict.driver``; usable
    without Ray in tests and benchmarks (``setup.readers == 0``: it reads itself)."""

    def __init__(self, setup: PredictorSetup) -> None:
        configure_gdal()
        if setup.threads:
            torch.set_num_threads(setup.threads)
        self.setup = setup
        self.device = pick_device(setup.device)
        model, self.card = parse_checkpoint(checkpoint_bytes(setup.checkpoint), setup.checkpoint)
        self.model = prepare_for_device(model, self.device).eval()
        self.grid = setup.grid
        TileStore.open(setup.store, writable=True)  # refused here, not at the first write
        readers = setup.readers
        if readers and self.device.type == "cuda":
            readers = max(readers, cpus_per_gpu())
        self.pool = ReaderPool(setup, readers, self.card) if readers else None
        self.slots: Slots | None = None  # where the readers leave inputs, if /dev/shm has room
        if self.pool is not None:
            side = self.grid.tile_size + 2 * self.grid.halo
            x_shape = (self.card.config.in_bands, side, side)
            keep_shape = (self.grid.tile_size, self.grid.tile_size)
            n = setup.queued * setup.batch_size
            if shared_memory_fits(SlotSpec("", n, x_shape, keep_shape).nbytes):
                self.slots = Slots(n, x_shape, keep_shape)
        self._model_lock = threading.Lock()

    @cached_property
    def reader(self) -> TileReader:
        """Reads in this process, where there is no pool (tests, benchmarks): a pool's
        actor need not open the catalog, which may hold a state's worth of items."""
        return TileReader(self.setup, self.card)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        """Stop the readers and free the slots (killed instead, the actor's resource
        tracker unlinks them)."""
        if self.pool is not None:
            self.pool.close()
        if self.slots is not None:
            self.slots.close()
            self.slots = None

    def predict(self, tile_ids: list[str]) -> list[TileResult]:
        if len(tile_ids) > self.setup.batch_size:
            raise ClusterError(f"{len(tile_ids)} tiles sent for a batch of {self.setup.batch_size}")
        if self.slots is not None and self.pool is not None:
            taken = self.slots.take(len(tile_ids))
            try:
                got = self.pool.read_into(tile_ids, self.slots.spec, taken)
                results = [result for result, _ in got]
                x, keep = self.slots.x, self.slots.keep
                maps = self._map([(r.tile_id, x[s], keep[s]) for (r, has), s in zip(got, taken) if has])
            finally:  # copied into the batch and the maps: the slots are free again
                self.slots.give(taken)
        else:
            inputs = self.pool.read(tile_ids) if self.pool else [self.reader.read(t) for t in tile_ids]
            results = [i.result for i in inputs]
            maps = self._map([(i.result.tile_id, i.x, i.keep) for i in inputs if i.x is not None])
            del inputs  # their shared memory, free while writing
        if self.pool:
            self.pool.write(maps)
        else:
            for tile_map in maps:
                self.reader.write(*tile_map)
        return results

    def _map(
        self, ready: list[tuple[str, np.ndarray, np.ndarray]]
    ) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(tile id, classes, confidence) of each (tile id, input, keep), as stored."""
        if not ready:
            return []
        classes, confidence = self.infer([x for _, x, _ in ready])
        found = zip(ready, classes, confidence, strict=True)
        return [_masked(t, keep, c, p) for (t, _, keep), c, p in found]

    def infer(self, xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Classes and winning probabilities of normalised haloed inputs, halo cropped.
        Fixed batch shape: padded with zeros up to ``batch_size``. On CUDA the batch is
        assembled in pinned memory and copied without blocking."""
        h, size, n = self.grid.halo, self.grid.tile_size, len(xs)
        cuda = self.device.type == "cuda"
        batch = torch.zeros((self.setup.batch_size, *xs[0].shape), pin_memory=cuda)
        view = batch.numpy()
        for i, x in enumerate(xs):
            view[i] = x
        if self.setup.null_model:  # the feed benchmark: everything but the U-Net
            return np.zeros((n, size, size), np.uint8), np.zeros((n, size, size), np.float32)
        x = batch.to(self.device, non_blocking=True)
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._model_lock, torch.inference_mode(), autocast(self.device):
            probs = torch.softmax(self.model(x).float(), dim=1)[:, :, h : h + size, h : h + size]
            conf, cls = probs.max(dim=1)
            conf, cls = conf.cpu().numpy(), cls.to(torch.uint8).cpu().numpy()
        return cls[:n], conf[:n]
