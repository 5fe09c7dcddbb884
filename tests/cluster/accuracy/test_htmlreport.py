"""report.html: self-contained (nothing fetched), escaped, redacted, and right, in a real browser.

The browser test opens the page ``statemap assess`` writes in Debian's headless
Chromium through Playwright (never a downloaded browser) and fails on any
console error or warning, page error, failed request or request for anything
but the file itself; it skips, saying why, where Chromium or Playwright is
not installed. ``STATEMAP_REPORT_SCREENSHOT=/some/file.png`` saves a full-page
screenshot of the page it opened, for a person to look at.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from cluster.accuracy.assessing import assess_samples
from cluster.accuracy.designfile import SampleDesign
from cluster.accuracy.htmlreport import REPORT_FILE, html_report
from cluster.accuracy.mapsummary import BINS, class_png, summarize
from cluster.accuracy.report import assessment_document
from cluster.accuracy.samplefile import read_samples
from cluster.accuracy.storechunks import StoreMap
from cluster.predict.store import NODATA, RunAttrs
from jobs.cli import main
from jobs.runrecord import RunRecord
from tests.browser import chromium
from tests.cluster.accuracy.storemaps import (
    CLASS_COLORS,
    TS,
    UNWRITTEN,
    known_map,
    pixel,
    write_store,
)

QUICKLOOK_SHAPE = (32, 40)  # the run's own quicklook.png: a size the drawn one is not
SECRET = "s3cr3t-t0ken"
REMOTE = "https://example.org/x.png"


def draw_and_label(store: str, out: Path, truth: np.ndarray) -> Path:
    """A stratified sample of the store's map, its CSV's reference column filled from the
    truth the way a labeller's would be; returns the CSV (design.json beside it)."""
    argv = ["sample-design", store, "--out", str(out), "--n", "60", "--seed", "3"]
    assert main([*argv, "--allocation", "equal"]) == 0
    samples = out / "samples.csv"
    with samples.open(newline="") as f:
        rows = list(csv.DictReader(f))
    names = json.loads((out / "design.json").read_text())["class_names"]
    for row in rows:
        row["reference"] = names[truth[pixel(float(row["x"]), float(row["y"]))]]
    with samples.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return samples


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    """A run (store, maps folder with run.json, quicklook.png, config.yaml) assessed by
    ``statemap assess``: the paths, and assessment.json as read back."""
    root = tmp_path_factory.mktemp("report")
    classes, confidence, truth = known_map()
    store = str(root / "map.zarr")
    write_store(store, classes, confidence)
    maps = root / "maps"
    RunRecord(
        "run-acc", "demo", "2024", "succeeded", "2024-01-01T00:00:00Z", store, str(maps),
        "cd" * 32, "0.1.0", finished="2024-01-01T01:00:00Z",
    ).save()  # fmt: skip
    quicklook = classes[::2, ::2]
    assert quicklook.shape == QUICKLOOK_SHAPE
    (maps / "quicklook.png").write_bytes(class_png(quicklook, CLASS_COLORS))
    config = {
        "catalog": f"https://stac.example.org/api?token={SECRET}",
        "collections": ["sentinel-2-l2a"],
        "checkpoint": "s3://models/unet.ckpt",
        "period": {"start": "2024-04-01", "end": "2024-09-30"},
        "time": {"compositing": "median", "periods": [{"name": "spring", "start": "04-01",
                                                        "end": "05-31"}]},
    }  # fmt: skip
    (maps / "config.yaml").write_text(yaml.safe_dump(config))
    samples = draw_and_label(store, root / "sample", truth)
    assert main(["assess", str(maps), str(samples)]) == 0
    doc = json.loads((root / "sample" / "assessment.json").read_text())
    return {"report": root / "sample" / REPORT_FILE, "doc": doc, "store": store}


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


