"""Refuse inputs that do not look like what the model was trained on.

A map made from wrongly scaled inputs is wrong everywhere and says nothing:
raw DN read as reflectance are 10,000 times too large, a missing Sentinel-2
harmonisation offset makes every value 0.1 too bright. The checkpoint holds
each band's training mean and standard deviation; inputs are compared with
them item by item, so that a refusal names the item, the band and the cause.

Two checks. Before any actor starts (and before the store exists), the driver
reads a few tiles spread over the region, each intersecting item on its own,
and pools each item's clear pixels. The run stops when one band's median
lies more than ``PRECHECK_SIGMA`` standard deviations from its training mean,
or the bands together (root mean square) more than ``PRECHECK_RMS``: a
harmonisation offset moves every band by 0.1, one or two training deviations
each (measured on the sample: 2.6 to 3.2 RMS shifted, at most 0.6 as it should
be; single tiles as they should be reach 1.2).
Then every actor checks each tile it reads, per item, against the looser
``TILE_SIGMA``: loose enough that a tile of unmasked cloud passes, tight enough
for unit mix-ups (factors of hundreds to tens of thousands), which are then
caught in items the driver's sample did not meet. ``accept_input_shift`` turns
a refusal into a logged warning, for inputs that are meant to differ.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from cluster.errors import ClusterError
from cluster.imagery.catalog import Catalog
from cluster.imagery.composite import Stack
from cluster.imagery.reader import AssetReadError, read_window
from cluster.imagery.stacitem import ItemRef
from cluster.imagery.temporal import TimeRecipe, Window, items_within
from cluster.tiles.grid import Grid, Tile, count_tiles, iter_tiles
from cluster.tiles.region import Region
from unet.checkpoint import ModelCard

__all__ = ["InputCheckError", "ItemValues", "check_tile", "layer_of", "precheck", "sample_tiles"]

log = logging.getLogger(__name__)

PRECHECK_SIGMA = 6.0
PRECHECK_RMS = 2.0
TILE_SIGMA = 100.0
SAMPLE_TILES = 6
ITEMS_PER_TILE = 8  # the first in mosaic order: those that give the tile its pixels
MIN_PIXELS = 1000  # fewer clear pixels of an item say too little to judge it
TILE_SAMPLE = 4096  # at least this many pixels per item and tile an actor checks (if it has them)
_SUBSAMPLE = 4  # every 4th pixel of a sample tile each way: plenty for a median
_S2_SHIFT = 0.1  # the Sentinel-2 BOA_ADD_OFFSET of -1000 DN, in reflectance


class InputCheckError(ClusterError):
    """Inputs unlike the training data: names the item, band, values and cause."""


@dataclass
class ItemValues:
    """Clear values of one item, per band, pooled over the tiles they came from."""

    item: ItemRef
    values: list[list[np.ndarray]] = field(default_factory=list)  # per band, per tile
    tiles: int = 0
    layer: int = 0  # the sub-period of a stack these values are held against
    what: str = ""  # what the values are, if not the item's alone (a composite)
    where: str = ""  # where they were read, if not in tiles ("its overviews")

    def add(self, pixels: np.ndarray) -> None:
        """``pixels``: (bands, n) with no NaN."""
        if not self.values:
            self.values = [[] for _ in range(len(pixels))]
        for band, row in zip(self.values, pixels, strict=True):
            band.append(row)
        self.tiles += 1

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.values[0]) if self.values else 0

    def medians(self) -> np.ndarray:
        return np.array([np.median(np.concatenate(v)) for v in self.values])


def sample_tiles(grid: Grid, region: Region, k: int = SAMPLE_TILES) -> list[Tile]:
    """``k`` tiles evenly spread along the region's enumeration (row-major), so both
    ends and the middle of the region are seen; streamed, never listed."""
    total = count_tiles(grid, region)
    if total == 0:
        return []
    wanted = sorted({min(total - 1, int((i + 0.5) * total / k)) for i in range(k)})
    return [t for i, t in _indexed(iter_tiles(grid, region), wanted)]


def precheck(
    catalog: Catalog,
    grid: Grid,
    region: Region,
    card: ModelCard,
    checkpoint: str,
    *,
    accept: bool,
    recipe: TimeRecipe = TimeRecipe(),  # noqa: B008 (frozen)
    year: int | None = None,
) -> list[str]:
    """Check the items meeting a few sample tiles; raise InputCheckError on the worst
    band of the first item out of range (or, with ``accept``, return the warnings).
    In a stack each item is held against the statistics of its sub-period."""
    pooled: dict[str, ItemValues] = {}
    windows = recipe.windows(year)
    for tile in sample_tiles(grid, region):
        bounds, shape = grid.tile_bounds(tile), grid.tile_shape()
        for item in catalog.items_for(bounds)[:ITEMS_PER_TILE]:
            layer = layer_of(item, windows)
            if layer is None:
                continue  # in no sub-period: the stack does not read it
            try:
                data = read_window([item], bounds, shape, grid.crs)
            except AssetReadError as exc:  # fails its own tiles later, named there
                log.warning("input check skips %s", exc)
                continue
            data = data[:, ::_SUBSAMPLE, ::_SUBSAMPLE]
            clear = np.isfinite(data).all(axis=0)
            if clear.any():
                pooled.setdefault(item.id, ItemValues(item, layer=layer)).add(data[:, clear])
    warnings = []
    for values in pooled.values():
        problem = judge(values, card, checkpoint, PRECHECK_SIGMA, PRECHECK_RMS)
        if problem is not None:
            if not accept:
                raise InputCheckError(problem)
            warnings.append(problem)
            log.warning("%s", problem)
    return warnings


def layer_of(item: ItemRef, windows: list[Window | None]) -> int | None:
    """The sub-period of a stack whose window holds ``item`` (0 for a mosaic), None for
    an item in none: the layer its values are held against."""
    return next((p for p, w in enumerate(windows) if items_within([item], w)), None)


def check_tile(
    stack: Stack, sources: np.ndarray, card: ModelCard, checkpoint: str, recipe: TimeRecipe
) -> str | None:
    """A gross mismatch in one tile read (a stack, with ``sources`` from the mosaic),
    item by item, or for composites layer by layer: the message, or None. Runs on
    every tile beside the model, so each median comes from an even sample of
    ``TILE_SAMPLE`` to twice that many pixels (a full median of a 512-px tile cost
    twice its read; this, a tenth of it)."""
    n = len(card.bands)
    for layer, items in enumerate(stack.layer_items):
        data = stack.data[layer * n : (layer + 1) * n]
        finite = np.isfinite(data).all(axis=0)
        flat = data.reshape(n, -1)
        if recipe.compositing == "first" and len(stack.layer_items) == 1:
            groups = [(item, sources == k, "") for k, item in enumerate(items)]
        elif items:
            period = f"{recipe.periods[layer].name} " if recipe.periods else ""
            what = (f"the {period}{recipe.compositing} composite of {len(items)} item(s) "
                    f"(first {items[0].id})")  # fmt: skip
            groups = [(items[0], np.ones_like(finite), what)]
        else:
            groups = []
        for item, mine, what in groups:
            where = np.flatnonzero(mine & finite)
            if len(where) >= MIN_PIXELS:
                values = ItemValues(item, layer=layer, what=what)
                values.add(flat[:, where[:: max(1, len(where) // TILE_SAMPLE)]])
                problem = judge(values, card, checkpoint, TILE_SIGMA)
                if problem is not None:
                    return problem
    return None


def judge(
    values: ItemValues, card: ModelCard, checkpoint: str, sigma: float, rms: float = np.inf
) -> str | None:
    """The message naming the band furthest out of range, if one is beyond ``sigma``
    or all together beyond ``rms`` (root mean square, in training deviations)."""
    if values.count < MIN_PIXELS:
        return None
    n = len(card.bands)
    channels = slice(values.layer * n, (values.layer + 1) * n)
    mean, std = np.asarray(card.mean)[channels], np.maximum(np.asarray(card.std)[channels], 1e-6)
    medians = values.medians()
    z = np.abs(medians - mean) / std
    worst = int(np.argmax(z))
    if z[worst] <= sigma and float(np.sqrt(np.mean(z**2))) <= rms:
        return None
    item, band = values.item, values.item.bands[worst]
    name, seen, trained = card.channels[channels][worst], float(medians[worst]), float(mean[worst])
    cause, fix = _diagnose(seen, trained, float(std[worst]), band.scale, band.offset)
    where = f"assets.{item.collection or '*'}.bands.{card.bands[worst]}"
    return (
        f"input check: {values.what or 'item ' + item.id} (collection {item.collection or None})"
        f" band {name} "
        f"(asset {band.asset!r}, scale {band.scale:g}, offset {band.offset:+g} from "
        f"{band.origin or 'the catalog'}): values around {seen:.4g} (median of "
        f"{values.count:,} clear pixels in {values.where or f'{values.tiles} tile(s)'}), but "
        f"checkpoint "
        f"{checkpoint} was trained on {trained:.4g} ± {float(std[worst]):.2g}. Likely cause: "
        f"{cause}. Fix: {fix.format(where=where)}; or set run.accept_input_shift: true if "
        "these inputs are meant to differ"
    )


def _diagnose(
    seen: float, trained: float, std: float, scale: float, offset: float
) -> tuple[str, str]:
    ratio = seen / trained if trained > 0 else np.inf
    if ratio > 30:
        return (
            "raw digital numbers read as reflectance (no scale applied)",
            f"set {{where}}.scale (0.0001 for Sentinel-2 DN, the provider's for others; "
            f"now {scale:g})",
        )
    if 0 < ratio < 1 / 30:
        return (
            "a scale applied to values already in the model's units",
            f"set {{where}}.scale to 1 (now {scale:g})",
        )
    shift = seen - trained
    if abs(shift - _S2_SHIFT) < _S2_SHIFT / 2:
        return (
            "a missing harmonisation offset (Sentinel-2 DN from processing baseline 04.00 on "
            "carry +1000, 0.1 in reflectance)",
            f"set {{where}}.offset: {offset - _S2_SHIFT:+g} (now {offset:+g})",
        )
    if abs(shift + _S2_SHIFT) < _S2_SHIFT / 2:
        return (
            "the harmonisation offset applied twice (the pixels already carry it, e.g. "
            "sentinel:boa_offset_applied)",
            f"set {{where}}.offset: {offset + _S2_SHIFT:+g} (now {offset:+g})",
        )
    return (
        f"imagery unlike the training data ({shift / std:+.1f} standard deviations: another "
        "sensor, processing level or season, or bands in another order)",
        "check the catalog with `statemap items`, or set {where} scale and offset",
    )


def _indexed(tiles: Iterator[Tile], wanted: list[int]) -> Iterator[tuple[int, Tile]]:
    """The tiles at the ``wanted`` (sorted) positions of ``tiles``, stopping after the last."""
    targets = iter(wanted)
    target = next(targets, None)
    for i, tile in enumerate(tiles):
        if target is None:
            return
        if i == target:
            yield i, tile
            target = next(targets, None)
