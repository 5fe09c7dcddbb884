"""``statemap score STORE MODEL_DIR``: a run's map scored on the test blocks that
catalog training was judged on, beside what training reported.

The check a mapping team makes after ``statemap run``: the map's OA, per-class
IoU, precision, recall and F1 there, and ``parity_delta``, the gap between the
map's mIoU and training's. A gap above a few hundredths says the map was made
from other pixels than the model was judged on (another reader, mosaic, unit,
grid or catalog).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cluster.training.parity import map_scores


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", help="the run's Zarr store (local path or s3://)")
    parser.add_argument("model", type=Path, help="the training output folder (metrics.json)")


def run(args: argparse.Namespace) -> int:
    scores, miou = map_scores(args.store, args.model)
    trained = json.loads((args.model / "metrics.json").read_text())["unet"]["miou"]
    print(scores.table())
    print(f"test blocks: map mIoU {miou:.4f}, training reported {trained:.4f}")
    print(f"parity_delta={abs(miou - trained):.4f}")
    return 0
