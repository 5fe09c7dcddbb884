"""Training a U-Net on chips of a labelled image and judging it on a
spatially separate held-out area."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from unet.checkpoint import ModelCard, save_checkpoint
from unet.context import context_record, image_windows
from unet.data import (
    IGNORE,
    ChipSampler,
    LabelledImage,
    Split,
    band_stats,
    class_weights,
    east_holdout,
    normalize,
    read_labelled_image,
)
from unet.errors import UNetError
from unet.metrics import Scores, plot_confusion, plot_curve, score
from unet.model import UNet, UNetConfig, autocast, pick_device, prepare_for_device
from unet.predict import predict_image


@dataclass(frozen=True)
class TrainSpec:
    """Everything one training run needs; built from a validated job config."""

    image: Path
    labels: Path
    output: Path
    bands: tuple[str, ...]
    class_names: tuple[str, ...]
    class_colors: tuple[str, ...]
    base_width: int = 16
    depth: int = 3
    batch_norm: bool = True
    holdout_fraction: float = 0.3
    gap: int = 16
    chip_size: int = 128
    batch_size: int = 8
    max_seconds: float = 150.0
    max_steps: int = 1_000_000
    lr: float = 3e-3
    weight_decay: float = 1e-4
    evaluations: int = 5
    seed: int = 0
    device: str = "auto"
    units: str = "reflectance"  # of the training raster, recorded in the checkpoint
    # Symmetries chips are drawn under (unet.augment); "none" where orientation
    # tells classes apart. Recorded in the checkpoint.
    augmentation: str = "d4"

    def budget(self) -> Budget:
        return Budget(self.max_seconds, self.max_steps, self.batch_size, self.lr,
                      self.evaluations, self.weight_decay)  # fmt: skip

    def model_config(self) -> UNetConfig:
        return UNetConfig(
            in_bands=len(self.bands),
            num_classes=len(self.class_names),
            base_width=self.base_width,
            depth=self.depth,
            batch_norm=self.batch_norm,
        )


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path
    checkpoint_hash: str
    scores: Scores
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(repr=False)


def evaluate(
    model: UNet,
    image: np.ndarray,
    labels: np.ndarray,
    split: Split,
    device: torch.device,
    class_names: tuple[str, ...],
) -> Scores:
    """Score the held-out area. The whole image is predicted so that held-out
    pixels see the same context (imagery, never labels) as at map time."""
    pred, _ = predict_image(model, image, device, tile=256, halo=32)
    r0, r1, c0, c1 = split.holdout
    truth = labels[r0:r1, c0:c1]
    return score(truth, pred[r0:r1, c0:c1], class_names)


def _lr_factor(progress: float) -> float:
    """Short warm-up, then cosine decay over the run's budget (time or steps)."""
    if progress < 0.03:
        return max(progress / 0.03, 0.05)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))) * 0.97 + 0.03


@dataclass(frozen=True)
class Budget:
    """How long and how fast to train: steps or seconds, whichever ends first."""

    max_seconds: float
    max_steps: int
    batch_size: int
    lr: float
    evaluations: int  # scorings along the way, for the training curve
    weight_decay: float = 1e-4


@dataclass
class Fitted:
    steps: int
    seconds: float
    history: list[dict[str, float]]


