"""``bench/viewer.py`` on small parts: it compiles, serves, renders and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import CHROMIUM

BENCH = Path(__file__).resolve().parents[3] / "bench" / "viewer.py"


@pytest.mark.slow
def test_viewer_benchmark_prints_its_figures():
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (Debian's package)")
    argv = [sys.executable, str(BENCH), "--part-px", "1000", "--runs", "2"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    last = run.stdout.strip().splitlines()[-1]
    number = r"\d+\.\d\d"
    assert re.fullmatch(rf"parts=4 part_px=1000 first_render_s={number} "
                        rf"first_render_max_s={number}", last), last  # fmt: skip
