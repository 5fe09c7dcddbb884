"""``statemap train CONFIG`` and ``python -m jobs.train --config CONFIG``: from a
labelled raster, or from a STAC catalog and reference labels (``catalog:``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cluster.training.train import CatalogTrainSpec, train_from_catalog
from jobs.errors import guarded
from jobs.trainconfig import load_train_config
from unet.train import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="training config (YAML)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    spec = load_train_config(args.config)
    if isinstance(spec, CatalogTrainSpec):
        result = train_from_catalog(spec, progress=not args.quiet)
    else:
        result = train(spec, progress=not args.quiet)
    print(result.scores.table())
    print(
        f"checkpoint {result.checkpoint} (sha256 {result.checkpoint_hash[:12]}), "
        f"{result.steps} steps in {result.seconds:.0f} s; figures in {spec.output}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.train")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--quiet", action="store_true")
    return guarded(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
