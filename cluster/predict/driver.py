"""The prediction run: enumerate tiles, feed Ray actors, record what is done.

The driver holds tile ids, never imagery or weights. It alone writes the
done record (actors write only their own tiles' chunks), and only after an
actor reports a tile written, so an interrupted run recomputes at most the
tiles that were in flight, and a rewritten tile is byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version

import ray
from tqdm import tqdm

from cluster.errors import ClusterError
from cluster.predict.actor import (
    Predictor,
    PredictorSetup,
    TileResult,
    check_card,
    checkpoint_bytes,
    open_catalog,
)
from cluster.predict.inputcheck import InputCheckError, precheck
from cluster.predict.store import RunAttrs, StoreLayout, TileStore
from cluster.storage.gdalenv import configure_gdal
from cluster.tiles.grid import Tile, count_tiles, iter_tiles
from cluster.tiles.region import Region, load_region
from unet.checkpoint import ModelCard, card_from_bytes

try:
    VERSION = version("statemap")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"


@dataclass(frozen=True)
class RunSpec:
    setup: PredictorSetup
    run_id: str = ""  # derived from the inputs when empty
    actors: int = 0  # 0: one per GPU, else one CPU actor per node's worth of CPUs
    in_flight: int = 3  # batches queued per actor, so it never waits for the driver
    flush_s: float = 5.0  # how often the done record is rewritten while running


@dataclass
class Summary:
    run_id: str
    store: str
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    tile_pixels: int = 0

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
        out += [f"FAILED {msg}" for msg in self.failed.values()]
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


def check_inputs(setup: PredictorSetup) -> Checked:
    """Everything that can be refused before an actor starts (and before the store
    exists): checkpoint against grid and catalog, region, and the input values."""
    data = checkpoint_bytes(setup.checkpoint)
    card = card_from_bytes(data, setup.checkpoint)
    grid = setup.grid
    check_card(card, grid, setup.checkpoint)
    region = load_region(setup.region, grid.crs)
    catalog = open_catalog(setup, card, region)
    catalog.check_covers(region)
    warnings = precheck(
        catalog, grid, region, card, setup.checkpoint, accept=setup.accept_input_shift
    )
    return Checked(
        checkpoint_sha256=hashlib.sha256(data).hexdigest(),
        card=card,
        region=region,
        layout=StoreLayout.for_bounds(grid, region.bounds),
        items=len(catalog),
        warnings=tuple(warnings),
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
    try:
        ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", log_to_driver=False)
    except ConnectionError:
        if os.environ.get("RAY_ADDRESS"):
            raise
        ray.init(include_dashboard=False, log_to_driver=False)


def _concurrency(options: dict[str, float], spec: RunSpec) -> int:
    """Threads per actor. On a GPU, reading and writing the next and last
    batches overlap the model. On the CPU they would share the model's cores
    and oversubscribe torch's thread pool (measured on 2 cores: 2.19 tiles/s
    one batch at a time, 2.0 with three threads), so batches queue instead."""
    return spec.in_flight if options["num_gpus"] else 1


def _actor_options(actors: int, device: str = "auto") -> tuple[int, dict[str, float]]:
    """One actor per GPU. ``device="cuda"`` asks for GPU actors even when the
    cluster has none yet: an autoscaling GPU worker group starts at zero and
    grows to what the actors ask for."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus or device == "cuda":
        return actors or max(gpus, 1), {"num_gpus": 1, "num_cpus": 1}
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
    checked = check_inputs(setup)
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
    summary = Summary(run_id=run_id, store=setup.store, tile_pixels=setup.grid.tile_size**2)

    def pending() -> Iterator[Tile]:
        for tile in iter_tiles(setup.grid, region):
            if tile in done:
                summary.skipped += 1
            else:
                yield tile

    connect_ray()
    n_actors, options = _actor_options(spec.actors, setup.device)
    actor_cls = ray.remote(max_restarts=3, max_task_retries=3)(Predictor)
    threads = int(options["num_cpus"]) if not options["num_gpus"] else 0
    actor_setup = replace(setup, threads=threads)
    actors = [
        actor_cls.options(max_concurrency=_concurrency(options, spec), **options).remote(
            actor_setup
        )
        for _ in range(n_actors)
    ]
    try:  # loaded: time the tiles, not start-up
        ray.get([actor.pid.remote() for actor in actors])
    except ray.exceptions.RayActorError as exc:
        raise ClusterError(f"prediction actors failed to start: {exc}") from exc
    total = count_tiles(setup.grid, region)  # cheap: counted row by row, never listed
    bar = tqdm(desc="predict", unit="tile", total=total, initial=len(done), disable=not progress)
    batches = _batches(pending(), setup.batch_size)
    in_flight: dict[ray.ObjectRef, tuple[int, list[str]]] = {}
    newly_done: list[Tile] = []
    start = last_flush = time.perf_counter()

    stopped: list[str] = []  # an actor's input check refused a tile: send no more

    def submit(actor_index: int) -> bool:
        batch = None if stopped else next(batches, None)
        if batch is None:
            return False
        ref = actors[actor_index].predict.remote(batch)
        in_flight[ref] = (actor_index, batch)
        return True

    for i in range(n_actors):
        for _ in range(spec.in_flight):
            submit(i)
    try:
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            actor_index, batch = in_flight.pop(ready[0])
            try:
                results = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                results = [
                    TileResult(t, False, f"tile {t}: {type(exc).__name__}: {exc}") for t in batch
                ]
            for result in results:
                if result.ok:
                    summary.done += 1
                    newly_done.append(Tile.parse(result.tile_id))
                else:
                    summary.failed[result.tile_id] = result.error
                    if result.fatal and not stopped:
                        stopped.append(result.error)
                if on_result:
                    on_result(result)
            bar.update(len(results))
            if time.perf_counter() - last_flush >= spec.flush_s and newly_done:
                store.mark_done(newly_done)
                newly_done.clear()
                last_flush = time.perf_counter()
            submit(actor_index)
    finally:
        if newly_done:
            store.mark_done(newly_done)
        bar.close()
        for actor in actors:
            ray.kill(actor)
    summary.seconds = time.perf_counter() - start
    if stopped:
        raise InputCheckError(
            f"{stopped[0]} (the run stopped; {summary.done} tiles written before are kept, "
            "a rerun after the fix resumes)"
        )
    return summary
