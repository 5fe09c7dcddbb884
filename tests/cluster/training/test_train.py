"""Training from the catalog and reference labels, end to end: the score training
reports on its test blocks is the score of the map a run makes there (parity);
labels as polygons, points or another grid's raster; another recipe refused."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from cluster.predict.driver import run_predict
from cluster.sample.scene import SampleSpec
from cluster.training.parity import map_scores
from cluster.training.train import CatalogTrainSpec, train_from_catalog
from jobs.config import load_predict_config
from jobs.sample import write_sample
from jobs.trainconfig import load_train_config
from unet.checkpoint import load_checkpoint, save_checkpoint
from unet.model import UNet

pytestmark = pytest.mark.slow
SPEC = SampleSpec(seed=5, width=512, height=512, stand_px=96)
BIN = Path(sys.executable).parent


def _config(out: Path, steps: int, **changes: object) -> Path:
    """The sample's catalog training config, small and trained by steps."""
    path = out / "train.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["model"]["base_width"] = 8
    doc["training"] |= {"max_steps": steps, "max_seconds": 1e6, "evaluations": 0}
    doc |= changes
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, local_ray) -> tuple[Path, CatalogTrainSpec, float]:
    out = tmp_path_factory.mktemp("catalog-train")
    write_sample(out, SPEC)
    spec = load_train_config(_config(out, steps=120))
    assert isinstance(spec, CatalogTrainSpec)
    result = train_from_catalog(spec, progress=False, log=lambda _: None)
    return out, spec, result.scores.miou


def test_the_map_scores_on_the_test_blocks_what_training_reported(trained):
    out, _, trained_miou = trained
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    split = metrics["split"]
    assert min(s["chips"] for s in split.values()) > 0
    card = load_checkpoint(out / "model" / "checkpoint.safetensors")[1]
    recipe = card.extra["recipe"]
    assert recipe["compositing"] == "first" and recipe["units"] == "reflectance"
    assert recipe["collections"] == ["sentinel-2-l2a"] and card.extra["test"]["miou"] > 0.5
    summary = run_predict(load_predict_config(out / "predict.yaml"), progress=False)
    assert not summary.failed
    scores, map_miou = map_scores(summary.store, out / "model")
    pixels = int(scores.confusion.sum())
    print(f"test blocks: training mIoU {trained_miou:.4f}, map mIoU {map_miou:.4f} over "
          f"{pixels} px, parity_delta {abs(map_miou - trained_miou):.4f}")  # fmt: skip
    scored = np.load(out / "model" / "test_labels.npz")["labels"]
    assert pixels == (scored != 255).sum() > 10_000  # the test stands' pixels, as training
    assert split["test"]["features"] > 0 and split["train"]["features"] > 0
    assert abs(map_miou - trained_miou) <= 0.02
    cli = subprocess.run([str(BIN / "statemap"), "score", summary.store, str(out / "model")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.splitlines()[-1] == f"parity_delta={abs(map_miou - trained_miou):.4f}"
    assert "precision" in cli.stdout and "(no class)" in cli.stdout


def test_a_checkpoint_of_another_recipe_is_refused(trained, tmp_path):
    out, _, _ = trained
    model, card = load_checkpoint(out / "model" / "checkpoint.safetensors")
    time = card.extra["recipe"]["time"] | {"compositing": "median"}
    recipe = card.extra["recipe"] | {"compositing": "median", "time": time}
    other = dataclasses.replace(card, extra=card.extra | {"recipe": recipe})
    path = tmp_path / "median.safetensors"
    save_checkpoint(path, UNet(card.config), other)
    config = yaml.safe_load((out / "predict.yaml").read_text())
    config |= {
        "checkpoint": str(path),
        "store": str(tmp_path / "map.zarr"),
        "catalog": str(out / config["catalog"]),
        "region": str(out / config["region"]),
        "time": {"compositing": "first"},  # a run follows its checkpoint, or is refused
    }
    (tmp_path / "predict.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([str(BIN / "statemap"), "validate", str(tmp_path / "predict.yaml")],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr  # a valid config: the refusal is about inputs
    refused = subprocess.run(
        [str(BIN / "statemap"), "predict", str(tmp_path / "predict.yaml"), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert refused.returncode == 2
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("statemap: error:")]
    assert "made by 'median of >= 1 clear observation(s)'" in line
    assert "this run sets time.compositing = 'first'" in line
    assert not (tmp_path / "map.zarr").exists()
    del model


@pytest.mark.parametrize(
    ("labels", "field"),
    [("sample/points.geojson", "class_id"), ("sample/labels_epsg32632_20m.tif", None)],
    ids=["geojson-points", "raster-32632-20m"],
)
def test_points_and_another_grids_raster_train_end_to_end(trained, tmp_path, labels, field):
    out, _, _ = trained
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "sample").symlink_to(out / "sample")
    doc = yaml.safe_load((out / "train.yaml").read_text())
    doc |= {"labels": labels, "label_field": field, "output": "model"}
    doc["split"] |= {"fractions": [0.8, 0.0, 0.2]}
    doc["training"] |= {"max_steps": 20}
    (copy / "train.yaml").write_text(yaml.safe_dump(doc))
    run = subprocess.run([str(BIN / "statemap"), "train", str(copy / "train.yaml"), "--quiet"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "chips made" in run.stdout and "mean IoU" in run.stdout
    metrics = json.loads((copy / "model" / "metrics.json").read_text())
    assert metrics["steps"] == 20 and metrics["split"]["train"]["pixels"] > 1000
    counts = np.array([metrics["split"][s]["pixels"] for s in ("train", "test")])
    assert (counts > 0).all()


def test_bad_labels_stop_training_with_one_line(trained, tmp_path):
    out, _, _ = trained
    doc = yaml.safe_load((out / "train.yaml").read_text())
    doc |= {"labels": str(out / "sample" / "stands.gpkg"), "output": str(tmp_path / "model"),
            "catalog": str(out / doc["catalog"])}  # fmt: skip
    doc["classes"] = doc["classes"][:3]  # conifer is not a class any more
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(doc))
    run = subprocess.run([str(BIN / "statemap"), "train", str(tmp_path / "train.yaml")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 2 and "Traceback" not in run.stderr
    (line,) = [x for x in run.stderr.splitlines() if x.startswith("statemap: error:")]
    assert "stands.gpkg" in line and "'conifer'" in line
    assert not (tmp_path / "model").exists()


def test_chips_benchmark_prints_its_figures():
    """bench/chips.py, small: the region, the chips on Ray, a few training steps."""
    bench = Path(__file__).resolve().parents[3] / "bench" / "chips.py"
    args = ["--size", "512", "--chip", "16", "--halo", "8", "--steps", "3"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, str(bench), *args], capture_output=True, text=True,
                         env=env, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"chips=(\d+) chips_s=\d+\.\d peak_mb=(\d+)", last)
    assert match, last
    assert int(match[1]) > 800  # 32 x 32 cells of 16 px, less the unmapped corner
