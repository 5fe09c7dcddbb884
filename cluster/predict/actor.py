"""The prediction actor: one U-Net replica, fed tile ids, writing its own chunks.

Only tile ids and URIs reach an actor; it reads its imagery and its weights
itself, so the driver never holds either. Calls run in a few threads
(``max_concurrency``): while one batch is on the model, the next is being
read and the previous one written, and a lock keeps the model to one batch
at a time. Every batch is padded to the same shape, so a tile's result does
not depend on which tiles share its batch.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from cluster.errors import ClusterError
from cluster.imagery.catalog import MOSAIC, Catalog
from cluster.imagery.composite import Stack, read_stack
from cluster.imagery.providers import NO_OVERRIDES, Overrides
from cluster.imagery.temporal import TimeRecipe, TimeSettings, run_recipe, run_year
from cluster.predict.inputcheck import InputCheckError, check_tile
from cluster.predict.store import TileStore
from cluster.storage import objstore
from cluster.storage.gdalenv import configure_gdal
from cluster.tiles.grid import Grid, Tile, region_mask
from cluster.tiles.region import Region, load_region
from unet.checkpoint import ModelCard, card_from_bytes, parse_checkpoint
from unet.data import normalize
from unet.model import autocast, pick_device, prepare_for_device

NODATA = 255
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictorSetup:
    """What an actor needs to start: URIs and small specs, no data."""

    checkpoint: str
    catalog: str
    collections: tuple[str, ...] | None
    start: str | None
    end: str | None
    max_cloud_cover: float | None
    region: str
    grid: Grid
    store: str
    batch_size: int
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 = all the actor's CPUs
    overrides: Overrides = NO_OVERRIDES  # the config's word on bands, units, masks
    accept_input_shift: bool = False  # input-check findings only logged, not refused
    time: TimeSettings = ()  # the config's time settings; the rest from the checkpoint

    @property
    def year(self) -> int | None:
        """The year a stack's relative sub-periods are placed in."""
        return run_year(self.start, self.end)


@dataclass(frozen=True)
class TileResult:
    tile_id: str
    ok: bool
    error: str = ""
    read_s: float = 0.0
    fatal: bool = False  # the inputs are wrong, not just this tile: stop the run
    gap_px: int = 0  # mapped pixels left nodata for want of a sub-period
    filled_px: int = 0  # mapped pixels with a sub-period filled from its neighbour


def confidence_to_uint8(p: np.ndarray) -> np.ndarray:
    """Winning-class probability in [0, 1] as 0-254; 255 stays nodata."""
    return np.rint(np.clip(p, 0.0, 1.0) * 254.0).astype(np.uint8)


def checkpoint_bytes(uri: str) -> bytes:
    """A checkpoint from a local path or s3://; each actor reads its own copy."""
    data = objstore.read_bytes(uri)
    if data is None:
        raise ClusterError(f"checkpoint {uri} does not exist: check the path or train one")
    return data