def open_page(browser, path: Path) -> tuple[Any, list[str], list[str]]:
    """The page at ``path`` opened from file://, every request recorded (and any but the file's
    own or a data: URI refused), with the console errors and warnings, page errors and
    failed requests it gave rise to."""
    url = path.resolve().as_uri()
    problems: list[str] = []
    requested: list[str] = []

    def route(r) -> None:
        requested.append(r.request.url)
        if r.request.url == url or r.request.url.startswith("data:"):
            r.continue_()
        else:
            r.abort()

    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.route("**/*", route)
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.goto(url, wait_until="load")
    return page, problems, requested


def test_the_report_opens_in_headless_chromium_offline_and_shows_the_figures(run, browser):
    doc = run["doc"]
    page, problems, requested = open_page(browser, run["report"])
    if os.environ.get("STATEMAP_REPORT_SCREENSHOT"):
        page.screenshot(path=os.environ["STATEMAP_REPORT_SCREENSHOT"], full_page=True)

    assert problems == []
    assert [u for u in requested if not u.startswith("data:")] == [run["report"].as_uri()]
    assert "run-acc" in page.title()
    header = page.inner_text("header")
    assert (
        "region demo" in header and "period 2024" in header and "checkpoint cdcdcdcdcdcd" in header
    )

    overall = doc["overall"]["accuracy"]
    assert page.inner_text("#overall-accuracy") == f"{overall['value']:.3f}"
    counts = cells(page, "#matrix-counts")
    assert [[int(v) for v in row[:-1]] for row in counts[:-1]] == doc["error_matrix"]["counts"]
    proportions = cells(page, "#matrix-proportions")
    want = [[f"{v:.4f}" for v in row] for row in doc["error_matrix"]["proportions"]]
    assert [row[:-1] for row in proportions[:-1]] == want
    estimates = cells(page, "#estimates")
    areas = cells(page, "#areas")
    for c, estimate, area in zip(doc["per_class"], estimates, areas, strict=True):
        users, f1, ha = c["users"], c["f1"], c["area_ha"]
        assert estimate[:3] == [f"{users['value']:.3f}", f"{users['se']:.3f}",
                                f"[{users['low']:.3f}, {users['high']:.3f}]"]  # fmt: skip
        assert estimate[6] == f"{f1['value']:.3f}"
        assert area == [f"{ha['value']:,.1f}", f"{ha['se']:,.1f}",
                        f"[{ha['low']:,.1f}, {ha['high']:,.1f}]",
                        f"{c['mapped_area_ha']:,.1f}", f"{c['mapped_pixels']:,}"]  # fmt: skip

    names = [c["class"] for c in doc["per_class"]]
    bars = page.eval_on_selector_all(
        "svg.area-chart g.errorbar", "els => els.map(e => e.dataset.class)"
    )
    assert bars == names
    assert page.eval_on_selector("#quicklook", "img => img.complete") is True
    assert page.eval_on_selector("#quicklook", "img => img.naturalWidth") == QUICKLOOK_SHAPE[1]
    assert page.locator("svg.histogram rect.bar").count() == BINS
    assert page.locator("svg.locations circle.unit").count() == len(doc["units"])
    disagree = sum(u["map_class"] != u["reference"] for u in doc["units"])
    assert page.locator("svg.locations circle.disagree").count() == disagree > 0
    assert page.inner_text("#legend").split("\n") == [f"{i} {n}" for i, n in enumerate(names)]
    facts = page.inner_text("#facts")
    assert "median" in facts and "spring 04-01..05-31" in facts and "sentinel-2-l2a" in facts
    assert SECRET not in page.content() and "token=REDACTED" in facts
    page.close()


def test_the_watch_sees_a_page_that_would_fetch(run, browser, tmp_path):
    """The checks above are worth something: the page with one remote image is caught by its
    own policy, and, without the policy, by the recorded and refused request."""
    html = run["report"].read_text().replace("<body>", f'<body><img src="{REMOTE}">', 1)
    unguarded = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    for name, text in (("guarded.html", html), ("unguarded.html", unguarded)):
        (tmp_path / name).write_text(text)
    page, problems, requested = open_page(browser, tmp_path / "guarded.html")
    page.close()
    assert any("Content Security Policy" in p for p in problems) and REMOTE not in requested
    page, problems, requested = open_page(browser, tmp_path / "unguarded.html")
    page.close()
    assert f"failed: {REMOTE}" in problems and REMOTE in requested


