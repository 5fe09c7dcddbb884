"""U-Net against the per-pixel random forest on the generated region.

Both are trained on the same training area and judged on the same held-out
area (the eastern 30%, 16 px apart). The U-Net's training is capped by
``--seconds`` (the target is judged with a cap of at most 300 s on a 2-core CPU).

    python bench/unet_vs_rf.py [--seconds 200] [--seed 0] [--size 1024]

Last line: ``unet_miou=<x> rf_miou=<y> train_s=<t>``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cluster.sample.scene import SampleSpec
from jobs.compare import compare
from jobs.config import load_train_config
from jobs.sample import write_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=None, help="keep outputs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="statemap-bench-") as tmp:
        out = args.out or Path(tmp)
        spec = SampleSpec(seed=args.seed, width=args.size, height=args.size)
        config = write_sample(out, spec, train_seconds=args.seconds)
        result = compare(load_train_config(config), progress=False)
        print(result.table())
        print(
            f"unet_miou={result.unet.scores.miou:.4f} rf_miou={result.forest.scores.miou:.4f} "
            f"train_s={result.unet.seconds:.1f}"
        )


if __name__ == "__main__":
    main()