def read_card(uri: str) -> ModelCard:
    """A checkpoint's model card, reading only its JSON header when the file is local
    (the weights may be hundreds of MB; a plan needs the bands and resolution)."""
    if objstore.is_s3(uri):
        return card_from_bytes(checkpoint_bytes(uri), uri)
    path = objstore.local_path(uri)
    try:
        with path.open("rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else 0
            data = head + f.read(min(length, path.stat().st_size))  # a garbage length: EOF
    except FileNotFoundError:
        msg = f"checkpoint {uri} does not exist: check the path or train one"
        raise ClusterError(msg) from None
    return card_from_bytes(data, uri)


def time_recipe(card: ModelCard, setup: PredictorSetup, source: str) -> TimeRecipe:
    """How the run makes its inputs over time: the checkpoint's recipe (the mosaic for
    checkpoints without one), with the run's own ``fill``."""
    recipe = card.extra.get("recipe") or {}
    trained = TimeRecipe.from_dict(recipe.get("time"))
    if "time" not in recipe and recipe.get("compositing", "first") != "first":
        raise ClusterError(f"checkpoint {source}: compositing {recipe['compositing']!r} "
                           "without its time recipe; retrain it")  # fmt: skip
    if trained.names != card.periods:
        raise ClusterError(f"checkpoint {source}: its periods {list(card.periods)} differ from "
                           f"its recipe's {list(trained.names)}; retrain it")  # fmt: skip
    return run_recipe(trained, setup.time, source)


def check_card(card: ModelCard, grid: Grid, source: str) -> None:
    """Refuse a grid the checkpoint cannot predict on (other pixel size, or tiles the
    U-Net's down- and up-sampling cannot halve evenly), and inputs mosaicked otherwise
    than the checkpoint's input recipe says its training inputs were."""
    if abs(card.resolution - grid.resolution) > 1e-6 * card.resolution:
        raise ClusterError(
            f"checkpoint {source} expects {card.resolution:g} m pixels but the grid "
            f"is {grid.resolution:g} m: set grid.resolution to {card.resolution:g}"
        )
    recipe = card.extra.get("recipe") or {}  # absent: trained from a raster
    if "mosaic" in recipe and recipe["mosaic"] != MOSAIC:
        raise ClusterError(
            f"checkpoint {source} was trained on inputs made by mosaic {recipe['mosaic']!r}, "
            f"and this run makes them by {MOSAIC!r}: a model maps only pixels made as it "
            "learnt them. Use a checkpoint trained with this run's recipe, or retrain"
        )
    multiple = card.config.multiple
    if (grid.tile_size + 2 * grid.halo) % multiple:
        raise ClusterError(
            f"tile_size {grid.tile_size} + 2 x halo {grid.halo} must be a multiple of {multiple} "
            f"for this checkpoint's U-Net (depth {card.config.depth})"
        )


def open_catalog(setup: PredictorSetup, card: ModelCard, region: Region) -> Catalog:
    """The run's catalog as the driver checks it and every actor reads it."""
    return Catalog.open(
        setup.catalog, card.bands, setup.grid.crs, collections=setup.collections,
        start=setup.start, end=setup.end, max_cloud_cover=setup.max_cloud_cover,
        region=region, overrides=setup.overrides, units=card.units,
    )  # fmt: skip


class Predictor:
    """Plain class, wrapped as a Ray actor by ``cluster.predict.driver``; usable
    without Ray in tests and benchmarks."""

    def __init__(self, setup: PredictorSetup) -> None:
        configure_gdal()
        if setup.threads:
            torch.set_num_threads(setup.threads)
        self.setup = setup
        self.device = pick_device(setup.device)
        model, self.card = parse_checkpoint(checkpoint_bytes(setup.checkpoint), setup.checkpoint)
        self.model = prepare_for_device(model, self.device).eval()
        self.mean = np.asarray(self.card.mean, dtype=np.float32)
        self.std = np.asarray(self.card.std, dtype=np.float32)
        self.grid = setup.grid
        self.region = load_region(setup.region, self.grid.crs)
        self.catalog = open_catalog(setup, self.card, self.region)
        self.time = time_recipe(self.card, setup, setup.checkpoint)
        self.store = TileStore.open(setup.store, writable=True)
        self._model_lock = threading.Lock()

    def pid(self) -> int:
        return os.getpid()

    def read(self, tile: Tile) -> Stack:
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

    def predict(self, tile_ids: list[str]) -> list[TileResult]:
        if len(tile_ids) > self.setup.batch_size:
            raise ClusterError(f"{len(tile_ids)} tiles sent for a batch of {self.setup.batch_size}")
        results: list[TileResult] = []
        inputs: list[tuple[Tile, Stack]] = []
        for tile_id in tile_ids:
            start = time.perf_counter()
            try:
                tile = Tile.parse(tile_id)
                stack = self.read(tile)
            except InputCheckError as exc:
                results.append(TileResult(tile_id, False, f"tile {tile_id}: {exc}", fatal=True))
                continue
            except ClusterError as exc:
                results.append(TileResult(tile_id, False, f"tile {tile_id}: {exc}"))
                continue
            inputs.append((tile, stack))
            gap, filled = self._completeness(tile, stack)
            results.append(TileResult(tile_id, True, read_s=time.perf_counter() - start,
                                      gap_px=gap, filled_px=filled))  # fmt: skip
        if inputs:
            classes, confidence = self.infer([stack.data for _, stack in inputs])
            for (tile, stack), cls, conf in zip(inputs, classes, confidence, strict=True):
                self._write(tile, stack.data, cls, conf)
        return results

    def _completeness(self, tile: Tile, stack: Stack) -> tuple[int, int]:
        """Mapped pixels of the tile left nodata for want of a sub-period, and filled."""
        if not stack.gaps.any():
            return 0, 0
        h, size = self.grid.halo, self.grid.tile_size
        inside = region_mask(self.grid, tile, self.region)
        gaps, filled = (a[h : h + size, h : h + size] & inside for a in (stack.gaps, stack.filled))
        return int((gaps & ~filled).sum()), int(filled.sum())

    def infer(self, raws: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Fixed batch shape: pad with zeros up to ``batch_size``."""
        h = self.grid.halo
        size = self.grid.tile_size
        batch = np.zeros((self.setup.batch_size, *raws[0].shape), dtype=np.float32)
        for i, raw in enumerate(raws):
            batch[i] = normalize(raw, self.mean, self.std)
        x = torch.from_numpy(batch).to(self.device)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with self._model_lock, torch.inference_mode(), autocast(self.device):
            probs = torch.softmax(self.model(x).float(), dim=1)[:, :, h : h + size, h : h + size]
            conf, cls = probs.max(dim=1)
            conf, cls = conf.cpu().numpy(), cls.to(torch.uint8).cpu().numpy()
        n = len(raws)
        return cls[:n], conf[:n]

    def _write(self, tile: Tile, raw: np.ndarray, cls: np.ndarray, conf: np.ndarray) -> None:
        h, size = self.grid.halo, self.grid.tile_size
        core = raw[:, h : h + size, h : h + size]
        keep = np.isfinite(core).all(axis=0) & region_mask(self.grid, tile, self.region)
        classes = np.where(keep, cls, NODATA).astype(np.uint8)
        confidence = np.where(keep, confidence_to_uint8(conf), NODATA).astype(np.uint8)
        self.store.write_tile(tile, classes, confidence)
