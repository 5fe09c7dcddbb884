"""The chip store at scale: tens of thousands of chips made on Ray, then trained from.

Generates a large sample region (Sentinel-2 scenes only) and its stands as
polygons, makes one chip per chip-grid cell that meets a stand (``--chip`` px
plus a ``--halo``), on Ray actors on this machine's CPUs, then trains a small
U-Net from the chip store for ``--steps`` steps, streaming chips from disk.
Chips per second count the build from start to end (labels and catalog
opened, chips placed, the store created, Ray's actors started, every chip read,
rasterised, written and recorded). The peak memory is this process's peak
resident set (driver and training: the chips are never all in memory); the
region is generated in a process of its own and the chip makers run in Ray's
worker processes.

    python bench/chips.py [--size 4608] [--chip 32] [--halo 16] [--steps 100]

Last line: ``chips=<n> chips_s=<x> peak_mb=<m>``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from cluster.sample.catalog import SampleRegion, write_region
from cluster.sample.references import References, write_references
from cluster.sample.scene import BANDS, CLASS_COLORS, CLASS_NAMES, SampleSpec
from cluster.tiles.grid import Grid
from cluster.training.chips import ChipSpec, build_chips
from cluster.training.labels import LabelSpec
from cluster.training.split import SplitSpec
from cluster.training.train import CatalogTrainSpec, train_from_catalog
from unet.model import UNetConfig
from unet.train import Budget


def _write(out: Path, spec: SampleSpec) -> tuple[SampleRegion, References]:
    region = write_region(out / "sample", spec, layouts=("s2",))
    return region, write_references(region, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4608, help="region width and height, px")
    parser.add_argument("--chip", type=int, default=32)
    parser.add_argument("--halo", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None, help="keep outputs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="statemap-chips-") as tmp:
        out = args.out or Path(tmp)
        spec = SampleSpec(seed=1, width=args.size, height=args.size)
        start = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            # In a process of its own: the generator's arrays are not what is measured.
            region, refs = pool.submit(_write, out, spec).result()
        print(f"region {args.size}x{args.size} px written in {time.perf_counter() - start:.0f} s")
        chips = ChipSpec(
            catalog=str(region.catalog),
            grid=Grid(spec.crs, spec.origin, spec.resolution, args.chip, args.halo),
            bands=BANDS, class_names=CLASS_NAMES,
            labels=LabelSpec(str(refs.stands), field="species"),
        )  # fmt: skip
        uri = str(out / "chips.zarr")
        made = build_chips(chips, uri, progress=False)
        print(made.line())
        train = CatalogTrainSpec(
            chips=chips, chip_store=uri, output=out / "model", class_colors=CLASS_COLORS,
            split=SplitSpec(block_px=8 * args.chip, buffer_px=64),
            model=UNetConfig(len(BANDS), len(CLASS_NAMES), base_width=8, depth=3),
            budget=Budget(max_seconds=1e9, max_steps=args.steps, batch_size=16, lr=3e-3,
                          evaluations=0),
        )  # fmt: skip
        result = train_from_catalog(train, progress=False)
        print(result.scores.table())
        print(f"trained {result.steps} steps in {result.seconds:.0f} s from the chip store")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"chips={made.chips} chips_s={made.made / made.seconds:.1f} peak_mb={peak_mb:.0f}")


if __name__ == "__main__":
    main()
