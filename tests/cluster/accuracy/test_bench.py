"""``bench/accuracy.py`` on a small map: it runs the two commands and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "accuracy.py"
NUMBER = r"\d+(?:\.\d+)?"


@pytest.mark.slow
def test_accuracy_benchmark_prints_its_figures():
    run = subprocess.run([sys.executable, str(BENCH), "--size", "4000", "--n", "600"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    last = run.stdout.strip().splitlines()[-1]
    pattern = (rf"size_px=4000 design_peak_mb={NUMBER} design_s={NUMBER} "
               rf"assess_peak_mb={NUMBER} assess_s={NUMBER}")  # fmt: skip
    assert re.fullmatch(pattern, last), last