def fit(
    model: UNet,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    weights: torch.Tensor,
    budget: Budget,
    device: torch.device,
    evaluate: Callable[[UNet], Scores] | None = None,
    progress: bool = True,
) -> Fitted:
    """The training loop, whatever the chips come from: AdamW, warm-up then cosine
    over the budget, class-weighted cross entropy ignoring IGNORE, bf16 on CUDA.
    ``evaluate`` (the validation area) is called ``budget.evaluations`` times."""
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device), ignore_index=IGNORE)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    next_eval, step = 1, 0
    bar = tqdm(total=round(budget.max_seconds), unit="s", disable=not progress, desc="train")
    while True:
        elapsed = time.perf_counter() - start
        done = max(elapsed / budget.max_seconds, step / budget.max_steps)
        if done >= 1.0:
            break
        if evaluate and budget.evaluations and done >= next_eval / (budget.evaluations + 1):
            history.append({"step": step, "seconds": elapsed, "miou": evaluate(model).miou})
            next_eval += 1
        for group in optimiser.param_groups:
            group["lr"] = budget.lr * _lr_factor(done)
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        model.train()
        with autocast(device):
            loss = loss_fn(model(x).float(), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        history.append({"step": step, "seconds": time.perf_counter() - start, "loss": loss.item()})
        bar.n = min(round(time.perf_counter() - start), bar.total)
        bar.set_postfix(step=step, loss=f"{loss.item():.3f}")
    bar.close()
    return Fitted(step, time.perf_counter() - start, history)


def save_outputs(
    output: Path,
    model: UNet,
    card: ModelCard,
    scores: Scores,
    fitted: Fitted,
    title: str,
    metrics: dict[str, object] | None = None,
) -> tuple[Path, str]:
    """Checkpoint, metrics.json, training curve and confusion figure in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    ckpt = output / "checkpoint.safetensors"
    digest = save_checkpoint(ckpt, model.cpu(), card)
    doc = {"unet": scores.to_dict(), "steps": fitted.steps, "train_seconds": fitted.seconds,
           "checkpoint_sha256": digest, **(metrics or {})}  # fmt: skip
    (output / "metrics.json").write_text(json.dumps(doc, indent=2))
    plot_curve(fitted.history, output / "training_curve.png")
    plot_confusion(scores, output / "confusion_unet.png", title)
    return ckpt, digest


def train(
    spec: TrainSpec, progress: bool = True, log: Callable[[str], None] = print
) -> TrainResult:
    """Train on chips of one labelled raster; judge on its eastern strip."""
    torch.manual_seed(spec.seed)
    device = pick_device(spec.device)
    data: LabelledImage = read_labelled_image(
        spec.image, spec.labels, spec.bands, spec.class_names, spec.units
    )
    split = east_holdout(data.labels.shape, spec.holdout_fraction, spec.gap)
    mean, std = band_stats(data, split)
    image = normalize(data.image, mean, std)
    config = spec.model_config()
    if spec.chip_size % config.multiple:
        raise UNetError(
            f"chip_size {spec.chip_size} must be a multiple of {config.multiple} (2**depth)"
        )
    sampler = ChipSampler(image, data.labels, split, spec.chip_size, seed=spec.seed,
                          augmentation=spec.augmentation)  # fmt: skip
    weights = class_weights(data.labels, config.num_classes, split)
    model = prepare_for_device(UNet(config), device)
    log(
        f"training on {device.type}: {config}, "
        f"budget {spec.max_seconds:.0f} s or {spec.max_steps} steps"
    )

    def heldout(m: UNet) -> Scores:
        return evaluate(m, image, data.labels, split, device, spec.class_names)

    fitted = fit(model, iter(lambda: sampler.batch(spec.batch_size), None), weights,
                 spec.budget(), device, heldout, progress)  # fmt: skip
    scores = heldout(model)
    fitted.history.append({"step": fitted.steps, "seconds": fitted.seconds, "miou": scores.miou})
    card = ModelCard(
        config=config,
        bands=spec.bands,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        class_names=spec.class_names,
        class_colors=spec.class_colors,
        resolution=data.resolution,
        units=spec.units,
        extra={
            "heldout": scores.to_dict(),
            "steps": fitted.steps,
            "train_seconds": fitted.seconds,
            "crs": data.crs,
            "seed": spec.seed,
            "augmentation": spec.augmentation,
            "context": context_record(model, image_windows(image, model.config)),
        },
    )
    ckpt, digest = save_outputs(spec.output, model, card, scores, fitted, "U-Net, held-out area")
    return TrainResult(ckpt, digest, scores, fitted.steps, fitted.seconds, fitted.history)
