"""Debian's headless Chromium driven by Playwright, for the tests of pages statemap writes.

Never a downloaded browser (``playwright install`` fetches one and fails offline):
``/usr/bin/chromium`` from apt, which ``.ci/run`` installs. Software WebGL is on
(SwiftShader), or WebGL maps render blank in a headless browser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-unsafe-swiftshader",  # software WebGL: the viewer's map is drawn with it
    "--use-angle=swiftshader",
]


def chromium() -> Iterator[Any]:
    """The browser for a fixture to yield from; a skip where Chromium or Playwright is missing."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (Debian's package)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'"
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
