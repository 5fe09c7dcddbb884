"""The per-pixel random forest the teaching material contrasts the U-Net with.

It sees each pixel's band values alone, trained on pixels from the same
training area and judged on the same held-out area by the same metrics, so
the comparison isolates what spatial context adds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from unet.data import LabelledImage, Split
from unet.errors import UNetError
from unet.metrics import Scores, score


@dataclass(frozen=True)
class BaselineResult:
    scores: Scores
    train_pixels: int
    seconds: float


def train_forest(
    data: LabelledImage,
    split: Split,
    max_pixels: int = 100_000,
    n_estimators: int = 100,
    seed: int = 0,
) -> tuple[RandomForestClassifier, int]:
    """Fit on a seeded sample of the valid pixels outside the held-out area
    and its gap, the same pixels the U-Net's chips are drawn from."""
    mask = data.valid.copy()
    r0, r1, c0, c1 = split.holdout
    g = split.gap
    mask[max(r0 - g, 0) : r1 + g, max(c0 - g, 0) : c1 + g] = False
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise UNetError("no labelled training pixels outside the held-out area for the forest")
    rng = np.random.default_rng(seed)
    pick = rng.choice(rows.size, size=min(max_pixels, rows.size), replace=False)
    x = data.image[:, rows[pick], cols[pick]].T
    y = data.labels[rows[pick], cols[pick]]
    return fit_pixels(x, y, n_estimators, seed), int(pick.size)


def fit_pixels(
    x: np.ndarray, y: np.ndarray, n_estimators: int = 100, seed: int = 0
) -> RandomForestClassifier:
    """The forest on (pixels, bands) values and their classes: class-balanced, seeded."""
    forest = RandomForestClassifier(
        n_estimators=n_estimators,
        class_weight="balanced",
        n_jobs=-1,
        random_state=seed,
        min_samples_leaf=2,
    )
    forest.fit(x, y)
    return forest


def evaluate_forest(
    forest: RandomForestClassifier, data: LabelledImage, split: Split
) -> tuple[Scores, np.ndarray]:
    r0, r1, c0, c1 = split.holdout
    image = data.image[:, r0:r1, c0:c1]
    bands, h, w = image.shape
    flat = np.nan_to_num(image.reshape(bands, -1).T, nan=0.0)
    pred = forest.predict(flat).astype(np.uint8).reshape(h, w)
    return score(data.labels[r0:r1, c0:c1], pred, data.class_names), pred


def run_baseline(data: LabelledImage, split: Split, seed: int = 0) -> BaselineResult:
    start = time.perf_counter()
    forest, n = train_forest(data, split, seed=seed)
    scores, _ = evaluate_forest(forest, data, split)
    return BaselineResult(scores=scores, train_pixels=n, seconds=time.perf_counter() - start)
