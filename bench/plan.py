"""How long ``statemap plan`` takes, and how much memory, for Germany at 1 m.

Generates a country-sized footprint catalog (``cluster.sample.country``:
DOP20-style orthophoto items, 2 km x 2 km tiles in EPSG:25832, over a rough
Germany; about 93,000 items in one ndjson file), the region and a region
config for each grid, then runs ``statemap plan CONFIG`` for a 1 m grid of
512-px tiles (about 1.4 million tiles) and a 10 m grid (about 14,000), each in
a fresh process, so that the peak resident set is the plan's own. Equal peaks
show memory does not grow with the tile count. The seconds are the command's
wall time, imports included (not generating the catalog). The throughput in
the configs is ``--tiles-per-second``: a placeholder unless measured on the
target GPU, so the GPU-hours scale with it.

    python bench/plan.py [--out DIR] [--tile-km 2] [--tiles-per-second 1.0]
    python bench/plan.py --measure STORE   # the output bytes per pixel of a real map

``--measure`` compiles a run's store (e.g. ``statemap demo``'s ``map.zarr``)
with ``cluster.maps.compile.compile_store`` and prints, per COG, the bytes per
valid pixel of its full-resolution blocks and of the whole file (overviews
and headers included): the basis of ``cluster.plan``'s output estimate.

Per plan: ``res=<m> seconds=<s> peak_rss_mb=<b>``; last line: the 1 m
plan's ``tiles=<n> items=<m> input_gb=<x> output_gb=<y> gpu_hours=<z>``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CRS = "EPSG:25832"


def rss_mb() -> float:
    """Current resident set (Linux), else the peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return pages * resource.getpagesize() / 2**20


def generate(out: Path, tile_km: float) -> tuple[Path, Path]:
    """The region GeoJSON and the footprint catalog (ndjson), written into ``out``."""
    from cluster.sample.country import FootprintSpec, footprint_items, germany, write_items

    out.mkdir(parents=True, exist_ok=True)
    region, catalog = out / "germany.geojson", out / f"dop20_{tile_km:g}km.ndjson"
    outline = germany(20_000)
    region.write_text(json.dumps(outline))
    if not catalog.exists():
        start = time.perf_counter()
        n = write_items(catalog, footprint_items(outline, FootprintSpec(tile_m=tile_km * 1000)))
        print(
            f"catalog: {n:,} items, {catalog.stat().st_size / 1e6:,.0f} MB, written in "
            f"{time.perf_counter() - start:.1f} s: {catalog}"
        )
    return region, catalog


def write_config(out: Path, region: Path, catalog: Path, resolution: float, tps: float) -> Path:
    """A region config for ``statemap plan`` and the small checkpoint it names
    (plan reads its bands and resolution; the weights are never used)."""
    import yaml

    from unet.checkpoint import ModelCard, save_checkpoint
    from unet.context import context_record
    from unet.model import UNet, UNetConfig

    bands = ("red", "green", "blue", "nir")
    config = UNetConfig(in_bands=4, num_classes=4, base_width=4, depth=3)
    card = ModelCard(
        config, bands, (0.1,) * 4, (0.1,) * 4, ("a", "b", "c", "d"),
        ("#000000", "#555555", "#aaaaaa", "#ffffff"), resolution,
    )  # fmt: skip
    model = UNet(config)
    card.extra["context"] = context_record(model, None)  # untrained: a few px
    checkpoint = out / f"model_{resolution:g}m.safetensors"
    save_checkpoint(checkpoint, model, card)
    doc = {
        "name": f"germany-{resolution:g}m",
        "region": str(region),
        "catalog": str(catalog),
        "collections": ["dop20"],
        "period": {"start": "2021-01-01", "end": "2023-12-31"},
        "checkpoint": str(checkpoint),
        "grid": {"crs": CRS, "resolution": resolution, "tile_size": 512, "halo": 32},
        "output": {"stores": str(out / "stores"), "maps": str(out / "maps")},
        "plan": {"tiles_per_gpu_second": tps, "measured": "bench/plan.py --tiles-per-second"},
    }
    path = out / f"germany_{resolution:g}m.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


_PLAN = (
    "import resource, sys\n"
    "from jobs.cli import main\n"
    "rc = main(['plan', sys.argv[1]])\n"
    "print(f'peak_rss_mb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}')\n"
    "sys.exit(rc)\n"
)


def plan_command(config: Path) -> tuple[list[str], float, str]:
    """``statemap plan CONFIG`` in a fresh process: its lines, the wall seconds
    (imports included) and that process's own peak resident set."""
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", _PLAN, str(config)], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if run.returncode:
        sys.exit(f"statemap plan {config} failed:\n{run.stderr}")
    *lines, peak = run.stdout.splitlines()
    return lines, seconds, peak


def measure(store: str) -> None:
    """Bytes per valid pixel of the COGs compiled from ``store``."""
    import rasterio

    from cluster.maps.compile import compile_store

    with tempfile.TemporaryDirectory(prefix="bench-plan-cog-") as tmp:
        totals = [0.0, 0.0]
        for path in compile_store(store, tmp, use_ray=False):
            with rasterio.open(path) as ds:
                valid = int((ds.read(1) != 255).sum())
                (bw, bh), (w, h) = ds.block_shapes[0], (ds.width, ds.height)
                blocks = sum(
                    int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1) or 0)
                    for r in range(-(-h // bh)) for c in range(-(-w // bw))
                )  # fmt: skip
            size = path.stat().st_size
            totals = [totals[0] + blocks / valid, totals[1] + size / valid]
            print(f"{path.name}: {w} x {h} px, {valid:,} valid; full resolution "
                  f"{blocks / valid:.4f} bytes/px, whole file {size / valid:.4f}")  # fmt: skip
        print(f"both COGs: full resolution {totals[0]:.4f} bytes/px (x 4/3 = "
              f"{totals[0] * 4 / 3:.4f}), whole files {totals[1]:.4f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="folder for the catalog (kept)")
    ap.add_argument("--tile-km", type=float, default=2.0, help="orthophoto tile side, km")
    ap.add_argument("--tiles-per-second", type=float, default=1.0, help="measured GPU throughput")
    ap.add_argument("--measure", metavar="STORE", help="measure a compiled map instead")
    args = ap.parse_args(argv)
    if args.measure:
        measure(args.measure)
        return
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        out = args.out or Path(tmp)
        region, catalog = generate(out, args.tile_km)
        last = ""
        for resolution in (10.0, 1.0):
            config = write_config(out, region, catalog, resolution, args.tiles_per_second)
            lines, seconds, peak = plan_command(config)
            print("\n".join(f"  {line}" for line in lines[:-1]))
            print(f"res={resolution:g} seconds={seconds:.1f} {peak}")
            last = lines[-1]
        print(last)


if __name__ == "__main__":
    main()
