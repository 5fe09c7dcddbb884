"""Train a U-Net from a STAC catalog and reference labels, through the run's reader.

The chips are made (or resumed) in the chip store, split by spatial blocks,
and streamed into the same training loop as the raster path (``unet.train.fit``).
The model is judged on the test chips' cores, predicted from their haloed
windows as a run predicts a tile, so the score training reports is the score
the map will have there (``parity`` in ``jobs.train`` checks it). The
checkpoint records the input recipe; prediction refuses another.

The random forest of the comparison learns from the same training chips'
usable pixels and is judged on the same test pixels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cluster.errors import ClusterError
from cluster.training.chips import ChipSpec, ChipSummary, build_chips, context_windows
from cluster.training.chipstore import ChipStore
from cluster.training.dataset import ChipDataset, band_stats, class_weights, training_batches
from cluster.training.labels import NODATA, open_labels
from cluster.training.split import (
    TEST,
    TRAIN,
    UNUSED,
    VAL,
    BlockSplit,
    SplitSpec,
    split_chips,
)
from unet.augment import check_augmentation
from unet.baseline import BaselineResult, fit_pixels
from unet.checkpoint import ModelCard
from unet.context import TOLERANCE, context_record, window_side
from unet.data import IGNORE, normalize
from unet.metrics import Scores, score
from unet.model import UNet, UNetConfig, pick_device, prepare_for_device
from unet.predict import predict_batch
from unet.train import Budget, TrainResult, fit, save_outputs

__all__ = [
    "CatalogTrainSpec", "chip_split", "forest_on_chips", "prepare", "score_chips",
    "train_from_catalog",
]  # fmt: skip

_FOREST_PIXELS = 100_000
TEST_LABELS = "test_labels.npz"  # beside metrics.json: what parity scores a map against


@dataclass(frozen=True)
class CatalogTrainSpec:
    """Everything training from a catalog needs; built from a validated job config."""

    chips: ChipSpec
    chip_store: str  # URI of the chip store (made or resumed)
    split: SplitSpec
    output: Path
    class_colors: tuple[str, ...]
    model: UNetConfig
    budget: Budget
    augmentation: str = "d4"
    seed: int = 0
    device: str = "auto"
    loader_workers: int = 0  # DataLoader processes reading chips ahead (0: in the loop)
    chip_workers: int = 0  # ChipMaker actors (0: one per CPU of the cluster)
    max_failed_chips: float = 0.01  # share of labelled chips that may fail; more stops


def prepare(spec: CatalogTrainSpec, progress: bool = True) -> tuple[ChipSummary, BlockSplit]:
    """Checks, then the chips (made or resumed) and their split."""
    config, grid = spec.model, spec.chips.grid
    check_augmentation(spec.augmentation)
    window = grid.tile_size + 2 * grid.halo
    if window % config.multiple:
        raise ClusterError(
            f"chip_size {grid.tile_size} + 2 x halo {grid.halo} = {window} px must be a multiple "
            f"of {config.multiple} for a U-Net of depth {config.depth}"
        )
    spec.split.check(grid, config.receptive_radius)
    made = build_chips(spec.chips, spec.chip_store, workers=spec.chip_workers, progress=progress)
    check_failed(ChipStore.open(spec.chip_store), made, spec.max_failed_chips)
    return made, chip_split(spec)


def check_failed(store: ChipStore, made: ChipSummary, max_share: float) -> None:
    """Refuse to train without more than ``max_share`` of the labelled chips: a model
    trained on what happened to read is judged on a split it did not choose."""
    labelled = store.label_counts().sum(axis=1) > 0
    missing = int((labelled & ~store.done()).sum())
    if missing and missing > max_share * labelled.sum():
        example = next(iter(made.failed.values()), "")
        raise ClusterError(
            f"chip store {store.uri}: {missing} of {int(labelled.sum())} chips holding labels "
            f"failed ({missing / labelled.sum():.1%}; training.max_failed_chips allows "
            f"{max_share:.1%}){', e.g. ' + example if example else ''}. Fix the inputs and "
            "rerun: the chips made are kept and only the failed ones are made again"
        )


def chip_split(spec: CatalogTrainSpec) -> BlockSplit:
    """The split of the chip store: computed from the labels of every chip, made or
    not, so the same for every caller and unchanged when a rerun makes chips that
    failed; chips not (yet) made are in none of its sets."""
    store = ChipStore.open(spec.chip_store)
    chips = spec.chips
    labels = None if spec.split.kind in ("blocks", "east") else (
        open_labels(chips.labels, chips.class_names, chips.grid.crs))  # fmt: skip
    split = split_chips(spec.split, chips.grid, store.rows, store.cols, store.label_counts(),
                        chips.class_names, labels)  # fmt: skip
    codes = np.where(store.done(), split.chip_split, UNUSED).astype(np.uint8)
    return replace(split, chip_split=codes)


def train_from_catalog(
    spec: CatalogTrainSpec, progress: bool = True, log: Callable[[str], None] = print
) -> TrainResult:
    made, split = prepare(spec, progress)
    log(made.line())
    store = ChipStore.open(spec.chip_store)
    counts = store.counts()
    summary = split.summary(counts, store.rows, store.cols)
    log("split: " + ", ".join(f"{k} {v['chips']} chips / {v['pixels']} px"
                              for k, v in summary.items()))  # fmt: skip
    torch.manual_seed(spec.seed)
    device = pick_device(spec.device)
    mean, std = band_stats(store, split, spec.seed)
    train_set = ChipDataset(spec.chip_store, split, TRAIN, mean, std, spec.augmentation)
    batches = training_batches(train_set, spec.budget.batch_size, spec.seed, spec.loader_workers)
    model = prepare_for_device(UNet(spec.model), device)
    names = spec.chips.class_names
    validation = None
    if (split.chip_split == VAL).any():
        val_set = ChipDataset(spec.chip_store, split, VAL, mean, std)

        def validation(m: UNet) -> Scores:
            return score_chips(m, val_set, device, names)

    log(f"training on {device.type}: {spec.model}, budget {spec.budget.max_seconds:.0f} s or "
        f"{spec.budget.max_steps} steps")  # fmt: skip
    fitted = fit(model, batches, class_weights(counts, split), spec.budget, device, validation,
                 progress)  # fmt: skip
    test = score_chips(model, ChipDataset(spec.chip_store, split, TEST, mean, std), device, names)
    fitted.history.append({"step": fitted.steps, "seconds": fitted.seconds, "miou": test.miou})
    chips = spec.chips
    card = ModelCard(
        config=spec.model, bands=chips.bands, mean=tuple(map(float, mean)),
        std=tuple(map(float, std)), class_names=names, class_colors=spec.class_colors,
        resolution=chips.grid.resolution, units=chips.units, periods=chips.time.names,
        extra={
            "recipe": chips.input_recipe(), "test": test.to_dict(), "heldout": test.to_dict(),
            "steps": fitted.steps, "train_seconds": fitted.seconds, "crs": chips.grid.crs,
            "seed": spec.seed, "augmentation": spec.augmentation,
            "split": asdict(spec.split), "chip_grid": asdict(chips.grid),
            "context": measured_context(model, chips, store, split, (mean, std)),
        },
    )  # fmt: skip
    log(
        f"context: with {card.extra['context']['radius_px']} px around a pixel its class "
        f"probabilities are those with all it sees, within {TOLERANCE * 254:g}/254 "
        f"(architecture: {spec.model.receptive_radius} px)"
    )
    test_chips = [int(i) for i in np.flatnonzero(split.chip_split == TEST)]
    metrics = {"split": summary, "chip_store": spec.chip_store,
               "test_chips": {"grid": asdict(chips.grid), "indexes": test_chips,
                              "labels": TEST_LABELS}}  # fmt: skip
    ckpt, digest = save_outputs(spec.output, model, card, test, fitted, "U-Net, test blocks",
                                metrics)  # fmt: skip
    np.savez_compressed(spec.output / TEST_LABELS, labels=test_labels(store, split, test_chips))
    return TrainResult(ckpt, digest, test, fitted.steps, fitted.seconds, fitted.history)


def test_labels(store: ChipStore, split: BlockSplit, indexes: list[int]) -> np.ndarray:
    """(chips, size, size) uint8: the core labels each test chip was scored on (those
    of its own split's pixels; with stands, not those of a training stand in it)."""
    g = split.grid
    core = slice(g.halo, g.halo + g.tile_size)
    out = np.full((len(indexes), g.tile_size, g.tile_size), NODATA, dtype=np.uint8)
    for k, i in enumerate(indexes):
        usable = split.label_mask(i, int(store.rows[i]), int(store.cols[i]))
        out[k] = np.where(usable, store.label[i], NODATA)[core, core]
    return out


def score_chips(
    model: UNet, dataset: ChipDataset, device: torch.device, names: tuple[str, ...],
    batch_size: int = 8,
) -> Scores:  # fmt: skip
    """Scores of the chips' cores, each predicted from its haloed window (as a run
    predicts a tile), against the labels the split lets that chip use."""
    halo = dataset.split.grid.halo
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    for start in range(0, len(dataset), batch_size):
        chips = [dataset.chip(p) for p in range(start, min(start + batch_size, len(dataset)))]
        classes, _ = predict_batch(model, np.stack([c[0] for c in chips]), device, crop=halo)
        for (_, label), pred in zip(chips, classes, strict=True):
            core = label[halo : label.shape[0] - halo, halo : label.shape[1] - halo]
            confusion += score(core, pred, names).confusion
    return Scores(confusion=confusion, class_names=names)


def forest_on_chips(
    uri: str, split: BlockSplit, names: tuple[str, ...], seed: int = 0
) -> BaselineResult:
    """The per-pixel random forest on (a seeded sample of) the training chips' usable
    pixels, judged on the test chips' cores: the U-Net's pixels, one pixel at a time."""
    start = time.perf_counter()
    store = ChipStore.open(uri)
    as_read = (np.zeros(len(store.bands)), np.ones(len(store.bands)))  # no normalisation
    train_set = ChipDataset(uri, split, TRAIN, *as_read)
    xs, ys = [], []
    for position in range(len(train_set)):
        image, label = train_set.chip(position)
        keep = label != IGNORE
        xs.append(image[:, keep].T)
        ys.append(label[keep])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(y) > _FOREST_PIXELS:
        pick = np.random.default_rng(seed).choice(len(y), _FOREST_PIXELS, replace=False)
        x, y = x[pick], y[pick]
    forest = fit_pixels(x, y, seed=seed)
    test_set = ChipDataset(uri, split, TEST, *as_read)
    halo, confusion = split.grid.halo, np.zeros((len(names), len(names)), dtype=np.int64)
    for position in range(len(test_set)):
        image, label = test_set.chip(position)
        core = (slice(halo, image.shape[1] - halo), slice(halo, image.shape[2] - halo))
        pixels = image[:, core[0], core[1]]
        pred = forest.predict(pixels.reshape(len(pixels), -1).T).reshape(pixels.shape[1:])
        confusion += score(label[core], pred.astype(np.uint8), names).confusion
    scores = Scores(confusion=confusion, class_names=names)
    return BaselineResult(scores=scores, train_pixels=len(y), seconds=time.perf_counter() - start)


# Windows the context is measured on: on the depth-4 bench model 4 gave 56 px,
# 8 gave 72, 16 and 32 gave 88 (its tile borders moved confidences with less).
CONTEXT_WINDOWS = 16


def measured_context(
    model: UNet,
    spec: ChipSpec,
    store: ChipStore,
    split: BlockSplit,
    stats: tuple[np.ndarray, np.ndarray],
    n: int = CONTEXT_WINDOWS,
) -> dict[str, object]:
    """The trained model's context (``unet.context``), for the checkpoint: a run's halo
    is checked against it. Measured on the imagery around up to ``n`` training chips
    spread over the set, read as wide as the model sees and normalised as in training:
    chips whose window lies inside the labelled area, so that what the model sees far
    off is imagery, not padding (which would make the context look small)."""
    side = window_side(model.config)
    train = np.flatnonzero(split.chip_split == TRAIN)
    rows, cols = store.rows, store.cols
    # Each chip's distance (px) from its centre to the edge of all chips' extent.
    size = spec.grid.tile_size
    inside = np.minimum.reduce([rows - rows.min(), rows.max() - rows, cols - cols.min(),
                                cols.max() - cols]) * size + size / 2  # fmt: skip
    fits = train[inside[train] >= side / 2]
    pool = fits if len(fits) else train[np.argsort(-inside[train], kind="stable")[:n]]
    picks = pool[np.unique(np.linspace(0, len(pool) - 1, num=min(n, len(pool))).round()
                           .astype(int))] if len(pool) else pool  # fmt: skip
    windows = context_windows(spec, [store.tile(int(i)) for i in picks], side)
    inputs = normalize(windows, *stats) if len(windows) else None
    return context_record(model, inputs)
