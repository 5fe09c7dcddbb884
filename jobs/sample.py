"""``statemap sample``: write the generated region and the training and prediction
configs for it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from cluster.sample.catalog import SampleRegion, write_region
from cluster.sample.phenocatalog import PhenologyRegion, write_phenology_region
from cluster.sample.phenology import PHENO_BANDS, PHENO_CLASS_COLORS, PHENO_CLASS_NAMES
from cluster.sample.references import write_references
from cluster.sample.scene import BANDS, CLASS_COLORS, CLASS_NAMES, SampleSpec


def write_sample(
    out: Path, spec: SampleSpec, train_seconds: float = 150.0, train_steps: int | None = None
) -> Path:
    """Region under ``out/sample`` (imagery, catalog, labels, reference files) with
    ``out/train.yaml`` (from the catalog and the stands), ``out/train-raster.yaml``
    (from the cloud-free composite and labels.tif) and ``out/predict.yaml`` beside
    it; returns the catalog training config's path."""
    out = out.resolve()
    region = write_region(out / "sample", spec)
    refs = write_references(region, spec)
    classes = [{"name": n, "color": c} for n, c in zip(CLASS_NAMES, CLASS_COLORS, strict=True)]
    budget = {"max_seconds": train_seconds, **({"max_steps": train_steps} if train_steps else {}),
              "seed": spec.seed}  # fmt: skip
    run = predict_config(region, spec)
    catalog = {
        **{k: run[k] for k in ("catalog", "collections", "period", "grid")},
        "labels": str(refs.stands.relative_to(out)),
        "label_field": "species",
        "output": "model",
        "bands": list(BANDS),
        "classes": classes,
        "model": {"base_width": 16, "depth": 3, "batch_norm": True},
        "training": {"chip_size": 64, "batch_size": 8, "augmentation": "d4", **budget},
        "split": _split(spec),
    }  # fmt: skip
    raster = {
        "image": str(region.composite.relative_to(out)),
        "labels": str(region.labels.relative_to(out)),
        "output": "model",
        "bands": list(BANDS),
        "classes": classes,
        "model": {"base_width": 16, "depth": 3, "batch_norm": True},
        "training": {"chip_size": 128, "batch_size": 8, **budget},
        "holdout": {"east_fraction": 0.3, "gap_px": 16},
    }
    path = out / "train.yaml"
    path.write_text(yaml.safe_dump(catalog, sort_keys=False))
    (out / "train-raster.yaml").write_text(yaml.safe_dump(raster, sort_keys=False))
    (out / "predict.yaml").write_text(yaml.safe_dump(run, sort_keys=False))
    return path


def _split(spec: SampleSpec) -> dict[str, Any]:
    """About 16 blocks of whole chips, enough to put every class into every split,
    each several times the 64 px buffer; a region too small for that is split by
    its eastern strip."""
    side = min(spec.width, spec.height)
    if side < 512:
        return {"kind": "east", "east_fraction": 0.3, "buffer_px": 64}
    return {"block_px": side // 4 // 64 * 64, "buffer_px": 64, "fractions": [0.7, 0.1, 0.2],
            "seed": spec.seed}  # fmt: skip


def predict_config(
    region: SampleRegion | PhenologyRegion, spec: SampleSpec, tile_size: int = 256
) -> dict[str, Any]:
    """Map the sample region from its Sentinel-2 scenes with the demo's model.

    The grid's origin is the region's corner, so the store lines up with the
    label raster pixel for pixel."""
    root = region.root.parent
    return {
        "catalog": str(region.catalog.relative_to(root)),
        "collections": ["sentinel-2-l2a"],
        "period": {"start": "2023-06-01", "end": "2023-08-31"},  # the scenes' summer
        "region": str(region.boundary.relative_to(root)),
        "checkpoint": "model/checkpoint.safetensors",
        "store": "map.zarr",
        "grid": {
            "crs": spec.crs,
            "resolution": spec.resolution,
            "tile_size": tile_size,
            "halo": 56,
            "origin": list(spec.origin),
        },
        "run": {"batch_size": 4},
    }


# The phenology sample's inputs three ways: one summer mosaic (the least cloudy
# scene first), the summer's per-pixel median, and a stack of three seasons' medians.
SEASONS = [{"name": "spring", "start": "03-01", "end": "05-31"},
           {"name": "summer", "start": "06-01", "end": "08-31"},
           {"name": "autumn", "start": "09-01", "end": "11-30"}]  # fmt: skip
SUMMER = {"start": "2023-06-01", "end": "2023-08-31"}
YEAR = {"start": "2023-01-01", "end": "2023-12-31"}
TIME_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "single": ({"compositing": "first"}, SUMMER),
    "median": ({"compositing": "median"}, SUMMER),
    "stack": ({"compositing": "median", "periods": SEASONS}, YEAR),
}


def write_phenology_sample(
    out: Path,
    spec: SampleSpec,
    train_seconds: float = 150.0,
    train_steps: int | None = None,
    variants: tuple[str, ...] = ("stack",),
) -> dict[str, tuple[Path, Path]]:
    """The phenology region under ``out/sample`` and, per variant of TIME_VARIANTS, a
    catalog training config ``out/train-<variant>.yaml`` (model in ``model-<variant>``)
    and a prediction config ``out/predict-<variant>.yaml``; returns their paths."""
    out = out.resolve()
    region = write_phenology_region(out / "sample", spec)
    classes = [{"name": n, "color": c}
               for n, c in zip(PHENO_CLASS_NAMES, PHENO_CLASS_COLORS, strict=True)]  # fmt: skip
    budget = {"max_seconds": train_seconds, **({"max_steps": train_steps} if train_steps else {}),
              "seed": spec.seed}  # fmt: skip
    paths = {}
    for name in variants:
        time, period = TIME_VARIANTS[name]
        run = predict_config(region, spec)
        run |= {"period": period, "checkpoint": f"model-{name}/checkpoint.safetensors",
                "store": f"map-{name}.zarr"}  # fmt: skip
        train = {
            **{k: run[k] for k in ("catalog", "collections", "period", "grid")},
            "time": time,
            "labels": str(region.stands.relative_to(out)),
            "label_field": "species",
            "chips": f"chips-{name}.zarr",
            "output": f"model-{name}",
            "bands": list(PHENO_BANDS),
            "classes": classes,
            "model": {"base_width": 16, "depth": 3, "batch_norm": True},
            "training": {"chip_size": 64, "batch_size": 8, "augmentation": "d4", **budget},
            "split": _split(spec),
        }  # fmt: skip
        paths[name] = (out / f"train-{name}.yaml", out / f"predict-{name}.yaml")
        paths[name][0].write_text(yaml.safe_dump(train, sort_keys=False))
        paths[name][1].write_text(yaml.safe_dump(run, sort_keys=False))
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=1024, help="region width and height, px")
    parser.add_argument(
        "--phenology",
        action="store_true",
        help="the phenology sample (a year of scenes), with configs for each TIME_VARIANTS",
    )


def run(args: argparse.Namespace) -> int:
    spec = SampleSpec(seed=args.seed, width=args.size, height=args.size)
    if args.phenology:
        paths = write_phenology_sample(args.out, spec, variants=tuple(TIME_VARIANTS))
        print(f"phenology sample in {args.out / 'sample'}; configs "
              + ", ".join(p.name for pair in paths.values() for p in pair))  # fmt: skip
        return 0
    path = write_sample(args.out, spec)
    print(f"sample region in {args.out / 'sample'}; training config {path}")
    return 0
