"""``statemap compile STORE OUT``: a run's Zarr store as cloud-optimized GeoTIFFs."""

from __future__ import annotations

import argparse
from pathlib import Path

from cluster.compile import compile_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="the run's Zarr store (path or s3:// URI)")
    parser.add_argument("out", type=Path, help="output folder for the COGs (and VRT mosaics)")
    parser.add_argument("--compression", default="ZSTD", choices=["ZSTD", "DEFLATE", "LZW"])
    parser.add_argument(
        "--max-part-px", type=int, default=40_000, help="split larger maps into parts of this size"
    )


def run(args: argparse.Namespace) -> int:
    paths = compile_store(
        args.store, args.out, compression=args.compression, max_part_px=args.max_part_px
    )
    for path in paths:
        print(path)
    return 0
