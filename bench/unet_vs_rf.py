"""U-Net against the per-pixel random forest on the generated region, trained from
its STAC catalog and the stands' polygons (chips read by the run's reader).

Both learn from the same training chips and are judged on the same test blocks
(spatial blocks, 64 px of buffer). The U-Net's training is capped by
``--seconds`` (the target is judged with a cap of at most 300 s on a 2-core
CPU). Then the region is mapped on Ray actors and the map is scored on the same
test blocks: ``parity_delta`` is how far that is from what training reported.

    python bench/unet_vs_rf.py [--seconds 200] [--seed 0] [--size 1024]

Last lines: ``parity_delta=<d> map_miou=<m>``, then
``unet_miou=<x> rf_miou=<y> train_s=<t>``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cluster.predict.driver import run_predict
from cluster.sample.scene import SampleSpec
from cluster.training.parity import map_scores
from jobs.compare import compare
from jobs.config import load_predict_config
from jobs.sample import write_sample
from jobs.trainconfig import load_train_config


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
        summary = run_predict(load_predict_config(out / "predict.yaml"), progress=False)
        _, map_miou = map_scores(summary.store, out / "model")
        print(f"parity_delta={abs(map_miou - result.unet.scores.miou):.4f} map_miou={map_miou:.4f}")
        print(
            f"unet_miou={result.unet.scores.miou:.4f} rf_miou={result.forest.scores.miou:.4f} "
            f"train_s={result.unet.seconds:.1f}"
        )


if __name__ == "__main__":
    main()
