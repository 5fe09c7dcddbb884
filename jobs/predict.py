"""``statemap predict CONFIG`` and ``python -m jobs.predict --config CONFIG``
(what ``ray job submit`` runs): map a region into one Zarr store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cluster.predict.driver import run_predict
from jobs.config import load_predict_config
from jobs.errors import guarded


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="prediction config (YAML)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    summary = run_predict(load_predict_config(args.config), progress=not args.quiet)
    for line in summary.lines():
        print(line)
    return 1 if summary.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.predict", description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="prediction config (YAML)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return guarded(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
