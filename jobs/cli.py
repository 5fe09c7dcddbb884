"""The ``statemap`` command line."""

from __future__ import annotations

import argparse
import os
import sys

from jobs import assess as assess_job
from jobs import compile as compile_job
from jobs import demo, items, plan, predict, run, runs, sample, schedule, score, train, validate
from jobs import sampledesign as sample_design_job
from jobs.errors import guarded

_COMMANDS = {
    "assess": (assess_job, "accuracy and areas with confidence intervals from a labelled sample"),
    "compile": (compile_job, "turn a run's Zarr store into cloud-optimized GeoTIFFs"),
    "demo": (demo, "generate the sample region, train the U-Net and the random forest, compare"),
    "items": (items, "what statemap reads from each item of a catalog: assets, units, mask"),
    "sample-design": (sample_design_job, "a stratified random sample of a run's map to label"),
    "sample": (sample, "write the generated sample region and a training config for it"),
    "plan": (plan, "what a regional run would do: tiles, items, bytes, GPU-hours"),
    "predict": (predict, "map a region with a trained U-Net on Ray actors into one Zarr store"),
    "run": (run, "one region and period end to end: predict, compile, publish (= jobs.run)"),
    "runs": (runs, "list past regional runs with their state, timing and outputs"),
    "schedule": (schedule, "submit the scheduled regional runs that are due (tick)"),
    "score": (score, "a run's map scored on the test blocks of catalog training (parity)"),
    "train": (train, "train a U-Net from a config; writes checkpoint, metrics and figures"),
    "validate": (validate, "check a config (region, schedules, predict, train) without running it"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="statemap", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    try:
        return guarded(args.run, args)
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
