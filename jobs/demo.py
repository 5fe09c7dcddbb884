"""``statemap demo``: the whole teaching case on a generated region.

Generates the sample region, trains the U-Net, trains the per-pixel random
forest on the same pixels and prints how both do on the held-out area.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cluster.sample import SampleSpec
from jobs.compare import compare
from jobs.config import load_train_config
from jobs.sample import write_sample


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated region")
    parser.add_argument("--size", type=int, default=1024, help="region width and height, px")
    parser.add_argument("--seconds", type=float, default=150.0, help="U-Net training budget")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    spec = SampleSpec(seed=args.seed, width=args.size, height=args.size)
    print(
        f"generating the sample region ({args.size}x{args.size} px, seed {args.seed}) in {args.out}"
    )
    config_path = write_sample(args.out, spec, train_seconds=args.seconds)
    train_spec = load_train_config(config_path)
    result = compare(train_spec, progress=not args.quiet)
    print()
    print(result.table())
    print()
    print(f"checkpoint:   {result.unet.checkpoint} (sha256 {result.unet.checkpoint_hash[:12]})")
    print(f"metrics:      {train_spec.output / 'metrics.json'}")
    print(
        f"figures:      {train_spec.output}/training_curve.png, confusion_unet.png, "
        "confusion_forest.png"
    )
    print(f"STAC catalog: {args.out / 'sample' / 'catalog.json'}")
    return 0
