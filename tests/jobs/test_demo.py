"""The README's first command and the sample region as a Ray job, as a newcomer
meets them: in a fresh copy of the repository (what a clone holds), with a
relative ``--out``, then the README's own ``ray job submit`` line."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.imagery.stacvalidate import validate_catalog
from tests.jobs.conftest import client_env

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def fresh_clone(dest: Path) -> Path:
    """The files a clone of this checkout would hold: tracked and not ignored, as
    they are in the working tree (so uncommitted work is tested too)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``statemap demo`` run in a fresh clone (smaller, and trained by steps)."""
    clone = fresh_clone(tmp_path_factory.mktemp("clone"))
    assert not (clone / "demo-out").exists() and (clone / ".gitignore").is_file()
    args = ["demo", "--size", "256", "--steps", "60", "--seconds", "1e6", "--quiet"]
    run = subprocess.run(
        [str(BIN / "statemap"), *args], capture_output=True, text=True, timeout=600, cwd=clone
    )
    assert run.returncode == 0, run.stderr
    return clone, run


@pytest.mark.slow
def test_phenology_demo_maps_with_a_stack(tmp_path):
    """``statemap demo --phenology``: the year's scenes, trained and mapped as a stack of
    three seasons' medians, the map agreeing with what training reported."""
    out = tmp_path / "out"
    args = ["demo", "--phenology", "--size", "384", "--steps", "30", "--seconds", "1e6",
            "--quiet", "--out", str(out)]  # fmt: skip
    run = subprocess.run([str(BIN / "statemap"), *args], capture_output=True, text=True,
                         timeout=900, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert re.search(r"4 tiles done, 0 skipped .* 0 failed", run.stdout)
    assert re.search(r"parity_delta=0\.0[01]\d\d", run.stdout)
    metrics = json.loads((out / "model-stack" / "metrics.json").read_text())
    assert metrics["steps"] == 30
    assert (out / "maps" / "collection.json").is_file()


@pytest.mark.slow
def test_demo_runs_end_to_end(demo):
    """The whole chain, into the default ``demo-out`` of the folder it runs in."""
    clone, run = demo
    assert re.search(r"mean IoU\s+\d\.\d{3}\s+\d\.\d{3}", run.stdout)
    assert re.search(r"\d+ tiles done, 0 skipped .* 0 failed", run.stdout)
    assert re.search(r"map against ground truth: whole region OA \d\.\d{3}", run.stdout)
    out = clone / "demo-out"
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert {"unet", "random_forest"} <= metrics.keys()
    assert metrics["steps"] == 60  # trained by steps: the same model on any machine
    for name in ("checkpoint.safetensors", "training_curve.png", "confusion_forest.png"):
        assert (out / "model" / name).is_file()
    assert (out / "sample" / "catalog.json").is_file()
    assert (out / "map.zarr" / "zarr.json").is_file()
    run_id = _run_id(run.stdout)
    maps = out / "maps"
    assert sorted(p.name for p in maps.glob("*.tif")) == [
        f"{run_id}_{kind}.tif" for kind in ("class", "confidence", "quality")
    ]
    assert (maps / "quicklook.png").read_bytes()[:4] == b"\x89PNG"
    assert validate_catalog(maps / "collection.json") >= 2


@pytest.mark.slow
def test_demo_ends_with_an_accuracy_assessment(demo):
    """A sample drawn from the map, labelled from the ground truth: the estimated overall
    accuracy's interval holds the map's true accuracy (the ``OA`` printed above it, over
    every pixel; a 95% interval, so the seeded sample is checked, not a chance)."""
    clone, run = demo
    accuracy = clone / "demo-out" / "accuracy"
    for name in ("samples.gpkg", "samples.csv", "design.json", "samples_labelled.csv"):
        assert (accuracy / name).is_file(), name
    doc = json.loads((accuracy / "assessment.json").read_text())
    overall = doc["overall"]["accuracy"]
    truth = float(re.search(r"whole region OA (\d\.\d{3})", run.stdout).group(1))
    assert overall["low"] <= truth <= overall["high"], (overall, truth)
    assert re.search(r"overall accuracy\s+\d\.\d{3} SE \d\.\d{3} \[", run.stdout)
    assert "pixel-count area (ha)" in run.stdout
    assert sum(c["sample_mapped"] for c in doc["per_class"]) == len(doc["units"]) >= 100
    maps = clone / "demo-out" / "maps"  # the map's viewer opens the report
    viewer = json.loads((maps / "viewer" / "maps.json").read_text())
    assert viewer["report"] == "../accuracy/report.html"
    assert (maps / "accuracy" / "report.html").read_bytes() == (
        accuracy / "report.html"
    ).read_bytes()
    assert "statemap view" in run.stdout


def readme_sample_job() -> str:
    """The README's submit line for the sample region, exactly as written there."""
    lines = (ROOT / "README.md").read_text().splitlines()
    found = [ln for ln in lines if "ray job submit" in ln and "jobs/regions/sample.yaml" in ln]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.slow
def test_readme_sample_job_succeeds_on_a_ray_cluster(demo, head_node):
    """``ray job submit --working-dir .`` uploads the clone without its ignored
    demo-out/; the README's line still finds the demo's data and writes the maps."""
    clone, _ = demo
    address, env = head_node
    command = readme_sample_job()
    job_env = client_env(env) | {"RAY_ADDRESS": address}
    run = subprocess.run(
        ["bash", "-c", command],
        cwd=clone,
        env=job_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "succeeded" in run.stdout + run.stderr
    (record,) = sorted((clone / "demo-out" / "runs" / "maps").glob("sample-*/run.json"))
    doc = json.loads(record.read_text())
    assert doc["state"] == "succeeded", doc
    cogs = sorted(p.name for p in record.parent.glob("*.tif"))
    kinds = ("class", "confidence", "quality")
    assert cogs == [f"{record.parent.name}_{kind}.tif" for kind in kinds]


def _run_id(stdout: str) -> str:
    match = re.search(r"^run (\S+):", stdout, re.MULTILINE)
    assert match, stdout
    return match.group(1)


@pytest.mark.slow
def test_benchmark_prints_its_figures(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "unet_vs_rf.py"), "--seconds", "5", "--size", "256"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    parity, last = run.stdout.strip().splitlines()[-2:]
    assert re.fullmatch(r"parity_delta=\d\.\d{4} map_miou=\d\.\d{4}", parity), parity
    assert re.fullmatch(r"unet_miou=\d\.\d{4} rf_miou=\d\.\d{4} train_s=\d+\.\d", last), last
