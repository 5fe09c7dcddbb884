"""Peak memory and time of an accuracy assessment of a state-sized map.

Writes a run store of ``--size`` x ``--size`` px (default 40,000: 1.6 billion
pixels, a state at 10 m is 2-4 times that), tile by tile as a run does, with
stands of four classes and a confidence layer; then, each as its own process
as a user runs them, ``statemap sample-design`` (strata = class x confidence
band, proportional with a minimum per stratum) and ``statemap assess`` (with
its report) on a sample labelled from a known truth (15% of the map's conifer
is broadleaf). Peak resident memory is each command's maximum RSS, as the kernel counts it.

    python bench/accuracy.py [--size 40000] [--tile-size 1000] [--n 1200]

Last line: ``size_px=<s> design_peak_mb=<a> design_s=<b> assess_peak_mb=<c> assess_s=<d>``.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cluster.predict.store import RunAttrs, StoreLayout, TileStore
from cluster.tiles.grid import Grid, Tile

CLASSES = ("water", "open land", "broadleaf", "conifer")
COLORS = ("#1f78b4", "#ffff99", "#33a02c", "#004d00")
STAND_PX = 250  # stands of 2.5 ha... 6 ha at 10 m


def write_store(uri: Path, size: int, tile: int) -> float:
    """The store, tile by tile; seconds taken."""
    start = time.perf_counter()
    grid = Grid("EPSG:25832", (300_000.0, 5_600_000.0), 10.0, tile, 0)
    tiles = -(-size // tile)
    layout = StoreLayout(grid, row0=0, col0=0, rows=tiles, cols=tiles)
    store = TileStore.create_or_open(str(uri), layout, RunAttrs("bench-acc", "ab" * 32,
                                                                 CLASSES, COLORS, "0"))  # fmt: skip
    stands = -(-tiles * tile // STAND_PX)
    rng = np.random.default_rng(0)
    stand_class = rng.choice(4, size=(stands, stands), p=(0.05, 0.15, 0.35, 0.45)).astype(np.uint8)
    per = tile // STAND_PX
    for r in range(tiles):
        done = []
        for c in range(tiles):
            block = stand_class[r * per : (r + 1) * per, c * per : (c + 1) * per]
            classes = np.kron(block, np.ones((STAND_PX, STAND_PX), np.uint8))
            noise = np.random.default_rng(r * tiles + c).integers(0, 90, classes.shape)
            confidence = (160 + noise).astype(np.uint8)
            store.write_tile(Tile(r, c), classes, confidence)
            done.append(Tile(r, c))
        store.mark_done(done)
    return time.perf_counter() - start


def timed(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one ``statemap`` command, from the kernel's account of
    the child (wait4), so no GNU time is needed."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen([sys.executable, "-m", "jobs.cli", *args], stdout=out,
                                 stderr=subprocess.STDOUT, text=True)  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        if child.returncode != 0:
            out.seek(0)
            raise SystemExit(f"statemap {args[0]} failed:\n{out.read()[-4000:]}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss: KiB on Linux


def label(samples: Path, out: Path) -> None:
    """The reference column from the truth: the map's class, but 15% of conifer is broadleaf."""
    with samples.open(newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(1)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            wrong = row["map_class"] == "conifer" and rng.random() < 0.15
            writer.writerow({**row, "reference": "broadleaf" if wrong else row["map_class"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=40_000)
    parser.add_argument("--tile-size", type=int, default=1000)
    parser.add_argument("--n", type=int, default=1200)
    args = parser.parse_args()
    if args.tile_size % STAND_PX:
        raise SystemExit(f"--tile-size must be a multiple of {STAND_PX}")
    with tempfile.TemporaryDirectory(prefix="statemap-bench-acc-") as tmp:
        folder = Path(tmp)
        store = folder / "map.zarr"
        seconds = write_store(store, args.size, args.tile_size)
        print(f"store {args.size} x {args.size} px written in {seconds:.0f} s", flush=True)
        design_mb, design_s = timed(["sample-design", str(store), "--out", str(folder / "acc"),
                                     "--n", str(args.n), "--allocation", "proportional-min",
                                     "--confidence-bands", "0.8"])  # fmt: skip
        print(f"sample-design: peak {design_mb:.0f} MB, {design_s:.1f} s", flush=True)
        label(folder / "acc" / "samples.csv", folder / "acc" / "labelled.csv")
        assess_mb, assess_s = timed(["assess", str(store), str(folder / "acc" / "labelled.csv"),
                                     "--design", str(folder / "acc" / "design.json")])  # fmt: skip
        print(f"assess (with report.html): peak {assess_mb:.0f} MB, {assess_s:.1f} s", flush=True)
    print(f"size_px={args.size} design_peak_mb={design_mb:.0f} design_s={design_s:.1f} "
          f"assess_peak_mb={assess_mb:.0f} assess_s={assess_s:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
