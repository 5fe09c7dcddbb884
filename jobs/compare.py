"""U-Net against the per-pixel random forest, on the same pixels and the same
held-out pixels (the test blocks of catalog training, or the raster's eastern
strip): what the demo prints and the benchmark measures."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from cluster.training.train import (
    CatalogTrainSpec,
    chip_split,
    forest_on_chips,
    train_from_catalog,
)
from unet.baseline import BaselineResult, run_baseline
from unet.data import east_holdout, read_labelled_image
from unet.metrics import plot_confusion
from unet.train import TrainResult, TrainSpec, train


@dataclass(frozen=True)
class Comparison:
    unet: TrainResult
    forest: BaselineResult

    def table(self) -> str:
        u, f = self.unet.scores, self.forest.scores
        rows = [f"{'test IoU':<16}{'U-Net':>8}{'forest':>8}"]
        for name, a, b in zip(u.class_names, u.iou, f.iou, strict=True):
            rows.append(f"{name:<16}{a:>8.3f}{b:>8.3f}")
        rows.append(f"{'mean IoU':<16}{u.miou:>8.3f}{f.miou:>8.3f}")
        rows.append(f"{'overall acc.':<16}{u.overall_accuracy:>8.3f}{f.overall_accuracy:>8.3f}")
        rows.append(f"{'train seconds':<16}{self.unet.seconds:>8.0f}{self.forest.seconds:>8.0f}")
        return "\n".join(rows)


def compare(
    spec: TrainSpec | CatalogTrainSpec, progress: bool = True, log: Callable[[str], None] = print
) -> Comparison:
    """Train both models; write the forest's scores beside the U-Net's."""
    if isinstance(spec, CatalogTrainSpec):
        unet = train_from_catalog(spec, progress=progress, log=log)
        log("training the per-pixel random forest on the same training chips' pixels")
        names = spec.chips.class_names
        forest = forest_on_chips(spec.chip_store, chip_split(spec), names, seed=spec.seed)
        area = "test blocks"
    else:
        unet = train(spec, progress=progress, log=log)
        log("training the per-pixel random forest baseline on the same training area")
        data = read_labelled_image(spec.image, spec.labels, spec.bands, spec.class_names,
                                   spec.units)  # fmt: skip
        holdout = east_holdout(data.labels.shape, spec.holdout_fraction, spec.gap)
        forest = run_baseline(data, holdout, seed=spec.seed)
        area = "held-out area"
    metrics_path = spec.output / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["random_forest"] = forest.scores.to_dict() | {
        "train_pixels": forest.train_pixels,
        "seconds": forest.seconds,
    }
    metrics_path.write_text(json.dumps(metrics, indent=2))
    plot_confusion(forest.scores, spec.output / "confusion_forest.png", f"Random forest, {area}")
    return Comparison(unet=unet, forest=forest)
