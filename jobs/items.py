"""``statemap items CATALOG --bands blue,green,red,nir``: what statemap will read
from each item, before a state is mapped with it.

Per item: the asset, file, band index, scale, offset and nodata of each model
band, where the units came from (the item's metadata, a provider convention,
the config), and the quality mask with its invalid values; or why the item
cannot be used. The same resolution a run makes (``cluster.imagery.providers``),
with a config's ``assets`` overrides when ``--config`` names one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import shapely

from cluster.errors import ClusterError
from cluster.imagery.catalog import Selection
from cluster.imagery.providers import NO_OVERRIDES, Overrides, resolve
from cluster.imagery.stacitem import BandSource, MaskSource, RawItem
from cluster.tiles.region import Region
from jobs.config import PredictConfig, RegionConfig, _load, read_yaml
from jobs.errors import ConfigError
from jobs.period import Period


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "catalog",
        help="static catalog, ItemCollection / FeatureCollection / ndjson file, one item's "
        "JSON file, or a STAC API URL (then give --bbox)",
    )
    parser.add_argument("--bands", required=True, type=_names, help="model bands, e.g. blue,nir")
    parser.add_argument("--collections", type=_names, help="collection ids, comma-separated")
    parser.add_argument("--period", type=Period.parse, help="START/END, inclusive")
    parser.add_argument("--bbox", type=_bbox, help="W,S,E,N in degrees (needed for a STAC API)")
    parser.add_argument(
        "--config", type=Path, help="a region or predict config whose assets: overrides apply"
    )
    parser.add_argument("--limit", type=int, default=0, help="stop after N items (0: all)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line and item")


def run(args: argparse.Namespace) -> int:
    overrides = NO_OVERRIDES if args.config is None else _config_overrides(args.config)
    region = None
    uri = args.catalog.lower()
    if uri.startswith(("http://", "https://")) and not uri.endswith(".json") and not args.bbox:
        raise ConfigError(f"{args.catalog} is a STAC API: give --bbox W,S,E,N to bound the search")
    if args.bbox is not None:
        region = Region(shapely.box(*args.bbox), "EPSG:4326", "--bbox")
    period = args.period
    selection = Selection(
        args.catalog, args.bands, "EPSG:4326", collections=args.collections,
        start=period.start_iso if period else None, end=period.end_iso if period else None,
        region=region,
    )  # fmt: skip
    unusable = shown = 0
    for raw in selection:
        doc = describe(raw, args.bands, overrides)
        unusable += "error" in doc
        print(json.dumps(doc) if args.json else _text(doc))
        shown += 1
        if args.limit and shown >= args.limit:
            break
    if not args.json:
        print(f"{shown} item(s) shown, {unusable} unusable ({selection.filters})")
    if selection.kept == 0:
        raise selection.nothing_passes()
    return 1 if unusable else 0


def describe(raw: RawItem, bands: list[str], overrides: Overrides = NO_OVERRIDES) -> dict[str, Any]:
    """The item as ``--json`` prints it."""
    head: dict[str, Any] = {"id": raw.id, "collection": raw.collection or None}
    try:
        sources, mask = resolve(raw, bands, overrides)
    except ClusterError as exc:
        return head | {"error": str(exc)}
    return head | {
        "bands": [_band(name, s) for name, s in zip(bands, sources, strict=True)],
        "mask": _mask(mask),
    }


def _band(name: str, source: BandSource) -> dict[str, Any]:
    return {
        "name": name,
        "asset": source.asset,
        "href": source.href,
        "band": source.band_index,
        "scale": source.scale,
        "offset": source.offset,
        "nodata": _number(source.nodata),
        "from": source.origin,
    }


def _mask(mask: MaskSource | None) -> dict[str, Any] | None:
    return None if mask is None else {"asset": mask.asset, "invalid": list(mask.invalid)}


def _number(value: float | None) -> float | int | None:
    return int(value) if value is not None and float(value).is_integer() else value


def _text(doc: dict[str, Any]) -> str:
    head = f"{doc['id']} ({doc['collection']})"
    if "error" in doc:
        return f"{head}: UNUSABLE: {doc['error']}"
    bands = "; ".join(
        f"{b['name']}={b['asset']}[{b['band']}] x{b['scale']:g} {b['offset']:+g} "
        f"nodata {b['nodata']} ({b['from']})"
        for b in doc["bands"]
    )
    mask = doc["mask"]
    masked = f"mask {mask['asset']} invalid {mask['invalid']}" if mask else "no mask"
    return f"{head}: {bands}; {masked}"


def _config_overrides(path: Path) -> Overrides:
    """The ``assets`` section of a region or predict config (its storage settings are
    applied too, so its s3:// catalog can be listed)."""
    doc = read_yaml(path)
    config = _load(RegionConfig if "output" in doc else PredictConfig, path)
    config.apply_storage()
    return config.overrides()


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give names separated by commas")
    return names


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give W,S,E,N in degrees") from None
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise argparse.ArgumentTypeError(f"{text!r}: W < E and S < N, in degrees")
    return w, s, e, n
