"""What the reading side delivers: the pipeline with a model that costs nothing.

A whole run (driver -> actor -> its readers on the node's CPUs -> batches ->
Zarr) on the code path a GPU actor takes, with the U-Net skipped
(``PredictorSetup.null_model``): tiles/s is then what readers, Ray's object
store, batching and writing deliver. Against it, one thread reading the same
tiles with the same reader (read, warp, mosaic, check, normalise) in this
process. The two alternate ``--repeats`` times; medians are reported. The
driver, Ray's own processes and the actor share the node's CPUs with the
readers, as they do in a run.

512-px tiles by default, the size a state-wide run plans with: Ray's calls and
most of zarr's write cost are fixed per tile, while the read grows with its pixels.

    python bench/feed.py [--size 4096] [--tile-size 512] [--batch-size 4] [--repeats 3]

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
from pipeline import end_to_end, prepare

from cluster.imagery.reader import close_datasets
from cluster.predict.driver import connect_ray
from cluster.predict.readers import TileReader
from cluster.tiles.grid import iter_tiles
from cluster.tiles.region import load_region


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="region side, px (64 tiles)")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stack", action="store_true", help="three seasons' medians")
    args = parser.parse_args()
    args.device = "cpu"  # the model is skipped: no device to wait for
    with tempfile.TemporaryDirectory(prefix="statemap-bench-") as tmp:
        out = Path(tmp)
        run_spec = prepare(out, args, width=8)
        setup, grid = run_spec.setup, run_spec.setup.grid
        tile_ids = [t.id for t in iter_tiles(grid, load_region(setup.region, grid.crs))]
        reader = TileReader(setup)
        connect_ray()
        cpus = int(ray.cluster_resources()["CPU"])
        feeds, reads = [], []
        for k in range(args.repeats):
            feed, done = end_to_end(replace(run_spec, readers=cpus), out, k, null_model=True)
            close_datasets()  # its GDAL block cache as cold as a fresh reader's
            start = time.perf_counter()
            for tile_id in tile_ids:
                reader.read(tile_id)
            read = len(tile_ids) / (time.perf_counter() - start)
            feeds.append(feed)
            reads.append(read)
            print(f"run {k + 1}: {done} tiles, fed {feed:.1f} tiles/s on {cpus} CPUs, "
                  f"one thread reads {read:.1f} tiles/s")  # fmt: skip
        ray.shutdown()
        read_s, feed_s = statistics.median(reads), statistics.median(feeds)
        print(f"cpus={cpus} read_tiles_s_1thread={read_s:.2f} feed_tiles_s={feed_s:.2f} "
              f"efficiency={feed_s / (cpus * read_s):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
