"""Training chips where the labels are, read as a run reads its tiles, made on Ray.

One data path: a chip is a tile of a grid on the run's pixel lattice (chip
size and halo of its own), its imagery comes from ``read_window`` over the
same catalog selection, provider conventions, overrides, masks and mosaic
order as a run's tiles, and its labels are rasterised onto the same window.
So a model learns from the pixels it will map.

The driver holds chip indexes and URIs, never imagery: it places the chips
(the chip-grid cells that meet a label), refuses labels outside the catalog's
coverage before anything is written, creates the chip store, and hands
batches of indexes to ``ChipMaker`` actors on the cluster's CPUs, which read,
rasterise and write their chips' chunks. It records each finished batch (the
chips' class counts and the done bitmap), so an interrupted build resumes with
the chips not yet made and ends byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import ray
import shapely
from tqdm import tqdm

from cluster.errors import ClusterError
from cluster.imagery.catalog import MOSAIC, Catalog
from cluster.imagery.composite import Stack, read_stack
from cluster.imagery.providers import NO_OVERRIDES, Overrides
from cluster.imagery.reader import AssetReadError
from cluster.imagery.temporal import TimeRecipe, run_year
from cluster.predict.driver import connect_ray
from cluster.storage.gdalenv import configure_gdal
from cluster.storage.redact import redact
from cluster.tiles.grid import Bounds, Grid, Tile
from cluster.tiles.region import Region
from cluster.training.chipstore import ChipStore
from cluster.training.labels import NODATA, Labels, LabelSpec, open_labels

__all__ = ["ChipMaker", "ChipResult", "ChipSpec", "ChipSummary", "build_chips"]

log = logging.getLogger(__name__)
_MAX_REFLECTANCE = 2.0  # a band's median above this is not reflectance but DN


@dataclass(frozen=True)
class ChipSpec:
    """What chips are made of: the run's inputs, a chip grid on its lattice, the labels."""

    catalog: str
    grid: Grid  # tile_size = chip size, halo = context; origin on the run grid's lattice
    bands: tuple[str, ...]
    class_names: tuple[str, ...]
    labels: LabelSpec
    collections: tuple[str, ...] | None = None
    start: str | None = None
    end: str | None = None
    max_cloud_cover: float | None = None
    overrides: Overrides = NO_OVERRIDES
    units: str = "reflectance"
    time: TimeRecipe = TimeRecipe()  # noqa: RUF009 (frozen) compositing, sub-periods

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self.time.channels(self.bands))

    def input_recipe(self) -> dict[str, object]:
        """How imagery becomes model input; the checkpoint records it and a run
        reading another way is refused."""
        return {
            "catalog": redact(self.catalog),  # recorded in the checkpoint: no token
            "collections": list(self.collections) if self.collections else None,
            "period": [self.start, self.end],
            "max_cloud_cover": self.max_cloud_cover,
            "mosaic": MOSAIC,
            "compositing": self.time.compositing,
            "time": self.time.to_dict(),
            "units": self.units,
            "overrides": asdict(self.overrides),
            "bands": list(self.bands),
        }

    def recipe(self) -> dict[str, object]:
        """Everything a chip's pixels depend on: a chip store answers one recipe."""
        grid = asdict(self.grid)
        return {**self.input_recipe(), "grid": grid, "labels": asdict(self.labels),
                "class_names": list(self.class_names)}  # fmt: skip


@dataclass(frozen=True)
class ChipResult:
    index: int
    ok: bool
    counts: tuple[int, ...] = ()  # labelled core pixels per class
    error: str = ""
    fatal: bool = False  # the inputs are wrong, not just this chip: stop


@dataclass
class ChipSummary:
    store: str
    chips: int = 0
    made: int = 0
    skipped: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.made / self.seconds if self.seconds else 0.0
        return (
            f"{self.made} chips made, {self.skipped} already made, {len(self.failed)} failed "
            f"of {self.chips} in {self.seconds:.1f} s ({rate:.1f} chips/s) -> {self.store}"
        )


def open_catalog(spec: ChipSpec, labels: Labels) -> Catalog:
    """The catalog selection of the chips, bounded to where the labels are."""
    region = Region(shapely.box(*labels.bounds(spec.grid.crs)), spec.grid.crs, labels.source)
    return _catalog(spec, region)


def _catalog(spec: ChipSpec, region: Region) -> Catalog:
    return Catalog.open(
        spec.catalog, spec.bands, spec.grid.crs, collections=spec.collections,
        start=spec.start, end=spec.end, max_cloud_cover=spec.max_cloud_cover,
        region=region, overrides=spec.overrides, units=spec.units,
    )  # fmt: skip


