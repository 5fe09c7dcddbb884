"""How long it takes, and how much memory, to enumerate a country's tiles.

Germany at 1 m in 512-px tiles is about 1.4 million tiles (DESIGN.md, scale
table). The driver enumerates them at the start of every run, so this must
take seconds, and memory must stay flat however many tiles there are: the
enumeration works strip by strip and never lists them.

The region is a rough outline of Germany (about 40 vertices, lon/lat),
reprojected to EPSG:25832 and densified to a realistic boundary's vertex
count, with a lake-sized hole so the hole path is exercised too.

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

from cluster.grid import Grid, count_tiles, iter_tiles, load_region

CRS = "EPSG:25832"
# Clockwise from the Danish border; coarse on purpose, densified below.
GERMANY_LONLAT = [
    (8.6, 54.9), (9.9, 54.8), (11.0, 54.4), (12.5, 54.5), (13.6, 54.6), (14.2, 53.9),
    (14.4, 53.3), (14.6, 52.6), (14.7, 51.9), (15.0, 51.1), (14.3, 50.9), (13.5, 50.7),
    (12.9, 50.4), (12.1, 50.3), (12.5, 49.7), (13.0, 49.3), (13.8, 48.8), (13.4, 48.4),
    (13.0, 47.5), (12.2, 47.7), (11.1, 47.4), (10.5, 47.5), (9.6, 47.5), (8.6, 47.6),
    (7.6, 47.6), (7.6, 48.1), (8.2, 49.0), (7.0, 49.1), (6.4, 49.2), (6.4, 49.8),
    (6.1, 50.1), (6.2, 50.5), (6.0, 50.8), (5.9, 51.1), (6.2, 51.5), (6.0, 51.9),
    (6.8, 52.0), (7.0, 52.2), (7.1, 52.9), (7.2, 53.3), (7.0, 53.6), (8.0, 53.7),
    (8.6, 53.9), (8.9, 54.4), (8.6, 54.9),
]  # fmt: skip
LAKE_LONLAT = [(12.3, 53.35), (12.75, 53.35), (12.75, 53.6), (12.3, 53.6), (12.3, 53.35)]


def germany(vertices: int) -> dict:
    """A GeoJSON Feature (WGS 84) of rough Germany with ``vertices`` boundary points."""
    shell = shapely.Polygon(GERMANY_LONLAT, [LAKE_LONLAT])
    step = shell.exterior.length / max(vertices, len(GERMANY_LONLAT))
    dense = shapely.segmentize(shell, step)
    return {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(dense)}


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
