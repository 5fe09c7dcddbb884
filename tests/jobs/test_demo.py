import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.stacvalidate import validate_catalog

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    """The whole chain, with a relative --out as a newcomer types it."""
    statemap = Path(sys.executable).with_name("statemap")
    args = ["demo", "--out", "demo-out", "--size", "256", "--seconds", "12", "--quiet"]
    run = subprocess.run(
        [str(statemap), *args], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert re.search(r"mean IoU\s+\d\.\d{3}\s+\d\.\d{3}", run.stdout)
    assert re.search(r"\d+ tiles done, 0 skipped .* 0 failed", run.stdout)
    assert re.search(r"map against ground truth: whole region OA \d\.\d{3}", run.stdout)
    out = tmp_path / "demo-out"
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert {"unet", "random_forest"} <= metrics.keys()
    for name in ("checkpoint.safetensors", "training_curve.png", "confusion_forest.png"):
        assert (out / "model" / name).is_file()
    assert (out / "sample" / "catalog.json").is_file()
    assert (out / "map.zarr" / "zarr.json").is_file()
    run_id = _run_id(run.stdout)
    maps = out / "maps"
    assert sorted(p.name for p in maps.glob("*.tif")) == [
        f"{run_id}_{kind}.tif" for kind in ("class", "confidence")
    ]
    assert (maps / "quicklook.png").read_bytes()[:4] == b"\x89PNG"
    assert validate_catalog(maps / "collection.json") >= 2


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
    last = run.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"unet_miou=\d\.\d{4} rf_miou=\d\.\d{4} train_s=\d+\.\d", last), last
