"""The viewer written with a run's maps, served by ``statemap view``, in a real browser.

Debian's headless Chromium (software WebGL) opens the page that ``statemap view``
serves for a compiled run with known classes at known places: after the map has
rendered, the screen pixel at each class's coordinate has the class's colour at
two zoom levels (an overview and full resolution), nodata is transparent, a
click names the class, confidence and coordinates, switching to confidence
changes the pixels; no console error, no failed request, and every COG request
answered 206. An empty canvas fails these tests: they look at the pixels.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from rasterio.warp import transform as warp_transform

from cluster.maps.viewer.site import CONFIG, VIEWER, link_report
from tests.browser import chromium
from tests.cluster.maps.viewermaps import (
    CLASS_COLORS,
    CLASS_NAMES,
    INSIDE,
    NODATA_ROWS,
    ORIGIN,
    RES,
    SIZE,
    classes,
    compiled_run,
    confidence,
    coordinate,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
OVERVIEW_RES, FULL_RES = 25.0, 2.5  # m per screen pixel: the 20 m overview; full resolution
TOLERANCE = 3  # per channel


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture(scope="module", params=["EPSG:25832", "EPSG:3035"])
def maps(request, tmp_path_factory) -> tuple[str, Path]:
    """A compiled run in the CRS given, whose viewer links its accuracy report."""
    crs = request.param
    folder = compiled_run(tmp_path_factory.mktemp(crs.replace(":", "")), crs)
    (folder / "accuracy").mkdir()
    (folder / "accuracy" / "report.html").write_text("<!doctype html><title>report</title>")
    assert link_report(str(folder), "accuracy/report.html")
    return crs, folder


@contextmanager
def viewing(*targets: Path | str) -> Iterator[str]:
    """``statemap view TARGETS --port 0`` running; yields the URL it printed."""
    argv = [sys.executable, "-m", "jobs.cli", "view", *map(str, targets), "--port", "0"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "statemap viewer:" in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not found.wait(60):
            raise AssertionError(f"statemap view printed no URL: {''.join(lines)!r}")
        yield re.search(r"statemap viewer: (\S+)", "".join(lines)).group(1)
    finally:
        proc.terminate()
        proc.wait(20)


class Viewer:
    """A page of the viewer, every problem it had and every COG response recorded."""

    def __init__(self, browser: Any, url: str) -> None:
        self.problems: list[str] = []
        self.cog_statuses: list[tuple[int, str]] = []
        self.page = browser.new_page(viewport={"width": 1000, "height": 800})
        page = self.page
        page.on("console", lambda m: m.type == "error" and self.problems.append(m.text))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        page.on("response", self._response)
        page.route("**/*", lambda route: self._only_loopback(route, url))
        page.goto(url)
        self.wait(0)

    def _only_loopback(self, route: Any, origin: str) -> None:
        """Nothing but the server ``statemap view`` started: no CDN, no projection lookup."""
        if route.request.url.startswith((origin, "data:", "blob:")):
            route.continue_()
        else:
            self.problems.append(f"fetched from elsewhere: {route.request.url}")
            route.abort()

    def _response(self, response: Any) -> None:
        if response.url.endswith(".tif"):
            self.cog_statuses.append((response.status, response.url))
        elif response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def state(self, key: str) -> Any:
        return self.page.evaluate("k => window.statemapViewer[k]", key)

    def wait(self, renders: int) -> None:
        """Until the map has completed more than ``renders`` renders (all tiles drawn)."""
        self.page.wait_for_function(
            "n => window.statemapViewer && "
            "(window.statemapViewer.error || window.statemapViewer.renders > n)",
            arg=renders,
            timeout=60_000,
        )
        assert self.state("error") is None, self.state("error")

    def show(self, x: float, y: float, resolution: float) -> None:
        before = self.state("renders")
        self.page.evaluate("([x, y, r]) => window.statemapViewer.show(x, y, r)", [x, y, resolution])
        self.wait(before)

    def screen(self, x: float, y: float) -> tuple[int, int]:
        """The page pixel (column, row) of the map coordinate (x, y)."""
        px, py = self.page.evaluate("([x, y]) => window.statemapViewer.pixelOf(x, y)", [x, y])
        box = self.page.locator("#map").bounding_box()
        return round(box["x"] + px), round(box["y"] + py)

    def shot(self) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(self.page.screenshot())).convert("RGB"))

    def color(self, x: float, y: float, shot: np.ndarray | None = None) -> np.ndarray:
        col, row = self.screen(x, y)
        return (self.shot() if shot is None else shot)[row, col].astype(int)


def rgb(hex_color: str) -> np.ndarray:
    return np.array([int(hex_color[i : i + 2], 16) for i in (1, 3, 5)])


def assert_color(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert np.abs(got - want).max() <= TOLERANCE, f"{what}: screen {got.tolist()}, want {want}"


def centre(crs: str) -> tuple[float, float]:
    return coordinate(crs, SIZE // 2, SIZE // 2)


@contextmanager
def overview(browser: Any, crs: str, *folders: Path) -> Iterator[Viewer]:
    """The viewer of ``folders`` served by ``statemap view``, the whole map on screen at
    the overview's zoom; on leaving, every COG request was answered 206 and none failed."""
    with viewing(*folders) as url:
        viewer = Viewer(browser, url)
        viewer.show(*centre(crs), OVERVIEW_RES)
        yield viewer
        statuses = viewer.cog_statuses
        assert statuses and all(status == 206 for status, _ in statuses), statuses
        assert viewer.problems == []


