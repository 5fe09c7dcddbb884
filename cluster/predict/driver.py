"""The prediction run: enumerate tiles, feed Ray actors, record what is done.

The driver holds tile ids, never imagery or weights. It alone writes the
done record (actors write only their own tiles' chunks), and only after an
actor reports a tile written, so an interrupted run recomputes at most the
tiles that were in flight, and a rewritten tile is byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version

import ray
from ray.actor import ActorHandle
from tqdm import tqdm

from cluster.errors import ClusterError
from cluster.imagery import throttle
from cluster.imagery.temporal import TimeRecipe
from cluster.predict.actor import Predictor, fit_batch_size
from cluster.predict.fleet import Fleet
from cluster.predict.inputcheck import InputCheckError, precheck
from cluster.predict.itemcheck import ItemsChecked, check_items
from cluster.predict.readers import COLUMN_RUN, TILE_WORKER_ENV
from cluster.predict.setup import (
    PredictorSetup,
    TileResult,
    check_card,
    checkpoint_bytes,
    input_shape,
    open_catalog,
    time_recipe,
)
from cluster.predict.store import RunAttrs, StoreLayout, TileStore
from cluster.storage.gdalenv import configure_gdal
from cluster.tiles.grid import Tile, count_tiles, iter_tiles
from cluster.tiles.region import Region, load_region
from unet.checkpoint import ModelCard, card_from_bytes
from unet.fit import CPU_BATCH

try:
    VERSION = version("statemap")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"


@dataclass(frozen=True)
class RunSpec:
    setup: PredictorSetup
    run_id: str = ""  # derived from the inputs when empty
    actors: int = 0  # 0: one per GPU, else one CPU actor per node's worth of CPUs
    in_flight: int = 3  # batches queued per actor at least, so it never waits for the driver
    read_ahead_mb: int = 2048  # per actor: the most its queued batches' inputs may take
    # Reader processes per actor; None: one per CPU beside a GPU actor, none beside a
    # CPU actor (its model takes every core; reading in turn costs it least).
    readers: int | None = None
    flush_s: float = 5.0  # how often the done record is rewritten while running
    # Per actor: one that dies (its node lost, its process killed) is replaced this
    # often, its tiles in flight handed on; once more and the run stops, keeping them.
    actor_replacements: int = 3


@dataclass
class Summary:
    run_id: str
    store: str
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    tile_pixels: int = 0
    gap_px: int = 0  # mapped pixels nodata for want of a sub-period of the stack
    filled_px: int = 0  # mapped pixels with a sub-period filled from its neighbour
    lost: list[str] = field(default_factory=list)  # actors that died and were replaced
    retries: int = 0  # requests to object storage retried (throttle.take)
    throttled: int = 0  # of them answered 429/503: slow down
    slowed: int = 0  # times a reader halved its requests in flight for it
    input_check: str = ""  # what the check of every item found and cost

    @property
    def tiles_per_s(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def megapixels_per_s(self) -> float:
        return self.tiles_per_s * self.tile_pixels / 1e6

    def lines(self) -> list[str]:
        out = [
            f"run {self.run_id}: {self.done} tiles done, {self.skipped} skipped (already done), "
            f"{len(self.failed)} failed in {self.seconds:.1f} s",
            f"{self.tiles_per_s:.2f} tiles/s, {self.megapixels_per_s:.2f} megapixels/s; "
            f"store {self.store}",
        ]
        if self.input_check:
            out.append(self.input_check)
        if self.gap_px or self.filled_px:
            out.append(
                f"{self.gap_px:,} mapped px left nodata for want of a sub-period, "
                f"{self.filled_px:,} px filled from a neighbouring sub-period"
            )
        if self.retries:
            out.append(
                f"object storage: {self.retries:,} requests retried, {self.throttled:,} of them "
                f"throttled (429/503); requests in flight halved {self.slowed:,} times"
            )
        out += [f"FAILED {msg}" for msg in self.failed.values()]
        out += [f"REPLACED {msg}" for msg in self.lost]
        return out


def derive_run_id(setup: PredictorSetup, checkpoint_sha: str) -> str:
    """Same inputs, same run id: a resubmission resumes instead of starting over."""
    doc = {
        "catalog": setup.catalog,
        "collections": setup.collections,
        "period": [setup.start, setup.end],
        "max_cloud_cover": setup.max_cloud_cover,
        "region": setup.region,
        "grid": asdict(setup.grid),
        "checkpoint": checkpoint_sha,
    }
    if setup.overrides.collections:  # absent before overrides existed: old ids stay
        doc["overrides"] = asdict(setup.overrides)
    if setup.time:  # the rest of the time recipe is the checkpoint's, in its hash
        doc["time"] = repr(setup.time)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Checked:
    """The inputs of a run, checked on the driver."""

    checkpoint_sha256: str
    card: ModelCard
    region: Region
    layout: StoreLayout
    items: int
    warnings: tuple[str, ...] = ()  # input-check findings accepted by the config
    items_checked: ItemsChecked | None = None  # every item, at its overviews
    recipe: TimeRecipe = TimeRecipe()  # noqa: RUF009 (frozen) inputs over time


def check_inputs(setup: PredictorSetup) -> Checked:
    """Everything that can be refused before an actor starts (and before the store
    exists): checkpoint against grid and catalog, region, and the input values."""
    data = checkpoint_bytes(setup.checkpoint)
    card = card_from_bytes(data, setup.checkpoint)
    grid = setup.grid
    check_card(card, grid, setup.checkpoint)
    recipe = time_recipe(card, setup, setup.checkpoint)
    recipe.check_within(setup.year, setup.start, setup.end)
    region = load_region(setup.region, grid.crs)
    catalog = open_catalog(setup, card, region)
    catalog.check_covers(region)
    accept = setup.accept_input_shift
    items = None
    if setup.check_items:
        items = check_items(catalog, card, setup.checkpoint, accept=accept, recipe=recipe,
                            year=setup.year)  # fmt: skip
    warnings = precheck(catalog, grid, region, card, setup.checkpoint, accept=accept,
                        recipe=recipe, year=setup.year)  # fmt: skip
    return Checked(
        checkpoint_sha256=hashlib.sha256(data).hexdigest(),
        card=card,
        region=region,
        layout=StoreLayout.for_bounds(grid, region.bounds),
        items=len(catalog),
        warnings=(*(items.problems if items else ()), *warnings),
        items_checked=items,
        recipe=recipe,
    )


def _batches(tiles: Iterator[Tile], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for tile in tiles:
        batch.append(tile.id)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def connect_ray() -> None:
    """``ray.init()`` semantics: the cluster in ``RAY_ADDRESS``, else one running
    on this machine, else a local instance (without the dashboard, whose
    agents take a tenth of a 2-core machine)."""
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS") == "local":  # a fresh instance asked for by name
        ray.init(include_dashboard=False, log_to_driver=False)
        return
    try:
        ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", log_to_driver=False)
    except ConnectionError:
        if os.environ.get("RAY_ADDRESS"):
            raise
        ray.init(include_dashboard=False, log_to_driver=False)


def _depth(spec: RunSpec, batch: int, readers: int, tile_bytes: int) -> int:
    """Batches queued per actor: at least ``spec.in_flight``, and enough that every
    reader has a run of its columns in hand while a batch is on the model (see
    ``ReaderPool``) and its tiles in flight to read, but no more than the memory
    budget holds (each queued batch's inputs wait in its shared-memory slots)."""
    per_reader = max(2 * COLUMN_RUN, spec.setup.tiles_in_flight)
    wanted = max(spec.in_flight, -(-per_reader * readers // batch) + 1)
    return max(2, min(wanted, spec.read_ahead_mb * 2**20 // (batch * tile_bytes)))


def _cpus_per_gpu() -> int:
    """CPUs that belong to each GPU: a GPU node's CPUs over its GPUs, the fewest of
    any GPU node (so every node fits an actor per GPU); 1 until a GPU node exists."""
    shares = [
        int(node["Resources"].get("CPU", 0) // node["Resources"]["GPU"])
        for node in ray.nodes()
        if node["Alive"] and node["Resources"].get("GPU")
    ]
    return max(min(shares, default=1), 1)


def actor_options(actors: int, device: str = "auto") -> tuple[int, dict[str, float]]:
    """One actor per GPU, holding its share of the node's CPUs for its readers.
    ``device="cuda"`` asks for GPU actors even when the cluster has none yet: an
    autoscaling GPU worker group starts at zero and grows to what the actors ask for."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus or device == "cuda":
        return actors or max(gpus, 1), {"num_gpus": 1, "num_cpus": _cpus_per_gpu()}
    cpus = max(int(resources.get("CPU", 1)), 1)
    n = actors or 1
    return n, {"num_gpus": 0, "num_cpus": max(cpus // n, 1)}


def run_predict(
    spec: RunSpec,
    progress: bool = True,
    on_result: Callable[[TileResult], None] | None = None,
) -> Summary:
    configure_gdal()
    setup = spec.setup
    throttle.watch()  # the checks read imagery here, in the driver: their retries count too
    throttle.take()
    checked = check_inputs(setup)
    checks = throttle.take()
    run_id = spec.run_id or derive_run_id(setup, checked.checkpoint_sha256)
    attrs = RunAttrs(
        run_id=run_id,
        checkpoint_sha256=checked.checkpoint_sha256,
        class_names=checked.card.class_names,
        class_colors=checked.card.class_colors,
        software_version=VERSION,
    )
    store = TileStore.create_or_open(setup.store, checked.layout, attrs)
    done = store.done_tiles()
    region = checked.region
    summary = Summary(run_id=run_id, store=setup.store, tile_pixels=setup.grid.tile_size**2,
                      **checks)  # fmt: skip
    if checked.items_checked is not None:
        summary.input_check = checked.items_checked.line()

    def pending() -> Iterator[Tile]:
        for tile in iter_tiles(setup.grid, region):
            if tile in done:
                summary.skipped += 1
            else:
                yield tile

    connect_ray()
    n_actors, options = actor_options(spec.actors, setup.device)
    # Ray restarts nothing: the driver replaces a dead actor itself (see Fleet), so
    # it can count, hand the dead one's tiles to any actor free, and say why it stops.
    actor_cls = ray.remote(max_restarts=0, max_task_retries=0)(Predictor)
    cpus, gpu = int(options["num_cpus"]), bool(options["num_gpus"])
    if not setup.batch_size:  # auto: measured on a GPU, once; the CPU's default elsewhere
        fit = ray.remote(fit_batch_size).options(**options)
        setup = replace(setup, batch_size=ray.get(fit.remote(setup)) if gpu else CPU_BATCH)
    readers = spec.readers if spec.readers is not None else (cpus if gpu else 0)
    actor_setup = replace(setup, threads=0 if gpu else cpus, readers=readers)
    tile_bytes = 4 * math.prod(input_shape(checked.card, setup.grid))  # float32
    depth = _depth(spec, setup.batch_size, readers, tile_bytes)
    # Threads per actor: with readers, each batch's call waits on them while another
    # is on the model; reading itself on the CPU, one batch at a time (threads
    # reading beside torch's would stall its thread pool).
    concurrency = depth if readers else 1
    actor_setup = replace(actor_setup, queued=concurrency)

    def start_actor() -> ActorHandle:
        return actor_cls.options(
            max_concurrency=concurrency, runtime_env=TILE_WORKER_ENV, **options
        ).remote(actor_setup)

    actors = [start_actor() for _ in range(n_actors)]
    try:  # loaded: time the tiles, not start-up
        ray.get([actor.pid.remote() for actor in actors])
    except ray.exceptions.RayActorError as exc:
        raise ClusterError(f"prediction actors failed to start: {exc}") from exc
    total = count_tiles(setup.grid, region)  # cheap: counted row by row, never listed
    bar = tqdm(desc="predict", unit="tile", total=total, initial=len(done), disable=not progress)
    batches = _batches(pending(), setup.batch_size)
    fleet = Fleet(start_actor, actors, batches, depth, spec.actor_replacements)
    newly_done: list[Tile] = []
    start = last_flush = time.perf_counter()

    stopped: list[str] = []  # an actor's input check refused a tile: send no more
    try:
        fleet.top_up()
        while fleet.busy():
            results = fleet.wait()
            for result in results:
                summary.retries += result.retries
                summary.throttled += result.throttled
                summary.slowed += result.slowed
                if result.ok:
                    summary.done += 1
                    summary.gap_px += result.gap_px
                    summary.filled_px += result.filled_px
                    newly_done.append(Tile.parse(result.tile_id))
                else:
                    summary.failed[result.tile_id] = result.error
                    if result.fatal and not stopped:
                        stopped.append(result.error)
                        fleet.closed = True
                if on_result:
                    on_result(result)
            bar.update(len(results))
            if time.perf_counter() - last_flush >= spec.flush_s and newly_done:
                store.mark_done(newly_done)
                newly_done.clear()
                last_flush = time.perf_counter()
        summary.seconds = time.perf_counter() - start  # the tiles' time, not the shut-down's
    finally:
        if newly_done:  # before any error below: the tiles written are kept
            store.mark_done(newly_done)
        bar.close()
        closing = [actor.close.remote() for actor in fleet.actors]
        ray.wait(closing, num_returns=len(closing), timeout=10)  # a dead one never answers
        for actor in fleet.actors:
            ray.kill(actor)
    summary.lost = fleet.lost
    if stopped:
        raise InputCheckError(
            f"{stopped[0]} (the run stopped; {summary.done} tiles written before are kept, "
            "a rerun after the fix resumes)"
        )
    if fleet.gave_up and fleet.work_left():
        raise ClusterError(
            f"{fleet.gave_up}. The run stopped: the {summary.done} tiles it wrote are recorded "
            f"as done in {setup.store}, and a rerun resumes from them"
        )
    return summary
