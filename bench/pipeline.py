"""Model-only against end-to-end prediction throughput, same device and settings.

Model-only: haloed tiles already read and normalised in memory, through the
predictor's own inference step (batch, U-Net, softmax, crop), in an actor
made as the run's are (its CPUs, threads and worker environment). End-to-end:
catalog -> readers (read/warp/mosaic, check, normalise) -> Ray actor -> Zarr,
over the generated region, timed from the first tile sent to the last one
recorded (Ray, actor and reader start-up excluded). The two alternate,
``--repeats`` times each over the same tiles (each run tens of seconds), and
the medians are reported: single short runs on a shared machine were too
noisy to steer by. U-Net of base width 32 and depth 4 on 256-px tiles with a
32-px halo; its weights are untrained (speed does not depend on them).
``--stack`` maps the phenology sample with a stack of three seasons' medians
(12 scenes, 12 input channels) instead of the summer mosaic.

    python bench/pipeline.py [--size 2048] [--batch-size 4|auto] [--repeats 5] [--stack] [--compile]

Last line: ``model_tiles_s=<a> e2e_tiles_s=<b> ratio=<b/a> device=<cpu|cuda>`` (medians).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
import torch
from ray.actor import ActorHandle

from cluster.imagery.temporal import SubPeriod, TimeRecipe
from cluster.predict.actor import Predictor, fit_batch_size
from cluster.predict.driver import RunSpec, actor_options, connect_ray, run_predict
from cluster.predict.readers import TILE_WORKER_ENV
from cluster.predict.setup import PredictorSetup
from cluster.sample.catalog import SampleRegion, write_region
from cluster.sample.phenocatalog import PhenologyRegion, write_phenology_region
from cluster.sample.scene import BANDS, CLASS_COLORS, CLASS_NAMES, SampleSpec
from cluster.tiles.grid import iter_tiles
from cluster.tiles.region import load_region
from jobs.config import PredictConfig
from jobs.sample import TIME_VARIANTS, predict_config
from unet.checkpoint import ModelCard, save_checkpoint
from unet.context import context_record
from unet.model import UNet, UNetConfig

# The halo these benchmarks have always read with: all an untrained U-Net's context needs.
HALO = 32


def prepare(
    out: Path,
    args: argparse.Namespace,
    width: int = 32,
    variant: tuple[dict[str, Any], dict[str, str]] | None = None,
) -> RunSpec:
    """The generated region, an untrained U-Net of ``width`` and the run's spec.
    ``args``: size, tile_size, batch_size, device, stack. ``variant`` (a time section
    and its period, as in ``jobs.sample.TIME_VARIANTS``) maps the phenology sample
    as it says; ``args.stack`` is its stack of three seasons' medians."""
    spec = SampleSpec(seed=0, width=args.size, height=args.size)
    torch.manual_seed(0)
    variant = variant or (TIME_VARIANTS["stack"] if args.stack else None)
    if variant:
        region: SampleRegion | PhenologyRegion = write_phenology_region(out / "sample", spec)
        time_doc, period = variant
        periods = tuple(SubPeriod(**p) for p in time_doc.get("periods", ()))
        recipe = TimeRecipe(**{**time_doc, "periods": periods})
    else:
        region, recipe, period = write_region(out / "sample", spec, layouts=("s2",)), None, None
    layers = max(1, len(recipe.names)) if recipe else 1
    config = UNetConfig(in_bands=4 * layers, num_classes=len(CLASS_NAMES),
                        base_width=width, depth=4)  # fmt: skip
    card = ModelCard(
        config=config,
        bands=BANDS,
        mean=(0.05, 0.07, 0.07, 0.28) * layers,
        std=(0.02, 0.03, 0.04, 0.1) * layers,
        class_names=CLASS_NAMES,
        class_colors=CLASS_COLORS,
        resolution=spec.resolution,
        periods=recipe.names if recipe else (),
        extra={"recipe": {"time": recipe.to_dict()}} if recipe else {},
    )
    model = UNet(config)
    card.extra["context"] = context_record(model, None)  # untrained: ~11 px
    save_checkpoint(out / "model" / "checkpoint.safetensors", model, card)
    doc = predict_config(region, spec, tile_size=args.tile_size)
    doc["grid"]["halo"] = HALO
    if period:
        doc["period"] = period
    doc["run"] = {"batch_size": args.batch_size, "device": args.device,
                  "compile": getattr(args, "compile", False)}  # fmt: skip
    return PredictConfig.model_validate(doc).to_spec(out)