def read_chip_input(spec: ChipSpec, catalog: Catalog, bounds: Bounds, shape: tuple[int, int],
                    sources: np.ndarray | None = None) -> Stack:  # fmt: skip
    """A window's model input as chips (and runs) read it: the selection's items there,
    masked and composited by the recipe."""
    items = catalog.items_for(bounds)
    return read_stack(items, bounds, shape, spec.grid.crs, spec.time,
                      run_year(spec.start, spec.end), n_bands=len(spec.bands),
                      sources=sources)  # fmt: skip


def context_windows(spec: ChipSpec, tiles: list[Tile], side: int) -> np.ndarray:
    """(n, bands, side, side) input around the centre of each of ``tiles``, read as its
    chip is but as wide as the model can see: what the trained model's context is
    measured on (chips are narrower, and beyond them it would see padding)."""
    grid, half = spec.grid, side * spec.grid.resolution / 2
    boxes = []
    for tile in tiles:
        minx, miny, maxx, maxy = grid.tile_bounds(tile)
        cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
        boxes.append((cx - half, cy - half, cx + half, cy + half))
    if not boxes:
        return np.zeros((0, len(spec.channels), side, side), np.float32)
    union = shapely.box(*shapely.MultiPolygon([shapely.box(*b) for b in boxes]).bounds)
    catalog = _catalog(spec, Region(union, grid.crs, "the context windows"))
    return np.stack([read_chip_input(spec, catalog, b, (side, side)).data for b in boxes])


class ChipMaker:
    """Reads, rasterises and writes chips; a Ray actor (one per CPU) or a plain object."""

    def __init__(self, spec: ChipSpec, store_uri: str, labels: Labels | None = None) -> None:
        configure_gdal()
        # Opened here from the spec (a second of reading for 100,000 features), not
        # shipped from the driver, so a restarted actor needs nothing the driver holds.
        labels = labels or open_labels(spec.labels, spec.class_names, spec.grid.crs)
        self.spec, self.labels = spec, labels
        self.catalog = open_catalog(spec, labels)
        self.store = ChipStore.open(store_uri, writable=True)

    def ready(self) -> bool:
        return True

    def make(self, indexes: list[int]) -> list[ChipResult]:
        return [self._one(i) for i in indexes]

    def _one(self, index: int) -> ChipResult:
        grid, tile = self.spec.grid, self.store.tile(index)
        bounds, shape = grid.tile_bounds(tile, halo=True), grid.tile_shape(halo=True)
        sources = np.empty(shape, dtype=np.int16)
        try:
            stack = read_chip_input(self.spec, self.catalog, bounds, shape, sources)
        except AssetReadError as exc:
            return ChipResult(index, False, error=f"chip {index} ({tile.id}): {exc}")
        image = stack.data
        problem = self._units_problem(stack, sources)
        if problem:
            return ChipResult(index, False, error=f"chip {index} ({tile.id}): {problem}",
                              fatal=True)  # fmt: skip
        label = self.labels.rasterize(grid, tile, halo=True)
        label[~np.isfinite(image).all(axis=0)] = NODATA  # no input, nothing to learn
        self.store.write(index, image, label)
        h = grid.halo
        core = label[h : h + grid.tile_size, h : h + grid.tile_size]
        counts = np.bincount(core[core != NODATA], minlength=len(self.spec.class_names))
        return ChipResult(index, True, tuple(int(c) for c in counts))

    def _units_problem(self, stack: Stack, sources: np.ndarray) -> str:
        """Reflectance expected but DN read: name the band and the item (the one giving
        most of the pixels of a mosaic, the first of a composite)."""
        if self.spec.units != "reflectance":
            return ""
        image = stack.data
        valid = np.isfinite(image).all(axis=0)
        if valid.sum() < 16:
            return ""
        medians = np.median(image[:, valid], axis=1)
        worst = int(np.argmax(medians))
        if medians[worst] <= _MAX_REFLECTANCE:
            return ""
        layer, worst = divmod(worst, len(self.spec.bands))
        items = stack.layer_items[layer]
        mosaicked = sources[valid][sources[valid] >= 0]
        item = items[int(np.bincount(mosaicked).argmax())] if mosaicked.size else items[0]
        band = item.bands[worst]
        return (
            f"band {self.spec.bands[worst]} of item {item.id} (collection {item.collection}, "
            f"asset {band.asset!r}, scale {band.scale:g}, offset {band.offset:+g} from "
            f"{band.origin or 'the catalog'}): values around {medians[worst]:.5g} are digital "
            "numbers, not reflectance. Fix: give the collection's scale and offset under "
            f"assets.{item.collection or '*'}.bands, or set units: dn to train on DN on purpose"
        )


