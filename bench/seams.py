"""Does the map depend on how the grid cuts the region? The demo's model and a depth-4
model, each trained on the generated region, map it three ways: 256-px tiles,
512-px tiles, and 256-px tiles on a grid whose origin lies 100 px farther west and
north (not a multiple of the U-Net's 2**depth lattice). Each run uses the least halo
its checkpoint's measured context allows. Printed per model: the context, the halo,
the share of pixels whose class agrees with the 256-px run and whose confidence lies
within 1 (of 254), and the model's cost per tile against a 32-px halo without the
lattice (what runs used before): its FLOPs ratio and measured seconds on this CPU.

    python bench/seams.py [--size 1024] [--steps 300] [--out DIR]

Last line: ``agree_min=<a> conf1_min=<b> cost_depth3=<c> cost_depth4=<d>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from cluster.predict.driver import connect_ray, run_predict
from cluster.predict.setup import least_halo
from cluster.predict.store import TileStore
from cluster.sample.scene import SampleSpec
from cluster.training.train import train_from_catalog
from jobs.config import load_predict_config
from jobs.sample import write_sample
from jobs.trainconfig import load_train_config
from unet.checkpoint import load_checkpoint
from unet.context import recorded_radius
from unet.model import UNet

SHIFT = 100  # px the shifted grid's origin lies west and north
OLD_HALO = 32


def mapped(out: Path, base: Path, tile: int, halo: int, shift: int) -> tuple[np.ndarray, ...]:
    """Class and confidence of a run of ``base``'s predict.yaml, on the unshifted grid's
    pixels from its origin."""
    doc = yaml.safe_load((base / "predict.yaml").read_text())
    for key in ("catalog", "region", "checkpoint"):
        doc[key] = str(base / doc[key])
    (x0, y0), res = doc["grid"]["origin"], doc["grid"]["resolution"]
    doc["grid"].update(tile_size=tile, halo=halo, origin=[x0 - shift * res, y0 + shift * res])
    doc["store"] = str(out / "map.zarr")
    out.mkdir(parents=True)
    (out / "predict.yaml").write_text(yaml.safe_dump(doc))
    summary = run_predict(load_predict_config(out / "predict.yaml"), progress=False)
    if summary.failed:
        raise SystemExit("\n".join(summary.lines()))
    store = TileStore.open(str(out / "map.zarr"))
    t = store.layout.transform
    row, col = round((t.f - y0) / res), round((x0 - t.c) / res)
    return tuple(store.array(a)[row:, col:] for a in ("class", "confidence"))


def cost(model: UNet, tile: int, halo: int, bands: int) -> tuple[float, float]:
    """(FLOPs ratio, measured time ratio) of the model on its window now against a
    32-px halo read whole, one tile at a time on this CPU."""
    sides = (tile + 2 * halo - model.config.multiple, tile + 2 * OLD_HALO)
    seconds = []
    with torch.inference_mode():
        for side in sides:
            x = torch.randn((1, bands, side, side))
            model(x)
            start = time.perf_counter()
            for _ in range(3):
                model(x)
            seconds.append(time.perf_counter() - start)
    return (sides[0] / sides[1]) ** 2, seconds[0] / seconds[1]


def one_model(out: Path, size: int, steps: int, depth: int) -> tuple[float, float, float]:
    spec = SampleSpec(seed=0, width=size, height=size)
    train_spec = load_train_config(write_sample(out, spec, 1e6, steps))
    model = dataclasses.replace(train_spec.model, depth=depth)
    split = dataclasses.replace(
        train_spec.split, buffer_px=max(train_spec.split.buffer_px, model.receptive_radius)
    )
    train_from_catalog(
        dataclasses.replace(train_spec, model=model, split=split),
        progress=False,
        log=lambda _: None,
    )
    unet, card = load_checkpoint(out / "model" / "checkpoint.safetensors")
    unet.eval()
    radius = recorded_radius(card.config, card.extra)
    runs = {}
    for name, tile, shift in [("256", 256, 0), ("512", 512, 0), ("256 shifted", 256, SHIFT)]:
        halo = least_halo(card, tile)
        runs[name] = (halo, *mapped(out / f"run-{name.replace(' ', '-')}", out, tile, halo, shift))
    _, classes, confidence = runs["256"]
    worst_agree, worst_conf = 1.0, 1.0
    for name in ("512", "256 shifted"):
        halo, other_classes, other_confidence = runs[name]
        h = min(classes.shape[0], other_classes.shape[0])
        w = min(classes.shape[1], other_classes.shape[1])
        a, b = classes[:h, :w], other_classes[:h, :w]
        valid = (a != 255) & (b != 255)
        agree = float(np.mean(a[valid] == b[valid]))
        step = np.abs(confidence[:h, :w][valid].astype(int) - other_confidence[:h, :w][valid])
        within = float(np.mean(step <= 1))
        worst_agree, worst_conf = min(worst_agree, agree), min(worst_conf, within)
        print(f"depth {depth}: tiles of {name} px (halo {halo}) against 256 px (halo "
              f"{runs['256'][0]}): classes agree on {agree:.6f} of {valid.sum()} px, "
              f"confidence within 1 on {within:.6f} (at most {step.max()})")  # fmt: skip
    halo = runs["256"][0]
    flops, measured = cost(unet, 256, halo, card.config.in_bands)
    print(f"depth {depth}: context {radius} px (architecture {card.config.receptive_radius}); "
          f"halo {halo} on 256-px tiles costs {flops:.2f}x the FLOPs of halo {OLD_HALO} "
          f"({measured:.2f}x measured on this CPU)")  # fmt: skip
    return worst_agree, worst_conf, flops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="region width and height, px")
    parser.add_argument("--steps", type=int, default=300, help="training steps per model")
    parser.add_argument("--out", type=Path, help="working folder (default: a new temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="seams-"))
    torch.set_num_threads(2)
    connect_ray()
    results = {d: one_model(out / f"depth{d}", args.size, args.steps, d) for d in (3, 4)}
    print(f"agree_min={min(r[0] for r in results.values()):.6f} "
          f"conf1_min={min(r[1] for r in results.values()):.6f} "
          f"cost_depth3={results[3][2]:.2f} cost_depth4={results[4][2]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
