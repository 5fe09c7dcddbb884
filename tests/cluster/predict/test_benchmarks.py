"""bench/pipeline.py, bench/feed.py and bench/mfu.py run, small, and print their last lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[3] / "bench"
NUMBER = r"\d+\.\d+"


def _last_line(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                         text=True, env=env, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout.strip().splitlines()[-1]


def test_pipeline_benchmark_prints_its_figures():
    """Four 256-px tiles, one end-to-end and one model-only run."""
    last = _last_line("pipeline.py", "--size", "512", "--repeats", "1")
    pattern = rf"model_tiles_s={NUMBER} e2e_tiles_s={NUMBER} ratio={NUMBER} device=(cpu|cuda)"
    assert re.fullmatch(pattern, last), last


def test_feed_benchmark_prints_its_figures():
    """Sixteen 128-px tiles through the readers with the model skipped, once."""
    last = _last_line("feed.py", "--size", "512", "--tile-size", "128", "--repeats", "1")
    pattern = rf"cpus=(\d+) read_tiles_s_1thread={NUMBER} feed_tiles_s={NUMBER} efficiency={NUMBER}"
    match = re.fullmatch(pattern, last)
    assert match and int(match[1]) >= 1, last


def test_mfu_benchmark_prints_its_figures():
    """A small U-Net for half a second; its FLOPs counted by torch's counter."""
    last = _last_line("mfu.py", "--width", "8", "--tile-size", "64", "--seconds", "0.5")
    pattern = rf"mpx_s={NUMBER} tflops={NUMBER} mfu=(n/a|{NUMBER}) batch=(\d+) device=(cpu|cuda)"
    match = re.fullmatch(pattern, last)
    assert match and int(match[2]) >= 1, last
