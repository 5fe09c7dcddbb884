"""A regional run submitted twice through the real `ray job submit`, the first
stopped with `ray job stop` midway: the second resumes the same run and its
outputs equal an uninterrupted run's."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.predict.store import TileStore
from cluster.tiles.grid import count_tiles
from cluster.tiles.region import load_region
from jobs.period import Period
from jobs.run import prepare
from jobs.runrecord import load_record, record_uri
from tests.jobs.conftest import BIN, client_env
from tests.jobs.regiondata import PERIOD, REGIONS, tiny_data, with_overrides

pytestmark = pytest.mark.slow


def _ray(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [str(BIN / "ray"), "job", *args],
        env=client_env(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert not check or run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run


def _submit(address: str, env: dict[str, str], sid: str, config: Path, *flags: str) -> None:
    entry = [sys.executable, "-m", "jobs.run", "--config", str(config), "--period", PERIOD]
    _ray(env, "submit", "--address", address, "--submission-id", sid, *flags, "--", *entry)


def test_resubmission_after_ray_job_stop_resumes(head_node, tmp_path):
    address, env = head_node
    source = next(p for p in REGIONS if p.stem == "sample")
    overrides = tiny_data(source, tmp_path / "data", size=384)
    overrides += ["grid.tile_size=40", "grid.halo=24", "run.flush_seconds=0", "run.batch_size=1"]
    config = with_overrides(source, overrides, tmp_path / "run.yaml")
    reference = with_overrides(
        source,
        [*overrides, f"output.stores={tmp_path / 'ref'}", f"output.maps={tmp_path / 'ref'}"],
        tmp_path / "reference.yaml",
    )
    run = prepare(config, period=Period.parse(PERIOD))
    setup = run.spec.setup
    total = count_tiles(setup.grid, load_region(setup.region, setup.grid.crs))

    _submit(address, env, "first", config, "--no-wait")
    deadline = time.monotonic() + 300
    done = 0
    while done < 5:
        assert time.monotonic() < deadline, _ray(env, "logs", "--address", address, "first").stdout
        time.sleep(0.2)
        try:
            done = len(TileStore.open(setup.store).done_tiles())
        except Exception:  # not created yet
            done = 0
    _ray(env, "stop", "--address", address, "first")
    status = _ray(env, "status", "--address", address, "first").stdout
    assert "was stopped" in status, status
    at_stop = len(TileStore.open(setup.store).done_tiles())
    assert 0 < at_stop < total, f"stopped after {at_stop} of {total} tiles: not midway"
    stopped = load_record(record_uri(run.maps))
    assert stopped is not None and stopped.state == "stopped", stopped  # SIGTERM unwound

    _submit(address, env, "second", config)
    record = load_record(record_uri(run.maps))
    assert record.run_id == run.run_id and record.state == "succeeded"
    assert record.tiles_skipped >= at_stop  # resumed: what was done stays done
    assert record.tiles_done + record.tiles_skipped == total
    assert record.submission_id == ""  # submitted by hand, not by the schedule

    _submit(address, env, "uninterrupted", reference)
    ours, theirs = tmp_path / "data" / "maps" / run.run_id, tmp_path / "ref" / run.run_id
    for name in (f"{run.run_id}_class.tif", f"{run.run_id}_confidence.tif", "quicklook.png"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
