"""Training a U-Net on chips of a labelled image and judging it on a
spatially separate held-out area."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from unet.checkpoint import ModelCard, save_checkpoint
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


def train(
    spec: TrainSpec, progress: bool = True, log: Callable[[str], None] = print
) -> TrainResult:
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
    sampler = ChipSampler(
        image,
        data.labels,
        split,
        spec.chip_size,
        seed=spec.seed,
        augmentation=spec.augmentation,
    )
    weights = class_weights(data.labels, config.num_classes, split)

    model = prepare_for_device(UNet(config), device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(device), ignore_index=IGNORE)
    history: list[dict[str, float]] = []
    log(
        f"training on {device.type}: {config}, "
        f"budget {spec.max_seconds:.0f} s or {spec.max_steps} steps"
    )

    start = time.perf_counter()
    next_eval = 1
    step = 0
    bar = tqdm(total=round(spec.max_seconds), unit="s", disable=not progress, desc="train")
    while True:
        elapsed = time.perf_counter() - start
        done = max(elapsed / spec.max_seconds, step / spec.max_steps)
        if done >= 1.0:
            break
        if spec.evaluations and done >= next_eval / (spec.evaluations + 1):
            scores = evaluate(model, image, data.labels, split, device, spec.class_names)
            model.train()
            history.append({"step": step, "seconds": elapsed, "miou": scores.miou})
            next_eval += 1
        for group in optimiser.param_groups:
            group["lr"] = spec.lr * _lr_factor(done)
        x, y = sampler.batch(spec.batch_size)
        x, y = x.to(device), y.to(device)
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
    seconds = time.perf_counter() - start

    scores = evaluate(model, image, data.labels, split, device, spec.class_names)
    history.append({"step": step, "seconds": seconds, "miou": scores.miou})
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
            "steps": step,
            "train_seconds": seconds,
            "crs": data.crs,
            "seed": spec.seed,
            "augmentation": spec.augmentation,
        },
    )
    spec.output.mkdir(parents=True, exist_ok=True)
    ckpt = spec.output / "checkpoint.safetensors"
    digest = save_checkpoint(ckpt, model.cpu(), card)
    (spec.output / "metrics.json").write_text(
        json.dumps(
            {
                "unet": scores.to_dict(),
                "steps": step,
                "train_seconds": seconds,
                "checkpoint_sha256": digest,
            },
            indent=2,
        )
    )
    plot_curve(history, spec.output / "training_curve.png")
    plot_confusion(scores, spec.output / "confusion_unet.png", "U-Net, held-out area")
    return TrainResult(ckpt, digest, scores, step, seconds, history)
