"""Schedules: when a region is due, which period it maps, and the tick through
a real `ray start --head` cluster's job submission API."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.errors import ConfigError
from jobs.period import Period
from jobs.runrecord import iter_records
from jobs.schedule import DEFAULT_SCHEDULES, load_schedules, scheduled_period
from tests.jobs.conftest import BIN, client_env
from tests.jobs.regiondata import PERIOD, REGIONS, tiny_data, with_overrides

UTC = dt.UTC


def test_firings_and_periods_of_the_shipped_schedules():
    schedules = load_schedules(DEFAULT_SCHEDULES)
    s2 = next(e for e in schedules.entries if e.region == "rlp-s2-10m")
    now = dt.datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
    fired = s2.last_firing(now)
    assert fired == dt.datetime(2026, 9, 1, 3, 0, tzinfo=UTC)
    assert s2.period_of(fired) == Period(dt.date(2026, 6, 1), dt.date(2026, 8, 31))
    assert s2.submission_id(s2.period_of(fired)) == "statemap-rlp-s2-10m-2026-06-01_2026-08-31"
    assert s2.next_firing(now) == dt.datetime(2027, 9, 1, 3, 0, tzinfo=UTC)
    # A firing at exactly now counts.
    assert s2.last_firing(dt.datetime(2027, 9, 1, 3, 0, tzinfo=UTC)).year == 2027


def test_scheduled_period_is_the_latest_firings():
    config = next(p for p in REGIONS if p.stem == "rlp-ortho-1m")
    now = dt.datetime(2027, 3, 2, tzinfo=UTC)
    period = scheduled_period(DEFAULT_SCHEDULES, config, now)
    assert period == Period(dt.date(2025, 3, 1), dt.date(2027, 2, 28))
    sample = next(p for p in REGIONS if p.stem == "sample")
    with pytest.raises(ConfigError, match="has no entry in"):
        scheduled_period(DEFAULT_SCHEDULES, sample, now)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"cron": "0 3 31 2 * *", "period_months": 3}, "not a 5-field cron expression"),
        ({"cron": "0 3 1 9 *", "period_months": 0}, "schedules.0.period_months"),
        ({"cron": "0 3 1 9 *", "period_months": 3, "every": 2}, "schedules.0.every: unknown"),
    ],
)
def test_bad_schedule_entries_are_named(tmp_path, entry, message):
    (tmp_path / "regions").mkdir()
    sample = next(p for p in REGIONS if p.stem == "sample")
    (tmp_path / "regions" / "sample.yaml").write_text(sample.read_text())
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump({"schedules": [{"config": "regions/sample.yaml", **entry}]}))
    with pytest.raises(ConfigError, match=message):
        load_schedules(path)


def test_a_missing_config_is_named(tmp_path):
    path = tmp_path / "schedules.yaml"
    entry = {"config": "regions/nowhere.yaml", "cron": "0 3 1 9 *", "period_months": 3}
    path.write_text(yaml.safe_dump({"schedules": [entry]}))
    with pytest.raises(ConfigError, match=r"schedules.0.config: regions/nowhere.yaml does not"):
        load_schedules(path)


def _tick(schedules: Path, address: str, env: dict[str, str], now: str, *extra: str) -> str:
    where = ["--schedules", str(schedules), "--address", address, "--now", now]
    run = subprocess.run(
        [str(BIN / "statemap"), "schedule", "tick", *where, "--python", sys.executable, *extra],
        env=client_env(env),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


@pytest.mark.slow
def test_tick_submits_what_is_due_once(head_node, tmp_path):
    """Two regions due at the clock, one not: two jobs run through the real job
    submission API and publish their maps; a second tick submits nothing."""
    address, env = head_node
    configs = tmp_path / "regions"
    configs.mkdir()
    entries = []
    for name, cron in (("sample", "0 3 1 9 *"), ("rlp-s2-10m", "0 3 1 9 *")):
        source = next(p for p in REGIONS if p.stem == name)
        overrides = tiny_data(source, tmp_path / name, size=96)
        overrides += ["grid.tile_size=64", "grid.halo=24", "run.flush_seconds=0"]
        with_overrides(source, overrides, configs / f"{name}.yaml")
        entries.append({"config": f"regions/{name}.yaml", "cron": cron, "period_months": 4})
    ortho = next(p for p in REGIONS if p.stem == "rlp-ortho-1m")
    (configs / "rlp-ortho-1m.yaml").write_text(ortho.read_text())  # due in March only
    entries.append({"config": "regions/rlp-ortho-1m.yaml", "cron": "0 3 1 3 *", "period_months": 4})
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text(yaml.safe_dump({"starting_deadline_hours": 6, "schedules": entries}))

    out = _tick(schedules, address, env, "2023-09-01T03:05:00Z", "--wait", "600")
    period = PERIOD.replace("/", "_")
    for name in ("sample", "rlp-s2-10m"):
        assert f"{name}: submitted [SUCCEEDED] statemap-{name}-{period}" in out, out
        (record,) = iter_records(str(tmp_path / name / "maps"))
        assert record.state == "succeeded" and record.period == period
        assert record.submission_id == f"statemap-{name}-{period}"
        assert any(uri.endswith("_class.tif") for uri in record.outputs)
        assert all(Path(uri).is_file() for uri in record.outputs)
    assert "rlp-ortho-1m: not due" in out

    again = _tick(schedules, address, env, "2023-09-01T05:00:00Z")
    assert "submitted" not in again
    for name in ("sample", "rlp-s2-10m"):
        assert f"{name}: exists [SUCCEEDED] statemap-{name}-{period}" in again
    listed = subprocess.run(
        [str(BIN / "ray"), "job", "list", "--address", address],
        env=client_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.stdout.count("submission_id='statemap-") == 2, listed.stdout[-2000:]

    both = [str(configs / f"{n}.yaml") for n in ("sample", "rlp-s2-10m")]
    runs = subprocess.run(
        [str(BIN / "statemap"), "runs", *both, "--address", address],
        env=client_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert runs.returncode == 0, runs.stderr[-2000:]
    assert "2 run(s) recorded" in runs.stdout
    assert runs.stdout.count(" succeeded ") == 2
    assert f"statemap-sample-{period}  SUCCEEDED" in runs.stdout

    # A later firing's period is a new run.
    late = _tick(schedules, address, env, "2023-09-02T05:00:00Z")
    assert "not due" in late and "submitted" not in late


def test_tick_names_an_unreachable_cluster(capsys):
    from jobs.cli import main

    assert main(["schedule", "tick", "--address", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach Ray's job API at http://127.0.0.1:9" in err and "--address" in err
