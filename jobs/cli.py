"""The ``statemap`` command line."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from jobs.errors import guarded

# Imported only when chosen: `statemap assess` need not load torch and Ray (memory, start-up).
_COMMANDS = {
    "assess": ("assess", "accuracy and areas with confidence intervals from a labelled sample"),
    "compile": ("compile", "turn a run's Zarr store into cloud-optimized GeoTIFFs"),
    "demo": ("demo", "generate the sample region, train the U-Net and the random forest, compare"),
    "items": ("items", "what statemap reads from each item of a catalog: assets, units, mask"),
    "sample-design": ("sampledesign", "a stratified random sample of a run's map to label"),
    "sample": ("sample", "write the generated sample region and a training config for it"),
    "plan": ("plan", "what a regional run would do: tiles, items, bytes, GPU-hours"),
    "predict": ("predict", "map a region with a trained U-Net on Ray actors into one Zarr store"),
    "run": ("run", "one region and period end to end: predict, compile, publish (= jobs.run)"),
    "runs": ("runs", "list past regional runs with their state, timing and outputs"),
    "schedule": ("schedule", "submit the scheduled regional runs that are due (tick)"),
    "score": ("score", "a run's map scored on the test blocks of catalog training (parity)"),
    "train": ("train", "train a U-Net from a config; writes checkpoint, metrics and figures"),
    "view": ("view", "look at a run's map in the browser (served on loopback)"),
    "validate": (
        "validate",
        "check a config (region, schedules, predict, train) without running it",
    ),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="statemap", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"jobs.{module_name}")
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
