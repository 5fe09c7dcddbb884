"""``statemap compile STORE OUT``: a run's Zarr store as cloud-optimized GeoTIFFs
with a STAC collection over them and a quicklook PNG, in a local folder or
published to an s3:// prefix."""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cluster.maps.collection import write_output_catalog
from cluster.maps.compile import compile_store
from cluster.maps.quicklook import write_quicklook
from cluster.maps.viewer.site import write_viewer
from cluster.predict.store import TileStore
from cluster.storage import objstore
from cluster.storage.publish import publish
from jobs.config import load_predict_config

REPORT = "accuracy/report.html"  # where `statemap assess` publishes a run's report


@dataclass(frozen=True)
class RunLinks:
    """Where a run came from, for the output catalog's links and period."""

    checkpoint: str
    config: str
    start: str | None
    end: str | None


def compile_to(
    store: str,
    out: str,
    links: RunLinks | None = None,
    compression: str = "DEFLATE",
    max_part_px: int = 40_000,
) -> list[str]:
    """Everything lands under ``out``; an s3:// ``out`` gets it built locally,
    then uploaded and verified (never half-visible under its final key)."""
    report = objstore.exists(objstore.join(out, REPORT))  # a recompiled run keeps its link
    if not objstore.is_s3(out):
        return [str(p) for p in _build(store, Path(out), links, compression, max_part_px, report)]
    with tempfile.TemporaryDirectory(prefix="statemap-compile-") as tmp:
        paths = _build(store, Path(tmp), links, compression, max_part_px, report)
        return publish(paths, out, base=Path(tmp))


def _build(
    store: str,
    out: Path,
    links: RunLinks | None,
    compression: str,
    max_part_px: int,
    report: bool,
) -> list[Path]:
    cogs = compile_store(store, out, compression=compression, max_part_px=max_part_px)
    class_map = next(
        p for p in cogs if p.name.endswith("_class.vrt") or p.name.endswith("_class.tif")
    )
    vrt = [p for p in cogs if p.name.endswith("_class.vrt")]
    extra = [write_quicklook(vrt[0] if vrt else class_map, out / "quicklook.png")]
    if links is not None:
        catalog = write_output_catalog(
            list(cogs),
            out,
            run_id=TileStore.open(store).attrs.run_id,
            store_uri=store,
            checkpoint_uri=links.checkpoint,
            config_uri=links.config,
            start=links.start,
            end=links.end,
        )
        items = (p for p in out.glob("*/*.json") if p.stem == p.parent.name)  # <part>/<part>.json
        extra += [catalog, *sorted(items)]
    extra += write_viewer(cogs, out, report=out / REPORT if report else None)
    return [*cogs, *extra]


def links_from_config(config: Path) -> RunLinks:
    setup = load_predict_config(config).setup
    return RunLinks(setup.checkpoint, str(config), setup.start, setup.end)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="the run's Zarr store (path or s3:// URI)")
    parser.add_argument("out", help="output folder or s3:// prefix")
    parser.add_argument(
        "--config", type=Path, help="the run's predict config: links and period for the catalog"
    )
    parser.add_argument("--compression", default="DEFLATE", choices=["DEFLATE", "ZSTD", "LZW"])
    parser.add_argument(
        "--max-part-px", type=int, default=40_000, help="split larger maps into parts of this size"
    )


def run(args: argparse.Namespace) -> int:
    links = links_from_config(args.config) if args.config else None
    if links is None:
        print("no --config: writing COGs and the quicklook, no STAC catalog")
    for uri in compile_to(args.store, args.out, links, args.compression, args.max_part_px):
        print(uri)
    return 0
