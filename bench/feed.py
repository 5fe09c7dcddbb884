"""What the reading side delivers: the pipeline with a model that costs nothing.

A whole run (driver -> actor -> its readers on the node's CPUs -> batches ->
Zarr) on the code path a GPU actor takes, with the U-Net skipped
(``PredictorSetup.null_model``): tiles/s is then what readers, their
shared-memory slots, batching and writing deliver, counted from the first
result to the last (the fill before the first result, a batch's read, is
printed alongside). Against it, one thread reading the same tiles with the
same reader (open, read, warp, mosaic, check, normalise; no write) in one
process started as a run's readers are: fresh, in their worker environment
(a process that has read the tiles before has its heap and GDAL block cache
grown already, which a run's readers have not). The two alternate
``--repeats`` times; medians are reported. The driver, Ray's own processes
and the actor share the node's CPUs with the readers, as they do in a run.

512-px tiles by default, the size a state-wide run plans with: Ray's calls and
most of zarr's write cost are fixed per tile, while the read grows with its pixels.

    python bench/feed.py [--size 4096] [--tile-size 512] [--batch-size 4] [--repeats 5]

Last line: ``cpus=<n> read_tiles_s_1thread=<a> feed_tiles_s=<b> efficiency=<b/(n*a)>``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import ray
from pipeline import prepare

from cluster.predict.driver import RunSpec, connect_ray, run_predict
from cluster.predict.readers import TILE_WORKER_ENV, TileReader
from cluster.tiles.grid import iter_tiles
from cluster.tiles.region import load_region


def steady_rate(run_spec: RunSpec, store: Path) -> tuple[float, float, int]:
    """Tiles/s of a run with the model skipped and one reader per CPU, from its first
    result to its last: the pipeline's fill (a batch read before anything comes back)
    is paid once per run, a few hundred ms, which a state's run does not notice but a
    benchmark's minute would."""
    setup = replace(run_spec.setup, store=str(store), null_model=True)
    cpus = int(ray.cluster_resources()["CPU"])
    times: list[float] = []
    summary = run_predict(replace(run_spec, setup=setup, readers=cpus), progress=False,
                          on_result=lambda _: times.append(time.perf_counter()))  # fmt: skip
    if summary.failed:
        raise SystemExit("\n".join(summary.lines()))
    first_batch = min(setup.batch_size, len(times) - 1)  # arrive together, at times[0]
    steady = (len(times) - first_batch) / (times[-1] - times[0])
    return steady, summary.tiles_per_s, summary.done


class OneThread(TileReader):
    """The reference: one reader process, started as the run's readers are (fresh,
    in their worker environment), reading every tile in turn."""

    def read_all(self, tile_ids: list[str]) -> float:
        start = time.perf_counter()
        for tile_id in tile_ids:
            self.read(tile_id)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="region side, px (64 tiles)")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stack", action="store_true", help="three seasons' medians")
    args = parser.parse_args()
    args.device = "cpu"  # the model is skipped: no device to wait for
    with tempfile.TemporaryDirectory(prefix="statemap-bench-") as tmp:
        out = Path(tmp)
        run_spec = prepare(out, args, width=8)
        setup, grid = run_spec.setup, run_spec.setup.grid
        tile_ids = [t.id for t in iter_tiles(grid, load_region(setup.region, grid.crs))]
        connect_ray()
        cpus = int(ray.cluster_resources()["CPU"])
        feeds, reads = [], []
        for k in range(args.repeats):
            feed, whole, done = steady_rate(run_spec, out / f"map{k}.zarr")
            one = ray.remote(num_cpus=0)(OneThread).options(runtime_env=TILE_WORKER_ENV)
            one_thread = one.remote(setup)
            read = len(tile_ids) / ray.get(one_thread.read_all.remote(tile_ids))
            ray.kill(one_thread)
            feeds.append(feed)
            reads.append(read)
            print(f"run {k + 1}: {done} tiles, fed {feed:.1f} tiles/s on {cpus} CPUs "
                  f"({whole:.1f} with the fill), one thread reads {read:.1f} tiles/s")  # fmt: skip
        ray.shutdown()
        read_s, feed_s = statistics.median(reads), statistics.median(feeds)
        print(f"cpus={cpus} read_tiles_s_1thread={read_s:.2f} feed_tiles_s={feed_s:.2f} "
              f"efficiency={feed_s / (cpus * read_s):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
