"""``statemap view RUN_OR_MAPS [OTHER] [--port N]``: a run's map in the browser.

Serves the run's maps folder (local, or synced from s3:// into a cache) on
loopback with HTTP range requests and prints the viewer's URL; given a second
run, the page shows the two side by side with a swipe. Nothing is fetched from
the internet: the page, its scripts and the map's projection come with the maps.
"""

from __future__ import annotations

import argparse
import sys

from cluster.maps.viewer.serve import local_maps, serve
from cluster.storage.redact import redact
from jobs.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        metavar="RUN_OR_MAPS",
        nargs="+",
        help="a run's maps folder or its run.json (local or s3://); a second one to compare",
    )
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")


def run(args: argparse.Namespace) -> int:
    if len(args.targets) > 2:
        raise ConfigError(
            f"statemap view takes one run, or two to compare; got {len(args.targets)}"
        )
    folders = [local_maps(t) for t in args.targets]

    def ready(url: str) -> None:
        for target, folder in zip(args.targets, folders, strict=True):
            print(f"serving {redact(target)} from {folder}")
        print(f"statemap viewer: {url}  (Ctrl-C stops it)", flush=True)

    try:
        serve(folders, args.host, args.port, on_ready=ready)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0