def cells(page, table: str) -> list[list[str]]:
    """The text of each row's data cells (td) of ``table``; header rows (no td) left out."""
    rows = page.eval_on_selector_all(
        f"{table} tr", "rows => rows.map(r => [...r.querySelectorAll('td')].map(c => c.innerText))"
    )
    return [row for row in rows if row]


def test_the_page_names_nothing_to_fetch(run):
    html = run["report"].read_text()
    assert "<script" not in html and "@import" not in html and "url(" not in html
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", html)
    assert links and all(link.startswith("data:") for link in links)
    assert "default-src 'none'" in html and SECRET not in html


def test_data_is_escaped_and_the_map_drawn_when_the_run_has_no_quicklook(tmp_path, capsys):
    classes, confidence, truth = known_map()
    names = ("<b>water</b>", "open & land", 'broad"leaf', "conifer")
    attrs = RunAttrs("run-<i>x</i>", "ab" * 32, names, CLASS_COLORS, "0.1.0")
    store = str(tmp_path / "map.zarr")
    write_store(store, classes, confidence, attrs)
    samples = draw_and_label(store, tmp_path / "s", truth)
    assert main(["assess", store, str(samples), "--no-report"]) == 0
    assert not (tmp_path / "s" / REPORT_FILE).exists()
    capsys.readouterr()

    source = StoreMap.open(store)
    assessed = assess_samples(
        source,
        read_samples(str(samples)),
        design=SampleDesign.read(str(tmp_path / "s/design.json")),
    )
    doc = json.loads(json.dumps(assessment_document(assessed, source), allow_nan=False))
    html = html_report(doc, source)
    for name in (*names[:3], "run-<i>x</i>"):
        assert name not in html
    assert "&lt;b&gt;water&lt;/b&gt;" in html and "open &amp; land" in html
    assert "drawn from the store" in html and "no run record" in html.lower()

    doc["area"]["pixel_area_m2"] = None  # a map in degrees: shares instead of hectares
    for c in doc["per_class"]:
        c["area_ha"] = c["mapped_area_ha"] = None
    shares = html_report(doc, source)
    assert "share of the mapped area" in shares
    first = doc["per_class"][0]["area_proportion"]["value"]
    assert f'<td class="n">{first:.4f}</td>' in shares


@pytest.mark.parametrize("block_px", [16, 48, 1024])
def test_summary_is_every_stride_th_pixel_and_exact_bins_whatever_the_blocks(tmp_path, block_px):
    classes, confidence, _ = known_map()  # UNWRITTEN's tile is nodata in both, as read back
    r, c = UNWRITTEN
    assert (classes[r * TS : (r + 1) * TS, c * TS : (c + 1) * TS] == NODATA).all()
    write_store(tmp_path / "map.zarr", classes, confidence)
    summary = summarize(StoreMap.open(str(tmp_path / "map.zarr"), block_px=block_px), max_px=27)
    assert summary.stride == 3
    np.testing.assert_array_equal(summary.classes, classes[::3, ::3])
    valid = confidence[confidence != NODATA] / 254
    want = np.bincount(np.minimum((valid * BINS + 1e-9).astype(int), BINS - 1), minlength=BINS)
    assert summary.confidence_counts == tuple(want.tolist())
    assert summary.confidence_nodata == int((confidence == NODATA).sum())
    assert len(summary.bin_edges) == BINS + 1


def test_the_class_picture_is_a_png_of_the_class_colours():
    classes = np.array([[0, 1, NODATA], [3, 2, 0]], np.uint8)
    image = Image.open(io.BytesIO(class_png(classes, CLASS_COLORS)))
    assert image.mode == "RGBA" and image.size == (3, 2)
    pixels = np.asarray(image)
    assert pixels[0, 0].tolist() == [0x1F, 0x78, 0xB4, 255]
    assert pixels[0, 2, 3] == 0 and pixels[1, 0].tolist() == [0x00, 0x4D, 0x00, 255]
