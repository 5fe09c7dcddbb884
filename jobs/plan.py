"""``statemap plan CONFIG``: what a regional run would do, before it runs.

Counts the tiles (streamed, never listed) and the catalog items over the
region, the bytes to read and to write, and turns a measured throughput into
GPU-hours. The throughput is the config's ``plan.tiles_per_gpu_second``
(measure it on the target GPU with ``statemap plan --measure`` there); without
one, plan times the checkpoint's U-Net on this machine's device and says so.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from cluster.plan import plan_run
from cluster.predict.setup import checkpoint_bytes
from jobs.config import load_region_config
from jobs.period import Period
from unet.checkpoint import parse_checkpoint
from unet.fit import fit_batch
from unet.model import autocast, model_input, pick_device, prepare_for_device


def measure_tiles_per_second(
    checkpoint: str, tile_size: int, halo: int, batch_size: int, seconds: float = 10.0
) -> tuple[float, str]:
    """The U-Net alone on fixed-shape batches of the grid's tiles, after a warm-up,
    on the device a run would pick here. bench/pipeline.py measures the whole
    pipeline at about 0.9 of this on a 2-core CPU."""
    model, card = parse_checkpoint(checkpoint_bytes(checkpoint), checkpoint)
    device = pick_device("auto")
    model = prepare_for_device(model, device)
    side = tile_size + 2 * halo - card.config.multiple  # the window put on its lattice
    shape = (card.config.in_bands, side, side)
    batch_size = batch_size or fit_batch(model, shape, device)  # 0: run.batch_size auto
    x = model_input(torch.randn(batch_size, *shape), device)
    with torch.inference_mode(), autocast(device):
        model(x).argmax(dim=1).cpu()  # warm-up: allocation, cudnn autotuning
        tiles, start = 0, time.perf_counter()
        while tiles == 0 or time.perf_counter() - start < seconds:
            model(x).argmax(dim=1).cpu()
            tiles += batch_size
    return tiles / (time.perf_counter() - start), device.type


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="region config (YAML)")
    parser.add_argument("--period", type=Period.parse, help="START/END instead of the config's")
    parser.add_argument(
        "--measure", action="store_true", help="time the U-Net here even if the config has a figure"
    )
    parser.add_argument("--measure-seconds", type=float, default=10.0)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE"
    )


def run(args: argparse.Namespace) -> int:
    config = load_region_config(args.config, args.overrides)
    config.apply_storage()
    spec = config.run_spec(config.root(args.config), store="unused", period=args.period)
    setup = spec.setup
    if config.plan is not None and not args.measure:
        rate = config.plan.tiles_per_gpu_second
        print(f"throughput {rate:g} tiles/s per GPU, from the config ({config.plan.measured})")
    else:
        g = setup.grid
        rate, device = measure_tiles_per_second(
            setup.checkpoint, g.tile_size, g.halo, setup.batch_size, args.measure_seconds
        )
        print(
            f"throughput {rate:.3g} tiles/s measured here on {device} (U-Net alone); "
            "gpu_hours below assume this device"
        )
    for line in plan_run(setup, rate).lines():
        print(line)
    return 0
