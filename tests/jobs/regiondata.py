"""Tiny generated data for a region config: the config's own grid, period and
outputs logic, pointed at a seeded sample region and a briefly trained U-Net."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from shapely.geometry import box, mapping

from cluster.sample.scene import SampleSpec
from cluster.tiles.region import load_region
from jobs.config import RegionConfig, apply_overrides, load_region_config
from tests.conftest import train_sample

ROOT = Path(__file__).resolve().parents[2]
REGIONS = sorted((ROOT / "jobs" / "regions").glob("*.yaml"))
RLP = ROOT / "jobs" / "regions" / "boundaries" / "rhineland-palatinate.geojson"
# A spot inside Rhineland-Palatinate (Hunsrück), EPSG:25832, for the state's configs.
INSIDE_RLP = (380_000.0, 5_540_000.0)
PERIOD = "2023-05-01/2023-08-31"  # the sample scenes (June-August) and orthophotos (May)


def tiny_data(config_path: Path, folder: Path, size: int = 128) -> list[str]:
    """Write a sample region on ``config_path``'s grid and return the ``--set``
    overrides that point the config at it (outputs under ``folder`` too)."""
    config = load_region_config(config_path)
    origin = tuple(config.grid.origin) if config.grid.origin else INSIDE_RLP
    spec = SampleSpec(
        seed=11,
        width=size,
        height=size,
        resolution=config.grid.resolution,
        origin=origin,
        crs=config.grid.crs,
        stand_px=48,
    )
    checkpoint = _tiny_checkpoint(folder, spec)
    sample = folder / "sample"
    region = sample / "region.geojson"
    if config.grid.origin is None:  # the state's own outline, cut to the sample
        region = _piece_of_state(config, spec, folder / "piece.geojson")
    return [
        f"catalog={sample / 'catalog.json'}",
        f"checkpoint={checkpoint}",
        f"region={region}",
        f"output.stores={folder / 'stores'}",
        f"output.maps={folder / 'maps'}",
        "storage={}",
        "run.batch_size=2",
        "run.device=auto",  # the CPU here, not the config's GPUs
        "run.actors=0",
    ]


def _tiny_checkpoint(folder: Path, spec: SampleSpec) -> Path:
    trained = train_sample(folder, spec, base_width=4, chip_size=32, batch_size=4, max_steps=2)
    return trained.output / "checkpoint.safetensors"


def _piece_of_state(config: RegionConfig, spec: SampleSpec, out: Path) -> Path:
    state = load_region(str(RLP), config.grid.crs).geometry
    sample = box(*spec.bounds)
    assert state.contains(sample), "the sample must lie inside the state"
    doc = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": config.grid.crs}},
        "features": [{"type": "Feature", "properties": {}, "geometry": mapping(state & sample)}],
    }
    out.write_text(json.dumps(doc))
    return out


def with_overrides(config_path: Path, overrides: list[str], out: Path) -> Path:
    """The config with ``overrides`` applied, written to ``out`` (for jobs that
    take a file, such as a schedule's)."""
    load_region_config(config_path, overrides)  # validates
    doc = apply_overrides(yaml.safe_load(config_path.read_text()), overrides)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out
