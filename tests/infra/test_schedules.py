"""The RayCronJobs and jobs/schedules.yaml say the same thing.

Both the operator (RayCronJob.spec.schedule) and the job (``--scheduled`` takes
its period from schedules.yaml's latest firing) read a schedule; if the two
disagree, a job fires on one date and maps the period of another. So: one
RayCronJob per schedules.yaml entry and none more, each with that entry's cron
in UTC, each running that entry's config with ``--scheduled``, and every config
an entry point names exists in the repository (and so in the image).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.manifests import ROOT, Manifest, entrypoint_args, job_spec, of_kind

SCHEDULES = ROOT / "jobs" / "schedules.yaml"
UTC = {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Zulu", "Etc/Zulu"}

# The format as jobs/schedules.yaml was specified (issue 5): the agreement check
# is exercised on this copy too, so it is known to pass and to fail as it should
# whatever state the real file is in.
EXAMPLE = """\
# When each region is mapped (UTC). ...
starting_deadline_hours: 24
schedules:
  - config: regions/rlp-s2-10m.yaml     # relative to this file's folder (jobs/)
    cron: "0 3 1 9 *"                   # 1 September 03:00: the summer's scenes are in
    period_months: 3                    # the 3 whole calendar months before the firing: Jun-Aug
  - config: regions/rlp-ortho-1m.yaml
    cron: "0 3 1 3 *"                   # 1 March: last year's flights
    period_months: 12
"""


def _parser() -> argparse.ArgumentParser:
    """jobs.run's own argument parser: the entry points must be what it takes."""
    from jobs.run import add_arguments

    parser = argparse.ArgumentParser(prog="python -m jobs.run", exit_on_error=False)
    add_arguments(parser)
    return parser


def _parse(m: Manifest) -> argparse.Namespace:
    try:
        return _parser().parse_args(entrypoint_args(m))
    except (argparse.ArgumentError, SystemExit) as exc:
        raise AssertionError(f"{m.name}: jobs.run refuses its entrypoint: {exc}") from exc


def region_of(config: str) -> str:
    """regions/rlp-s2-10m.yaml -> rlp-s2-10m."""
    return Path(config).stem


def disagreements(schedules: dict[str, Any], cronjobs: list[Manifest]) -> list[str]:
    """Every way the RayCronJobs and a schedules document differ, each naming both sides."""
    problems = []
    entries = {region_of(e["config"]): e for e in schedules["schedules"]}
    seen = set()
    for m in cronjobs:
        label = m.doc["metadata"].get("labels", {}).get("statemap.io/region")
        args = _parse(m)
        config = Path(args.config).as_posix()
        region = region_of(config)
        seen.add(region)
        if label != region:
            problems.append(f"{m.name}: label statemap.io/region={label!r}, runs {config}")
        if not args.scheduled:
            problems.append(f"{m.name}: its entrypoint lacks --scheduled")
        if m.doc["spec"].get("timeZone", "UTC") not in UTC:
            problems.append(f"{m.name}: timeZone {m.doc['spec']['timeZone']!r}; schedules are UTC")
        entry = entries.get(region)
        if entry is None:
            problems.append(f"{m.name}: region {region} has no entry in schedules.yaml")
            continue
        if config != f"jobs/{entry['config']}":
            problems.append(
                f"{m.name}: runs --config {config}, schedules.yaml has {entry['config']}"
            )
        if m.doc["spec"]["schedule"] != entry["cron"]:
            problems.append(
                f"{m.name}: schedule {m.doc['spec']['schedule']!r}, schedules.yaml has "
                f"{entry['cron']!r} for {region}"
            )
    for region in sorted(set(entries) - seen):
        problems.append(f"schedules.yaml schedules {region}, no RayCronJob runs it")
    return problems


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_raycronjobs_agree_with_jobs_schedules_yaml():
    assert SCHEDULES.is_file(), (
        f"{SCHEDULES} is missing: the RayCronJobs have nothing to agree with"
    )
    assert disagreements(_load(SCHEDULES), of_kind("RayCronJob")) == []


def test_agreement_holds_for_the_specified_format(tmp_path):
    path = tmp_path / "schedules.yaml"
    path.write_text(EXAMPLE)
    assert disagreements(_load(path), of_kind("RayCronJob")) == []


def test_agreement_check_names_what_differs(tmp_path):
    doc = yaml.safe_load(EXAMPLE)
    doc["schedules"][0]["cron"] = "0 3 1 10 *"
    doc["schedules"].pop(1)
    doc["schedules"].append({"config": "regions/saarland-s2-10m.yaml", "cron": "0 3 1 9 *"})
    problems = disagreements(doc, of_kind("RayCronJob"))
    assert sorted(problems) == [
        "infra/kuberay/raycronjob-rlp-ortho-1m.yaml#0 RayCronJob/statemap-rlp-ortho-1m: "
        "region rlp-ortho-1m has no entry in schedules.yaml",
        "infra/kuberay/raycronjob-rlp-s2-10m.yaml#0 RayCronJob/statemap-rlp-s2-10m: "
        "schedule '0 3 1 9 *', schedules.yaml has '0 3 1 10 *' for rlp-s2-10m",
        "schedules.yaml schedules saarland-s2-10m, no RayCronJob runs it",
    ]


_RUNS = of_kind("RayJob") + of_kind("RayCronJob")


@pytest.mark.parametrize("m", _RUNS, ids=[m.name for m in _RUNS])
def test_entrypoint_config_exists_and_names_its_region(m):
    args = _parse(m)
    config = ROOT / args.config
    assert config.is_file(), f"{m.name}: --config {args.config} does not exist in the repository"
    region = region_of(str(args.config))
    label = m.doc["metadata"].get("labels", {}).get("statemap.io/region")
    assert label == region, f"{m.name}: label statemap.io/region={label!r}, runs {args.config}"
    name = (_load(config) or {}).get("name", region)
    assert name == region, f"{args.config}: name {name!r} differs from the file's stem {region!r}"
    metadata = job_spec(m).get("metadata", {})
    assert metadata.get("statemap_region") == region, f"{m.name}: Ray job metadata {metadata}"
