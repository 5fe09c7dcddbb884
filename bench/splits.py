"""Does splitting by stand change the test score? The demo's U-Net trained twice on the
generated region from one chip store, the same steps and seed: once with today's
block split (``split.kind: blocks``), once keeping each stand whole in one split
(``stands``). Printed per split: test mIoU, overall accuracy and test pixels.

    python bench/splits.py [--size 1024] [--steps 600] [--out DIR]

Last line: ``blocks_miou=<a> stands_miou=<b> blocks_test_px=<c> stands_test_px=<d>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch

from cluster.predict.driver import connect_ray
from cluster.sample.scene import SampleSpec
from cluster.training.train import train_from_catalog
from jobs.sample import write_sample
from jobs.trainconfig import load_train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="region width and height, px")
    parser.add_argument("--steps", type=int, default=600, help="training steps per model")
    parser.add_argument("--out", type=Path, help="working folder (default: a new temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="splits-"))
    torch.set_num_threads(2)
    connect_ray()
    spec = SampleSpec(seed=0, width=args.size, height=args.size)
    base = load_train_config(write_sample(out, spec, 1e6, args.steps))
    scores = {}
    for kind in ("blocks", "stands"):
        result = train_from_catalog(
            dataclasses.replace(base, split=dataclasses.replace(base.split, kind=kind),
                                output=out / f"model-{kind}", chip_store=str(out / "chips.zarr")),
            progress=False,
            log=lambda _: None,
        )  # fmt: skip
        s = result.scores
        scores[kind] = (s.miou, int(s.confusion.sum()))
        print(f"{kind}: test mIoU {s.miou:.4f}, OA {s.overall_accuracy:.4f}, "
              f"{int(s.confusion.sum())} test px, {result.steps} steps", flush=True)  # fmt: skip
    print(f"blocks_miou={scores['blocks'][0]:.4f} stands_miou={scores['stands'][0]:.4f} "
          f"blocks_test_px={scores['blocks'][1]} stands_test_px={scores['stands'][1]}")  # fmt: skip


if __name__ == "__main__":
    main()