def test_every_class_has_its_colour_at_two_zoom_levels(browser, maps):
    crs, folder = maps
    with overview(browser, crs, folder) as viewer:
        shot = viewer.shot()
        for value, (row, col) in INSIDE.items():
            where = coordinate(crs, row, col)
            assert_color(viewer.color(*where, shot), rgb(CLASS_COLORS[value]), f"overview, {value}")
        nodata = viewer.color(*coordinate(crs, NODATA_ROWS // 2, SIZE // 2), shot)
        assert_color(nodata, np.array([255, 255, 255]), "nodata (transparent on white)")
        for value, (row, col) in INSIDE.items():
            where = coordinate(crs, row, col)
            viewer.show(*where, FULL_RES)
            assert_color(viewer.color(*where), rgb(CLASS_COLORS[value]), f"full res, {value}")


def test_a_click_names_class_confidence_and_coordinates(browser, maps):
    crs, folder = maps
    with overview(browser, crs, folder) as viewer:
        conf = confidence(classes())
        for value, (row, col) in INSIDE.items():
            viewer.page.mouse.click(*viewer.screen(*coordinate(crs, row, col)))
            info = viewer.page.locator("#info")
            info.locator(".info-class").filter(has_text=CLASS_NAMES[value]).wait_for()
            text = info.inner_text()
            shown_xy = re.search(rf"{crs} ([\d.]+), ([\d.]+)", text)
            x, y = float(shown_xy.group(1)), float(shown_xy.group(2))
            x0, y0 = ORIGIN[crs]
            at = int((y0 - y) // RES), int((x - x0) // RES)  # the pixel clicked
            assert abs(at[0] - row) <= 2 and abs(at[1] - col) <= 2, text
            assert f"confidence {conf[at]} of 254" in text, text
            lon, lat = warp_transform(crs, "EPSG:4326", [x], [y])
            shown = re.search(r"lon/lat ([\d.-]+), ([\d.-]+)", text)
            assert float(shown.group(1)) == pytest.approx(lon[0], abs=2e-6), text
            assert float(shown.group(2)) == pytest.approx(lat[0], abs=2e-6), text


def test_confidence_replaces_the_classes_and_the_report_opens(browser, maps):
    crs, folder = maps
    with overview(browser, crs, folder) as viewer:
        before, renders = viewer.shot(), viewer.state("renders")
        viewer.page.locator("input[name=mode][value=confidence]").check()
        viewer.wait(renders)
        after = viewer.shot()
        changed = (np.abs(after.astype(int) - before.astype(int)).max(axis=2) > 30).mean()
        assert changed > 0.2, f"only {changed:.1%} of the page changed"
        west = viewer.color(*coordinate(crs, 500, 40), after)
        east = viewer.color(*coordinate(crs, 500, SIZE - 40), after)
        assert np.abs(west - east).max() > 100  # the ramp: low confidence west, high east
        assert "confidence 0 .. 254" in viewer.page.locator("#legend").inner_text()
        link = viewer.page.locator("#report")
        assert link.is_visible()
        assert viewer.page.request.get(link.evaluate("a => a.href")).status == 200


def test_two_runs_side_by_side_with_a_swipe(browser, tmp_path):
    a = compiled_run(tmp_path / "a", run_id="run-a")
    b = compiled_run(tmp_path / "b", shift=1, run_id="run-b")
    crs = "EPSG:25832"
    west, east = coordinate(crs, *INSIDE[0]), coordinate(crs, *INSIDE[4])
    with overview(browser, crs, a, b) as viewer:
        assert "run-a" in viewer.page.inner_text("header") and "run-b" in viewer.page.inner_text(
            "header"
        )
        shot = viewer.shot()
        assert_color(viewer.color(*west, shot), rgb(CLASS_COLORS[0]), "run a, left of the swipe")
        assert_color(viewer.color(*east, shot), rgb(CLASS_COLORS[0]), "run b, right of the swipe")
        renders = viewer.state("renders")
        viewer.page.locator("#swipe").fill("100")  # all of the map is run a
        viewer.wait(renders)
        assert_color(viewer.color(*east), rgb(CLASS_COLORS[4]), "run a, swipe at the right")
        viewer.page.mouse.click(*viewer.screen(*east))
        viewer.page.locator("#info").filter(has_text="run-a").wait_for()
        assert CLASS_NAMES[4] in viewer.page.locator("#info").inner_text()


def test_the_viewer_config_comes_from_the_cogs(maps):
    crs, folder = maps
    config = json.loads((folder / VIEWER / CONFIG).read_text())
    assert config["crs"]["code"] == crs and "+no_defs" in config["crs"]["proj4"]
    assert "=True" not in config["crs"]["proj4"]  # GDAL's form, which proj4js misreads
    assert [c["name"] for c in config["classes"]] == list(CLASS_NAMES)
    assert [c["color"] for c in config["classes"]] == list(CLASS_COLORS)
    assert len(config["parts"]) == 4 and config["overviews"] == 1
    for part in config["parts"]:
        for key in ("class", "confidence"):
            assert (folder / VIEWER / part[key]).resolve().is_file()
    assert config["report"] == "../accuracy/report.html"
    assert config["quicklook"] == "../quicklook.png" and config["collection"] is None
