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
from cluster.predict.readers import ReaderPool, TileMap, TileReader, cpus_per_gpu
from cluster.predict.setup import (
    NODATA,
    PredictorSetup,
    TileResult,
    checkpoint_bytes,
    input_shape,
    model_shape,
)
from cluster.predict.slots import Slots, SlotSpec, shared_memory_fits
from cluster.predict.store import TileStore
from cluster.storage.gdalenv import configure_gdal
from cluster.tiles.grid import Tile
from unet.checkpoint import parse_checkpoint
from unet.context import lattice_offset
from unet.fit import fit_batch
from unet.model import autocast, model_input, pick_device, prepare_for_device


def _masked(
    tile_id: str, keep: np.ndarray, quality: np.ndarray, cls: np.ndarray, conf: np.ndarray
) -> TileMap:
    """(tile id, classes, confidence, quality) as stored: nodata where the tile has no
    input or lies outside the region (set in place: the arrays are this tile's own;
    the reader set the quality's, from the same ``keep``)."""
    outside = ~keep
    cls[outside] = NODATA
    conf[outside] = NODATA
    return tile_id, cls, conf, quality


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
        if setup.compile:  # kernels fused for this GPU: minutes to compile, measured first
            self.model = torch.compile(self.model)
        # Batches go to the GPU on their own stream, beside the one the model runs on.
        cuda = self.device.type == "cuda"
        self._copies = torch.cuda.Stream(self.device) if cuda else None
        self.grid = setup.grid
        TileStore.open(setup.store, writable=True)  # refused here, not at the first write
        readers = setup.readers
        if readers and self.device.type == "cuda":
            readers = max(readers, cpus_per_gpu())
        self.slots: Slots | None = None  # where the readers leave inputs, if /dev/shm has room
        self.x_shape = input_shape(self.card, self.grid)
        if readers:
            keep_shape = self.grid.tile_shape()
            n = setup.queued * setup.batch_size
            if shared_memory_fits(SlotSpec("", n, self.x_shape, keep_shape).nbytes):
                self.slots = Slots(n, self.x_shape, keep_shape)
        spec = self.slots.spec if self.slots else None
        self.pool = ReaderPool(setup, readers, self.card, spec) if readers else None
        self._model_lock = threading.Lock()
        self._buffers = threading.local()  # each calling thread's batch buffer
        if not setup.null_model:
            self._warm_up()

    def _warm_up(self) -> None:
        """One batch of zeros through the model before the first tiles: the first
        pass pays for oneDNN's or cuDNN's kernel choices (and torch.compile's
        compiling), seconds that would otherwise hold up the first batch."""
        shape = model_shape(self.card, self.grid)
        x = model_input(torch.zeros((self.setup.batch_size, *shape)), self.device)
        with torch.inference_mode(), autocast(self.device):
            self.model(x).float().cpu()

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
                got = self.pool.read_into(tile_ids, taken)
                x, keep, quality = self.slots.x, self.slots.keep, self.slots.quality
                ready = [  # the quality copied out: the slot is another tile's once given back
                    (r.tile_id, x[s], keep[s], quality[s].copy())
                    for (r, has), s in zip(got, taken, strict=True)
                    if has
                ]
                maps = self._map(ready)
            finally:  # copied into the batch and the maps: the slots are free again
                self.slots.give(taken)
            results = [result for result, _ in got]
        else:
            if self.pool is not None:
                inputs = self.pool.read(tile_ids)
            else:
                inputs = self.reader.read_many(tile_ids)
            results = [i.result for i in inputs]
            maps = self._map(
                [(i.result.tile_id, i.x, i.keep, i.quality) for i in inputs if i.x is not None]
            )
            del inputs  # their shared memory, free while writing
        if self.pool is not None:
            self.pool.write(maps)
        else:
            for tile_map in maps:
                self.reader.write(*tile_map)
        return results

    def _map(self, ready: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> list[TileMap]:
        """(tile id, classes, confidence, quality) of each (tile id, input, keep, quality),
        as stored."""
        if not ready:
            return []
        tiles = [Tile.parse(t) for t, *_ in ready]
        classes, confidence = self.infer([x for _, x, *_ in ready], tiles)
        found = zip(ready, classes, confidence, strict=True)
        return [_masked(t, keep, qual, c, p) for (t, _, keep, qual), c, p in found]

    def _batch(self, shape: tuple[int, ...]) -> torch.Tensor:
        """This thread's batch buffer, kept: a fresh one per batch costs a fault per
        4 KiB page (a 4-tile batch of 576-px tiles is 21 MB); pinned on CUDA."""
        batch = getattr(self._buffers, "batch", None)
        if batch is None or tuple(batch.shape) != (self.setup.batch_size, *shape):
            cuda = self.device.type == "cuda"
            batch = torch.empty((self.setup.batch_size, *shape), pin_memory=cuda)
            self._buffers.batch = batch
        return batch

    def _to_device(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
        """The batch on the model's device, and on CUDA the event of its arrival:
        copied without blocking on the copy stream (outside the model's lock, so
        while another batch is on the GPU), in channels_last."""
        if self._copies is None:
            return batch, None
        with torch.cuda.stream(self._copies):
            x = model_input(batch, self.device)
            arrived = torch.cuda.Event()
            arrived.record(self._copies)
        return x, arrived

    def _handed_over(self, x: torch.Tensor, arrived: torch.cuda.Event | None) -> torch.Tensor:
        """``x`` usable on the model's stream (called under the model's lock, so that
        the wait is queued after the previous batch's kernels, not among them)."""
        if arrived is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(arrived)
            x.record_stream(compute)  # its memory is the compute stream's to free
        return x

    def infer(
        self, xs: list[np.ndarray], tiles: list[Tile]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Classes and confidence (uint8, 0-254: the winning probability) of the tiles'
        normalised haloed inputs, halo cropped. Each input is cut to the window the
        U-Net is given, which starts on its lattice in the CRS (``unet.context``): so
        a pixel's prediction does not depend on where tile borders fall. Fixed batch
        shape: padded with zeros up to ``batch_size``. On CUDA the batch is copied
        from pinned memory without blocking on a stream of its own, and only the
        uint8 maps come back."""
        h, size, n, m = self.grid.halo, self.grid.tile_size, len(xs), self.card.config.multiple
        shape = model_shape(self.card, self.grid)
        offsets = [lattice_offset(self.grid.first_pixel(t, halo=True), m) for t in tiles]
        batch = self._batch(shape)
        view = batch.numpy()
        for i, (x, (dy, dx)) in enumerate(zip(xs, offsets, strict=True)):
            view[i] = x[:, dy : dy + shape[1], dx : dx + shape[2]]
        view[n:] = 0
        if self.setup.null_model:  # the feed benchmark: everything but the U-Net
            zeros = np.zeros((2, n, size, size), np.uint8)
            return list(zeros[0]), list(zeros[1])
        x, arrived = self._to_device(batch)
        with self._model_lock, torch.inference_mode(), autocast(self.device):
            x = self._handed_over(x, arrived)
            logits = self.model(x).float()
            cores = [
                logits[i, :, h - dy : h - dy + size, h - dx : h - dx + size]
                for i, (dy, dx) in enumerate(offsets)
            ]
            conf, cls = torch.softmax(torch.stack(cores), dim=1).max(dim=1)
            conf = torch.round(conf.clamp(0.0, 1.0) * 254.0).to(torch.uint8)  # 255: nodata
            # .cpu() waits for the batch's copy too: the buffer is free once this returns
            conf, cls = conf.cpu().numpy(), cls.to(torch.uint8).cpu().numpy()
        return list(cls), list(conf)


def fit_batch_size(setup: PredictorSetup) -> int:
    """The batch size for ``run.batch_size: auto``: measured on this worker's device
    (see :func:`unet.fit.fit_batch`); the driver runs it once, on a GPU node."""
    device = pick_device(setup.device)
    model, card = parse_checkpoint(checkpoint_bytes(setup.checkpoint), setup.checkpoint)
    return fit_batch(
        prepare_for_device(model, device).eval(), model_shape(card, setup.grid), device
    )
