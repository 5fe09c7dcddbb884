"""``statemap view``'s server (range requests, a second run, maps synced from S3) and the
viewer's build (the shipped scripts are what the lock file builds)."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from cluster.errors import ClusterError
from cluster.maps.viewer.serve import local_maps
from cluster.maps.viewer.site import CONFIG, STATIC, VIEWER
from tests.cluster.maps.test_viewer import viewing
from tests.cluster.maps.viewermaps import compiled_run

WEB = STATIC.parent / "web"


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> Path:
    return compiled_run(tmp_path_factory.mktemp("serve"))


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    with direct.open(request, timeout=30) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


@pytest.mark.slow
def test_range_requests_a_second_run_and_the_page(maps, tmp_path):
    other = compiled_run(tmp_path / "other", shift=1, run_id="run-other")
    cog = next(maps.glob("*_class.tif"))
    with viewing(maps, other) as url:
        status, headers, body = get(f"{url}{cog.name}", Range="bytes=100-4195")
        assert status == 206 and body == cog.read_bytes()[100:4196]
        assert headers["content-range"] == f"bytes 100-4195/{cog.stat().st_size}"
        status, _, body = get(f"{url}compare/{cog.name.replace('run-view', 'run-other')}")
        assert status == 200 and body[:4] == b"II*\x00"
        status, _, page = get(url)  # the root redirects to the page, comparing the two
        assert status == 200 and b"statemap-viewer.js" in page
        assert get(f"{url}favicon.ico")[0] == 204


def test_a_maps_folder_without_a_viewer_gets_one(maps, tmp_path):
    copy = tmp_path / "old-run"
    shutil.copytree(maps, copy, ignore=shutil.ignore_patterns(VIEWER))
    assert local_maps(str(copy / "run.json")) == copy
    assert (copy / VIEWER / CONFIG).is_file() and (copy / VIEWER / "index.html").is_file()
    with pytest.raises(ClusterError, match=r"no <name>_class.tif in .*empty"):
        (tmp_path / "empty").mkdir()
        local_maps(str(tmp_path / "empty"))


@pytest.mark.s3
def test_maps_on_s3_are_synced_then_served(s3_server, maps, tmp_path):
    prefix = s3_server.upload_tree(maps, "maps/run-view")
    cache = tmp_path / "cache"
    folder = local_maps(prefix, cache)
    assert folder == cache / s3_server.bucket / "maps" / "run-view"
    files = sorted(p.relative_to(maps) for p in maps.rglob("*") if p.is_file())
    assert sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()) == files
    assert all(filecmp.cmp(maps / f, folder / f, shallow=False) for f in files)
    stamps = {f: (folder / f).stat().st_mtime_ns for f in files}
    local_maps(prefix, cache)  # nothing changed: nothing fetched again
    assert {f: (folder / f).stat().st_mtime_ns for f in files} == stamps
    with pytest.raises(ClusterError, match="nothing under s3://"):
        local_maps(s3_server.uri("no/such/run"), cache)


@pytest.mark.slow
def test_the_shipped_scripts_are_what_the_lock_file_builds(tmp_path):
    """``npm ci`` from package-lock.json and the build give the shipped bytes again."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("no npm/node on this machine: apt-get install npm")
    work = tmp_path / "web"
    shutil.copytree(WEB, work, ignore=shutil.ignore_patterns("node_modules"))
    npm = ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"]
    subprocess.run(npm, cwd=work, check=True, timeout=600)
    subprocess.run(["node", "build.mjs", str(tmp_path / "out")], cwd=work, check=True, timeout=120)
    built = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert built == sorted(p.name for p in STATIC.iterdir() if p.name != "index.html")
    for name in built:
        assert filecmp.cmp(tmp_path / "out" / name, STATIC / name, shallow=False), name
