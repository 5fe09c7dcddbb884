"""Small run stores with known classes at known places, written the way a run writes them.

The map (``MAP``) has four classes in blocks of known size, a nodata band at
the top and one tile never written (reads as nodata); the "truth" (``TRUTH``)
is the map with some conifer that is really broadleaf and some open land that
is really water, so the map's pixel counts are biased and the estimates are
not trivial. Confidence is lower where the map is wrong, as a model's would be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cluster.predict.store import NODATA, RunAttrs, StoreLayout, TileStore
from cluster.tiles.grid import Grid, Tile

TS = 16
ROWS, COLS = 4, 5  # tiles
ROW0, COL0 = 2, 3
CLASS_NAMES = ("water", "open land", "broadleaf", "conifer")
CLASS_COLORS = ("#1f78b4", "#ffff99", "#33a02c", "#004d00")
GRID = Grid("EPSG:25832", (300000.0, 5600000.0), 10.0, TS, 2)
LAYOUT = StoreLayout(GRID, row0=ROW0, col0=COL0, rows=ROWS, cols=COLS)
ATTRS = RunAttrs("run-acc", "cd" * 32, CLASS_NAMES, CLASS_COLORS, "0.1.0")
UNWRITTEN = (3, 4)  # tile (row, col) inside the layout, never written


def known_map(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(map classes, confidence 0..254 with 255 nodata, truth classes), all (64, 80)."""
    height, width = ROWS * TS, COLS * TS
    rng = np.random.default_rng(seed)
    classes = np.full((height, width), 3, np.uint8)  # conifer
    classes[:, :12] = 0  # water
    classes[:, 12:30] = 1  # open land
    classes[20:, 30:55] = 2  # broadleaf
    classes[:3] = NODATA
    r, c = UNWRITTEN
    classes[r * TS : (r + 1) * TS, c * TS : (c + 1) * TS] = NODATA
    truth = classes.copy()
    wrong_conifer = (classes == 3) & (rng.random(classes.shape) < 0.25)
    truth[wrong_conifer] = 2
    wrong_open = (classes == 1) & (rng.random(classes.shape) < 0.15)
    truth[wrong_open] = 0
    confidence = rng.integers(150, 255, classes.shape).astype(np.uint8)
    wrong = truth != classes
    confidence[wrong] = rng.integers(60, 160, int(wrong.sum())).astype(np.uint8)
    confidence[classes == NODATA] = NODATA
    return classes, confidence, truth


def write_store(
    uri: str | Path, classes: np.ndarray, confidence: np.ndarray, attrs: RunAttrs = ATTRS
) -> TileStore:
    """A store of ``LAYOUT`` holding the arrays, tile by tile; ``UNWRITTEN`` is left out."""
    store = TileStore.create_or_open(str(uri), LAYOUT, attrs)
    done = []
    for i in range(ROWS):
        for j in range(COLS):
            if (i, j) == UNWRITTEN:
                continue
            window = np.s_[i * TS : (i + 1) * TS, j * TS : (j + 1) * TS]
            tile = Tile(ROW0 + i, COL0 + j)
            store.write_tile(tile, classes[window].copy(), confidence[window].copy())
            done.append(tile)
    store.mark_done(done)
    return store


def pixel(x: float, y: float) -> tuple[int, int]:
    """(row, col) in the store of a map-CRS point."""
    t = LAYOUT.transform
    return int(np.floor((t.f - y) / -t.e)), int(np.floor((x - t.c) / t.a))
