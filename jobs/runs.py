"""``statemap runs``: past regional runs, their state, timing and outputs.

Read from the run records each run keeps beside its maps, so the list
outlives the Ray cluster; with ``--address`` the cluster's own job table
(status of the scheduled submissions) is shown as well.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cluster.errors import ClusterError
from jobs.config import load_region_config
from jobs.run import output_root
from jobs.runrecord import RunRecord, iter_records

REGIONS = Path(__file__).resolve().parent / "regions"


def records(configs: list[Path]) -> tuple[list[RunRecord], list[str]]:
    """The runs recorded under each config's maps, and a line per location that
    could not be read (one unreachable bucket does not hide the others)."""
    out: list[RunRecord] = []
    problems: list[str] = []
    for path in configs:
        config = load_region_config(path)
        config.apply_storage()
        maps = output_root(config.output.maps, config.root(path))
        try:
            out.extend(iter_records(maps))
        except ClusterError as exc:
            problems.append(f"{config.name}: {exc}")
    return sorted(out, key=lambda r: (r.started, r.run_id)), problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "configs", type=Path, nargs="*", help="region configs (default: jobs/regions/*.yaml)"
    )
    parser.add_argument("--address", help="also list the Ray cluster's statemap jobs")
    parser.add_argument("--outputs", action="store_true", help="list each run's outputs too")


def run(args: argparse.Namespace) -> int:
    configs = args.configs or sorted(REGIONS.glob("*.yaml"))
    found, problems = records(configs)
    for line in problems:
        print(line)
    print(f"{len(found)} run(s) recorded")
    for record in found:
        print(record.line())
        if record.error:
            print(f"    {record.error}")
        if args.outputs:
            for uri in record.outputs:
                print(f"    {uri}")
    if args.address:
        from jobs.schedule import job_client

        jobs = [j for j in job_client(args.address).list_jobs() if j.submission_id]
        statemap = [j for j in jobs if j.submission_id.startswith("statemap-")]
        print(f"{len(statemap)} statemap job(s) on {args.address}")
        for job in sorted(statemap, key=lambda j: j.start_time or 0):
            print(f"{job.submission_id}  {job.status.value}")
    return 0