def end_to_end(run_spec: RunSpec, out: Path, k: int, **setup: object) -> tuple[float, int]:
    """Tiles/s of a whole run into a fresh store, and the tiles it mapped."""
    store = str(out / f"map{k}.zarr")
    spec = replace(run_spec, setup=replace(run_spec.setup, store=store, **setup))
    summary = run_predict(spec, progress=False)
    if summary.failed:
        raise SystemExit("\n".join(summary.lines()))
    return summary.tiles_per_s, summary.done


class ModelOnly(Predictor):
    """The run's predictor with its tiles already read: timed in an actor made as the
    run's are (same CPUs, threads and worker environment), so that the two differ
    only in the reading and writing."""

    def __init__(self, setup: PredictorSetup) -> None:
        if not setup.batch_size:  # auto: fitted here as the run fits it
            setup = replace(setup, batch_size=fit_batch_size(setup))
        super().__init__(setup)
        tiles = iter_tiles(self.grid, load_region(setup.region, self.grid.crs))
        read = [(t, x) for t in tiles if (x := self.reader.read(t.id).x) is not None]
        self.tiles, self.xs = [t for t, _ in read], [x for _, x in read]
        self.infer(self.xs[: setup.batch_size], self.tiles[: setup.batch_size])  # warm-up

    def tiles_per_s(self) -> tuple[float, str]:
        start = time.perf_counter()
        for i in range(0, len(self.xs), self.setup.batch_size):
            b = slice(i, i + self.setup.batch_size)
            self.infer(self.xs[b], self.tiles[b])
        return len(self.xs) / (time.perf_counter() - start), self.device.type


def start_model_only(setup: PredictorSetup) -> ActorHandle:
    _, options = actor_options(1, setup.device)
    threads = 0 if options["num_gpus"] else int(options["num_cpus"])
    actor = ray.remote(ModelOnly).options(runtime_env=TILE_WORKER_ENV, **options)
    return actor.remote(replace(setup, threads=threads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="region side, px (64 tiles)")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--batch-size", type=lambda v: v if v == "auto" else int(v), default=4,
                        help="or auto: as many as the GPU's memory takes")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile the U-Net")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--stack", action="store_true", help="three seasons' medians")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="statemap-bench-") as tmp:
        out = Path(tmp)
        run_spec = prepare(out, args)
        connect_ray()
        e2e_runs, model_runs = [], []
        for k in range(args.repeats):
            e2e, done = end_to_end(run_spec, out, k)
            # holds the CPUs a run's actor asks for: started after each run, then stopped
            model_only = start_model_only(replace(run_spec.setup, store=str(out / "map0.zarr")))
            model, device = ray.get(model_only.tiles_per_s.remote())
            ray.kill(model_only)
            e2e_runs.append(e2e)
            model_runs.append(model)
            print(f"run {k + 1}: {done} tiles, end to end {e2e:.3f} tiles/s, "
                  f"model only {model:.3f} tiles/s, ratio {e2e / model:.3f}")  # fmt: skip
        ray.shutdown()
        model_s, e2e_s = statistics.median(model_runs), statistics.median(e2e_runs)
        print(f"model_tiles_s={model_s:.3f} e2e_tiles_s={e2e_s:.3f} "
              f"ratio={e2e_s / model_s:.3f} device={device}")  # fmt: skip


if __name__ == "__main__":
    main()
