"""``statemap validate CONFIG``: check a config without running it.

Takes any of statemap's config files (region, schedules, prediction,
training) and says what is wrong in terms of its fields. ``--inputs`` also
opens what a region config points at (checkpoint, catalog, region) and checks
they fit together, as a run would before its first tile.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cluster.predict.driver import check_inputs
from cluster.storage import objstore
from jobs.config import PredictConfig, _load, load_region_config, read_yaml, resolve_uri
from jobs.schedule import load_schedules
from jobs.trainconfig import CatalogTrainConfig, TrainConfig


def validate(path: Path, inputs: bool = False) -> list[str]:
    """Lines describing the valid config; raises ConfigError naming what is wrong."""
    doc = read_yaml(path)
    if "schedules" in doc:
        schedules = load_schedules(path)
        return [
            f"{path}: valid schedules, {len(schedules.entries)} region(s)",
            *(
                f"  {e.region}: cron '{e.cron}', {e.period_months} month(s)"
                for e in schedules.entries
            ),
        ]
    if "labels" in doc:
        kind = CatalogTrainConfig if "catalog" in doc else TrainConfig
        _load(kind, path)
        return [f"{path}: valid training config ({'catalog' if 'catalog' in doc else 'raster'})"]
    if "output" in doc or "name" in doc:
        config = load_region_config(path)
        base = config.root(path)
        lines = [f"{path}: valid region config {config.name}"]
        if not objstore.is_s3(resolve_uri(config.region, base)) or inputs:
            config.apply_storage()
            spec = config.run_spec(base, store="unused")
            g = spec.setup.grid
            lines.append(
                f"  grid {g.crs}, {g.resolution:g} m, {g.tile_size} px tiles + {g.halo} px halo, "
                f"origin {g.origin[0]:.0f}, {g.origin[1]:.0f}"
            )
            if inputs:
                checked = check_inputs(spec.setup)
                lines.append(
                    f"  inputs fit: checkpoint bands {', '.join(checked.card.bands)}, "
                    f"{checked.items} catalog item(s) over the region; inputs made by "
                    f"{checked.recipe.describe()}"
                )
        return lines
    _load(PredictConfig, path)
    return [f"{path}: valid prediction config"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="a region, schedules, predict or train config")
    parser.add_argument(
        "--inputs", action="store_true", help="also open the checkpoint, catalog and region"
    )


def run(args: argparse.Namespace) -> int:
    for line in validate(args.config, inputs=args.inputs):
        print(line)
    return 0
