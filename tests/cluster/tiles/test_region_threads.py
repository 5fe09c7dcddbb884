"""A run's reader masks several tiles at once against one region, whose geometry is
prepared (GEOS builds its indexes lazily, on first use): shapely's predicates on one
prepared geometry from several threads crashed the reader with a segfault. Run in a
child process, so a crash fails the test instead of ending the session."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import shapely

    from cluster.tiles.grid import Grid, Tile, region_mask
    from cluster.tiles.region import Region

    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * np.pi, 20_000, endpoint=False)  # a state's many vertices
    r = 50_000 * (1 + 0.05 * np.sin(37 * t) + 0.02 * rng.standard_normal(t.size))
    ring = np.c_[r * np.cos(t), r * np.sin(t)]
    grid = Grid("EPSG:25832", (-20_480.0, 20_480.0), 10.0, tile_size=64, halo=0)
    tiles = [Tile(row, col) for row in range(32) for col in range(32)]  # all inside
    for _ in range(100):
        region = Region(shapely.Polygon(ring), "EPSG:25832")  # prepared, indexes not built
        start = threading.Barrier(8)

        def mask(part: int) -> int:
            start.wait()
            return sum(int(region_mask(grid, tile, region).all()) for tile in tiles[part::8])

        with ThreadPoolExecutor(8) as pool:
            assert sum(pool.map(mask, range(8))) == len(tiles)
    print("ok")
    """
)


def test_region_masks_from_many_threads_at_once():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr)
