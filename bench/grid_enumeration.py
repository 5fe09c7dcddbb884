"""How long it takes, and how much memory, to enumerate a country's tiles.

Germany at 1 m in 512-px tiles is about 1.4 million tiles (DESIGN.md, scale
table). The driver enumerates them at the start of every run, so this must
take seconds, and memory must stay flat however many tiles there are: the
enumeration works strip by strip and never lists them.

The region is a rough outline of Germany (``cluster.sample.country.germany``:
about 40 vertices, lon/lat), reprojected to EPSG:25832 and densified to a
realistic boundary's vertex count, with a lake-sized hole so the hole path
is exercised too.

    python bench/grid_enumeration.py [--resolution 1] [--tile-size 512] [--vertices 20000]

Last line: ``tiles=<n> seconds=<s> peak_mb=<m>``: enumeration time and the peak growth
of the resident set while enumerating (sampled every 20,000 tiles).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import shapely

from cluster.sample.country import germany
from cluster.tiles.grid import Grid, count_tiles, iter_tiles
from cluster.tiles.region import load_region

CRS = "EPSG:25832"


def rss_mb() -> float:
    """Current resident set size: the process peak (ru_maxrss) would hide growth below
    the peak that loading and reprojecting the region already reached."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:  # not Linux: fall back to the peak so far (kB on Linux, bytes on macOS)
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return pages * resource.getpagesize() / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--vertices", type=int, default=20_000)
    args = parser.parse_args(argv)

    region = load_region(germany(args.vertices), CRS)
    grid = Grid.covering(CRS, region.bounds, args.resolution, args.tile_size, halo=32)
    minx, miny, maxx, maxy = region.bounds
    print(
        f"region {(maxx - minx) / 1e3:.0f} km x {(maxy - miny) / 1e3:.0f} km, "
        f"{region.geometry.area / 1e6:,.0f} km², {shapely.get_num_coordinates(region.geometry)} "
        f"vertices; grid {args.resolution} m, {args.tile_size} px tiles"
    )

    start = time.perf_counter()
    n_counted = count_tiles(grid, region)
    print(f"count_tiles: {n_counted} in {time.perf_counter() - start:.2f} s")

    rss_before = peak = rss_mb()
    start = time.perf_counter()
    n, last = 0, None
    for tile in iter_tiles(grid, region):
        n += 1
        last = tile
        if n % 20_000 == 0:
            peak = max(peak, rss_mb())
    seconds = time.perf_counter() - start
    grown = max(peak, rss_mb()) - rss_before
    assert n == n_counted, (n, n_counted)
    print(f"iter_tiles: last tile {last.id if last else None}, {n / seconds:,.0f} tiles/s")
    print(f"tiles={n} seconds={seconds:.2f} peak_mb={grown:.1f}")


if __name__ == "__main__":
    main()
