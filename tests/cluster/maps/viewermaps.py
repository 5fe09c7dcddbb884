"""A compiled run with known classes at known places, for the viewer's browser tests.

1,024 x 1,024 px of 10 m in 256-px tiles, compiled with ``max_part_px=512`` into
four parts (each with one overview level), the way ``statemap compile`` writes
them: COGs, VRTs, quicklook and the viewer. Five classes in blocks that cross
the part borders, a nodata band along the top; confidence rises west to east.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cluster.predict.store import NODATA, RunAttrs, StoreLayout, TileStore
from cluster.tiles.grid import Grid, Tile
from jobs.compile import compile_to

TS, TILES = 256, 4
SIZE = TS * TILES
RES = 10.0
ORIGIN = {"EPSG:25832": (300000.0, 5600000.0), "EPSG:3035": (4100000.0, 3000000.0)}
CLASS_NAMES = ("water", "open land", "broadleaf", "conifer", "built-up")
CLASS_COLORS = ("#1f78b4", "#ffff99", "#33a02c", "#004d00", "#e31a1c")
NODATA_ROWS = 40
# (row, col) of a pixel well inside each class's block (>= 60 px from any other class).
INSIDE = {0: (500, 150), 1: (300, 500), 2: (850, 500), 3: (800, 880), 4: (350, 900)}


def classes(shift: int = 0) -> np.ndarray:
    """The class map; ``shift`` renumbers the classes (another run of the same place)."""
    cls = np.full((SIZE, SIZE), 3, np.uint8)
    cls[:, :300] = 0
    cls[:600, 300:700] = 1
    cls[600:, 300:700] = 2
    cls[200:500, 750:] = 4
    cls = ((cls + shift) % len(CLASS_NAMES)).astype(np.uint8)
    cls[:NODATA_ROWS] = NODATA
    return cls


def confidence(cls: np.ndarray) -> np.ndarray:
    conf = np.repeat((np.arange(SIZE) * 254 // SIZE)[None, :], SIZE, 0).astype(np.uint8)
    conf[cls == NODATA] = NODATA
    return conf


def coordinate(crs: str, row: int, col: int) -> tuple[float, float]:
    """The map-CRS centre of pixel (row, col)."""
    x0, y0 = ORIGIN[crs]
    return x0 + (col + 0.5) * RES, y0 - (row + 0.5) * RES


def compiled_run(root: Path, crs: str = "EPSG:25832", shift: int = 0, run_id: str = "run-view"):
    """Compile the map into ``root/maps`` (the way a run does); returns the maps folder."""
    grid = Grid(crs, ORIGIN[crs], RES, TS, 0)
    layout = StoreLayout(grid, row0=0, col0=0, rows=TILES, cols=TILES)
    attrs = RunAttrs(run_id, "ab" * 32, CLASS_NAMES, CLASS_COLORS, "0.1.0")
    store = TileStore.create_or_open(str(root / "store.zarr"), layout, attrs)
    cls = classes(shift)
    conf = confidence(cls)
    done = []
    for i in range(TILES):
        for j in range(TILES):
            window = np.s_[i * TS : (i + 1) * TS, j * TS : (j + 1) * TS]
            store.write_tile(Tile(i, j), cls[window].copy(), conf[window].copy())
            done.append(Tile(i, j))
    store.mark_done(done)
    compile_to(str(root / "store.zarr"), str(root / "maps"), max_part_px=512)
    return root / "maps"
