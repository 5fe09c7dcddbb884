"""Model-only against end-to-end prediction throughput, same device and settings.

Model-only: haloed tiles already in memory, through the predictor's own
inference step (normalise, batch, U-Net, softmax, crop). End-to-end: catalog
-> read/warp/mosaic -> Ray actor -> Zarr, over the generated region, timed
from the first tile sent to the last one recorded (Ray and actor start-up
excluded; reported separately). U-Net of base width 32 and depth 4 on
256-px tiles with a 32-px halo; its weights are untrained (speed does not
depend on them). ``--stack`` maps the phenology sample with a stack of three
seasons' medians (12 scenes, 12 input channels) instead of the summer mosaic.

    python bench/pipeline.py [--size 1536] [--batch-size 4] [--stack]

The end-to-end run goes first (it creates the store the predictor writes
to); model-only then runs in this process with the same threads.

Last line: ``model_tiles_s=<a> e2e_tiles_s=<b> ratio=<b/a> device=<cpu|cuda>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ray
import torch

from cluster.imagery.temporal import SubPeriod, TimeRecipe
from cluster.predict.actor import Predictor
from cluster.predict.driver import connect_ray, run_predict
from cluster.sample.catalog import SampleRegion, write_region
from cluster.sample.phenocatalog import PhenologyRegion, write_phenology_region
from cluster.sample.scene import BANDS, CLASS_COLORS, CLASS_NAMES, SampleSpec
from cluster.tiles.grid import Grid, Tile
from jobs.config import PredictConfig
from jobs.sample import SEASONS, TIME_VARIANTS, predict_config
from unet.checkpoint import ModelCard, save_checkpoint
from unet.model import UNet, UNetConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1536, help="region side, px (36 tiles)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--model-batches", type=int, default=6)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--stack", action="store_true", help="three seasons' medians")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="statemap-bench-") as tmp:
        out = Path(tmp)
        spec = SampleSpec(seed=0, width=args.size, height=args.size)
        torch.manual_seed(0)
        if args.stack:
            region: SampleRegion | PhenologyRegion = write_phenology_region(out / "sample", spec)
            time_doc, period = TIME_VARIANTS["stack"]
            recipe = TimeRecipe(**{**time_doc, "periods": tuple(SubPeriod(**p) for p in SEASONS)})
        else:
            region, recipe, period = write_region(out / "sample", spec, layouts=("s2",)), None, None
        layers = recipe.names if recipe else ()
        config = UNetConfig(in_bands=4 * max(1, len(layers)), num_classes=len(CLASS_NAMES),
                            base_width=32, depth=4)  # fmt: skip
        card = ModelCard(
            config=config,
            bands=BANDS,
            mean=(0.05, 0.07, 0.07, 0.28) * max(1, len(layers)),
            std=(0.02, 0.03, 0.04, 0.1) * max(1, len(layers)),
            class_names=CLASS_NAMES,
            class_colors=CLASS_COLORS,
            resolution=spec.resolution,
            periods=layers,
            extra={"recipe": {"time": recipe.to_dict()}} if recipe else {},
        )
        save_checkpoint(out / "model" / "checkpoint.safetensors", UNet(config), card)
        doc = predict_config(region, spec, tile_size=256)
        if period:
            doc["period"] = period
        doc["run"] = {"batch_size": args.batch_size, "device": args.device}
        run_spec = PredictConfig.model_validate(doc).to_spec(out)

        t0 = time.perf_counter()
        connect_ray()
        summary = run_predict(run_spec, progress=False)
        total = time.perf_counter() - t0
        ray.shutdown()
        for line in summary.lines():
            print(line)
        print(f"end to end incl. Ray and actor start-up: {summary.done / total:.3f} tiles/s")
        t0 = time.perf_counter()
        predictor = Predictor(run_spec.setup)
        grid = run_spec.setup.grid
        tiles = _first_tiles(grid, args.size, args.batch_size)
        raws = [predictor.read(t).data for t in tiles]
        predictor.infer(raws)  # warm-up
        start = time.perf_counter()
        for _ in range(args.model_batches):
            predictor.infer(raws)
        model_s = time.perf_counter() - start
        model_tiles_s = args.model_batches * len(raws) / model_s
        device = predictor.device.type
        print(
            f"model only: {model_tiles_s:.3f} tiles/s ({model_s:.1f} s, set-up {start - t0:.1f} s)"
        )

        e2e = summary.tiles_per_s
        print(
            f"model_tiles_s={model_tiles_s:.3f} e2e_tiles_s={e2e:.3f} "
            f"ratio={e2e / model_tiles_s:.3f} device={device}"
        )


def _first_tiles(grid: Grid, size: int, n: int) -> list[Tile]:
    per_row = size // grid.tile_size
    return [Tile(i // per_row, i % per_row) for i in range(n)]


if __name__ == "__main__":
    main()
