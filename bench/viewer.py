"""How fast the viewer shows a state's map split into parts: first complete render.

A generated map of 2 x 2 parts of ``--part-px`` square (default 10,000 px each,
as `statemap compile --max-part-px` splits a state), classes in stand-sized
patches, is compiled the way a run compiles it (COGs with overviews + viewer),
served by ``statemap view`` on loopback and opened ``--runs`` times in Debian's
headless Chromium (software WebGL), each time in a fresh browser context (no
cache). The figure is the time from navigation start to the map's first
complete render (every tile of the view drawn: OpenLayers' ``rendercomplete``
once every part's header is read), as the page records it.

    python bench/viewer.py            # the issue's case: 4 parts of 10,000 x 10,000 px

Last line: ``parts=4 part_px=<n> first_render_s=<median> first_render_max_s=<max>``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cluster.predict.store import RunAttrs, StoreLayout, TileStore  # noqa: E402
from cluster.tiles.grid import Grid, Tile  # noqa: E402
from jobs.compile import compile_to  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]
NAMES = ("water", "open land", "broadleaf", "conifer", "built-up")
COLORS = ("#1f78b4", "#ffff99", "#33a02c", "#004d00", "#e31a1c")
PATCH = 25  # px: stand-sized patches of one class


def make_maps(root: Path, part_px: int, tile_px: int) -> Path:
    tiles = 2 * part_px // tile_px
    grid = Grid("EPSG:25832", (300000.0, 5600000.0), 10.0, tile_px, 0)
    layout = StoreLayout(grid, row0=0, col0=0, rows=tiles, cols=tiles)
    store = TileStore.create_or_open(
        str(root / "store.zarr"), layout, RunAttrs("bench-view", "ab" * 32, NAMES, COLORS, "0.1.0")
    )
    done = []
    for r in range(tiles):
        for c in range(tiles):
            rng = np.random.default_rng([r, c])
            patches = rng.integers(0, len(NAMES), (tile_px // PATCH + 1,) * 2, dtype=np.uint8)
            cls = np.kron(patches, np.ones((PATCH, PATCH), np.uint8))[:tile_px, :tile_px]
            conf = rng.integers(120, 255, (tile_px, tile_px), dtype=np.uint8)
            store.write_tile(Tile(r, c), cls.copy(), conf)
            done.append(Tile(r, c))
    store.mark_done(done)
    compile_to(str(root / "store.zarr"), str(root / "maps"), max_part_px=part_px)
    return root / "maps"


def serve(maps: Path) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "jobs.cli", "view", str(maps), "--port", "0"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    found: list[str] = []
    event = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            if m := re.search(r"statemap viewer: (\S+)", line):
                found.append(m.group(1))
                event.set()

    threading.Thread(target=read, daemon=True).start()
    if not event.wait(60):
        proc.kill()
        raise SystemExit("statemap view printed no URL")
    return proc, found[0]


def first_renders(url: str, runs: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(url)
            page.wait_for_function(
                "() => window.statemapViewer && "
                "(window.statemapViewer.error || window.statemapViewer.firstRender)",
                timeout=120_000,
            )
            error = page.evaluate("() => window.statemapViewer.error")
            if error:
                raise SystemExit(f"the viewer failed: {error}")
            times.append(page.evaluate("() => window.statemapViewer.firstRender") / 1000)
            context.close()
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part-px", type=int, default=10_000)
    parser.add_argument("--tile-px", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-viewer-") as tmp:
        t0 = time.perf_counter()
        maps = make_maps(Path(tmp), args.part_px, args.tile_px)
        size = sum(p.stat().st_size for p in maps.glob("*.tif")) / 1e6
        print(f"made and compiled 4 parts of {args.part_px} px in "
              f"{time.perf_counter() - t0:.0f} s ({size:.0f} MB of COGs)")  # fmt: skip
        proc, url = serve(maps)
        try:
            times = first_renders(url, args.runs)
        finally:
            proc.terminate()
            proc.wait(20)
    print("first complete render (s):", " ".join(f"{t:.2f}" for t in times))
    print(f"parts=4 part_px={args.part_px} first_render_s={statistics.median(times):.2f} "
          f"first_render_max_s={max(times):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
