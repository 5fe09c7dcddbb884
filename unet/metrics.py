"""Per-pixel accuracy on held-out ground truth: overall accuracy, per-class
IoU, their mean, per-class precision, recall and F1, and the confusion
matrix; plus the two report figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from unet.data import IGNORE

matplotlib.use("Agg")  # no screen on cluster nodes or CI
from matplotlib import pyplot as plt


@dataclass(frozen=True)
class Scores:
    """Rows of ``confusion`` are the truth, columns the prediction."""

    confusion: np.ndarray
    class_names: tuple[str, ...]

    @property
    def overall_accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    @property
    def iou(self) -> np.ndarray:
        """NaN for a class absent from both truth and prediction."""
        tp = np.diag(self.confusion).astype(float)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    @property
    def miou(self) -> float:
        return float(np.nanmean(self.iou))

    @property
    def class_miou(self) -> float:
        """Mean IoU over the real classes (without ``score_map``'s "(no class)")."""
        real = [n != NO_CLASS for n in self.class_names]
        return float(np.nanmean(self.iou[real]))

    @property
    def precision(self) -> np.ndarray:
        """Share of the pixels mapped as a class that are that class: what a map
        user can trust. NaN for a class never predicted."""
        tp = np.diag(self.confusion).astype(float)
        predicted = self.confusion.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(predicted > 0, tp / predicted, np.nan)

    @property
    def recall(self) -> np.ndarray:
        """Share of a class's true pixels that are mapped as it: what the map
        misses. NaN for a class absent from the truth."""
        tp = np.diag(self.confusion).astype(float)
        actual = self.confusion.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(actual > 0, tp / actual, np.nan)

    @property
    def f1(self) -> np.ndarray:
        """2·TP / (2·TP + FP + FN): the harmonic mean of precision and recall,
        written so that a class present but never predicted scores 0 rather
        than NaN. NaN, as IoU, only for a class absent from truth and prediction."""
        tp = np.diag(self.confusion).astype(float)
        both = self.confusion.sum(0) + self.confusion.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(both > 0, 2 * tp / both, np.nan)

    def _per_class(self, values: np.ndarray) -> dict[str, float | None]:
        """Per class name; JSON has no NaN, so undefined is None."""
        return {
            n: (None if np.isnan(v) else float(v))
            for n, v in zip(self.class_names, values, strict=True)
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall_accuracy": self.overall_accuracy,
            "miou": self.miou,
            "iou": self._per_class(self.iou),
            "precision": self._per_class(self.precision),
            "recall": self._per_class(self.recall),
            "f1": self._per_class(self.f1),
            "confusion": self.confusion.tolist(),
            "class_names": list(self.class_names),
        }

    def table(self) -> str:
        """Per class IoU, precision, recall, F1; then the mean IoU and overall
        accuracy lines, whose layout scripts parse."""
        lines = [f"{'class':<14}{'IoU':>7}{'precision':>10}{'recall':>8}{'F1':>7}"]
        lines += [
            f"{n:<14}{i:>7.3f}{p:>10.3f}{r:>8.3f}{f:>7.3f}"
            for n, i, p, r, f in zip(
                self.class_names, self.iou, self.precision, self.recall, self.f1, strict=True
            )
        ]
        lines.append(f"{'mean IoU':<14}{self.miou:>7.3f}")
        lines.append(f"{'overall acc.':<14}{self.overall_accuracy:>7.3f}")
        return "\n".join(lines)


NO_CLASS = "(no class)"


def score_map(
    truth: np.ndarray, mapped: np.ndarray, class_names: tuple[str, ...], nodata: int
) -> Scores:
    """Scores of a map against labels, where a labelled pixel the map left as
    ``nodata`` counts as wrong: an extra "(no class)" prediction (see ``class_miou``)."""
    pred = np.where(mapped == nodata, len(class_names), mapped)
    return score(truth, pred, (*class_names, NO_CLASS))


def score(truth: np.ndarray, pred: np.ndarray, class_names: tuple[str, ...]) -> Scores:
    """Confusion over the pixels whose truth is a class (``IGNORE`` skipped)."""
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    n = len(class_names)
    keep = truth != IGNORE
    t = truth[keep].astype(np.int64)
    p = pred[keep].astype(np.int64)
    if (p >= n).any():
        raise ValueError(f"prediction holds values outside the {n} classes")
    confusion = np.bincount(t * n + p, minlength=n * n).reshape(n, n)
    return Scores(confusion=confusion, class_names=class_names)


def plot_confusion(scores: Scores, path: str | Path, title: str = "Held-out confusion") -> None:
    cm = scores.confusion.astype(float)
    rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(scores.class_names)
    fig, ax = plt.subplots(figsize=(1.3 * n + 2.5, 1.3 * n + 2))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), scores.class_names, rotation=35, ha="right")
    ax.set_yticks(range(n), scores.class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{rows[i, j]:.2f}\n{int(cm[i, j])}",
                ha="center",
                va="center",
                color="white" if rows[i, j] > 0.5 else "black",
                fontsize=8,
            )
    ax.set_title(f"{title}\nOA {scores.overall_accuracy:.3f}, mIoU {scores.miou:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(history: list[dict[str, float]], path: str | Path) -> None:
    """Training loss per step and held-out mIoU at each evaluation."""
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["step"] for h in history if "loss" in h]
    ax.plot(steps, [h["loss"] for h in history if "loss" in h], lw=0.8, color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss", color="tab:blue")
    ax.set_yscale("log")
    evals = [h for h in history if "miou" in h]
    if evals:
        ax2 = ax.twinx()
        ax2.plot([h["step"] for h in evals], [h["miou"] for h in evals], "o-", color="tab:red")
        ax2.set_ylabel("held-out mIoU", color="tab:red")
        ax2.set_ylim(0, 1)
    ax.set_title("U-Net training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