def labelled_counts(labels: Labels, grid: Grid, cells: list[Tile], n_classes: int) -> np.ndarray:
    """(chips, classes) labelled core pixels of each cell by the labels alone: what the
    split is made from, known before (and whether or not) a chip's imagery is read."""
    out = np.zeros((len(cells), n_classes), dtype=np.int64)
    for i, tile in enumerate(cells):
        core = labels.rasterize(grid, tile)
        out[i] = np.bincount(core[core != NODATA], minlength=n_classes)[:n_classes]
    return out


def build_chips(
    spec: ChipSpec,
    uri: str,
    *,
    workers: int = 0,
    batch_size: int = 16,
    flush_s: float = 5.0,
    progress: bool = True,
) -> ChipSummary:
    """Make (or finish making) the chip store at ``uri``; ``workers``: ChipMaker
    actors (0: one per CPU of the cluster)."""
    start = time.perf_counter()  # the whole build: labels, catalog, store, chips
    configure_gdal()
    labels = open_labels(spec.labels, spec.class_names, spec.grid.crs)
    cells = labels.cells(spec.grid)
    catalog = open_catalog(spec, labels)
    bare = [t for t in cells if not catalog.items_for(spec.grid.tile_bounds(t))]
    if bare:
        x0, y0, x1, y1 = spec.grid.tile_bounds(bare[0])
        raise ClusterError(
            f"labels {labels.source}: {len(bare)} of {len(cells)} chips holding labels have no "
            f"imagery in catalog {spec.catalog} ({catalog.filters}), e.g. chip {bare[0].id} at "
            f"({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}) in {spec.grid.crs}. Drop the labels "
            "outside the catalog's coverage, or widen the period, collections or cloud limit"
        )
    store = ChipStore.create_or_open(
        uri, spec.recipe(), spec.grid, spec.channels, spec.class_names, cells,
        lambda: labelled_counts(labels, spec.grid, cells, len(spec.class_names)),
    )  # fmt: skip
    done = store.done()
    summary = ChipSummary(store=uri, chips=len(store), skipped=int(done.sum()))
    todo = [int(i) for i in np.flatnonzero(~done)]
    if not todo:
        return summary
    connect_ray()
    n = workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
    maker = ray.remote(num_cpus=1, max_restarts=2, max_task_retries=2)(ChipMaker)
    actors = [maker.remote(spec, uri) for _ in range(min(n, len(todo)))]
    try:
        ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayActorError as exc:
        raise ClusterError(f"chip makers failed to start: {exc}") from exc
    batches = iter([todo[i : i + batch_size] for i in range(0, len(todo), batch_size)])
    in_flight: dict[ray.ObjectRef, tuple[int, list[int]]] = {}
    finished: list[tuple[int, np.ndarray]] = []
    stopped: list[str] = []
    last = time.perf_counter()
    bar = tqdm(desc="chips", unit="chip", total=len(store), initial=summary.skipped,
               disable=not progress)  # fmt: skip

    def submit(k: int) -> None:
        batch = None if stopped else next(batches, None)
        if batch is not None:
            in_flight[actors[k].make.remote(batch)] = (k, batch)

    for k in range(len(actors)):
        submit(k)
        submit(k)
    try:
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            k, batch = in_flight.pop(ref)
            try:
                results = ray.get(ref)
            except ray.exceptions.RayError as exc:
                results = [ChipResult(i, False, error=f"chip {i}: {exc}") for i in batch]
            for result in results:
                if result.ok:
                    finished.append((result.index, np.asarray(result.counts)))
                    summary.made += 1
                else:
                    summary.failed[result.index] = result.error
                    if result.fatal and not stopped:
                        stopped.append(result.error)
            bar.update(len(results))
            if time.perf_counter() - last >= flush_s:
                store.mark_done(finished)
                finished.clear()
                last = time.perf_counter()
            submit(k)
    finally:
        store.mark_done(finished)
        bar.close()
        for actor in actors:
            ray.kill(actor)
    summary.seconds = time.perf_counter() - start
    if stopped:
        raise ClusterError(f"{stopped[0]} (chip making stopped; chips made so far are kept)")
    return summary
