"""``python -m jobs.run --config jobs/regions/<region>.yaml``: one region, one
period, end to end: predict into a Zarr store, compile it into COGs with a STAC
collection and a quicklook, publish them. What ``ray job submit`` and the
schedule run.

The run id is region + period + checkpoint, so the store and the maps folder
of a run are the same however often it is submitted: a resubmission (after a
failure, a ``ray job stop`` or a lost node) resumes the tiles not yet done, and
a run that already succeeded is not redone.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

import yaml

from cluster.predict.driver import VERSION, RunSpec, run_predict
from cluster.predict.setup import checkpoint_bytes
from cluster.storage import objstore
from cluster.storage.gdalenv import configure_gdal
from cluster.storage.redact import redact
from jobs.compile import RunLinks, compile_to
from jobs.config import RegionConfig, load_region_config, resolve_uri
from jobs.errors import guarded
from jobs.period import Period
from jobs.runrecord import RunRecord, load_record, now_utc, record_uri


@dataclass(frozen=True)
class RegionRun:
    """A regional run, resolved: everything but the work."""

    config: RegionConfig
    path: Path
    period: Period
    spec: RunSpec  # run id and store set
    maps: str  # <output.maps>/<run id>
    checkpoint_sha256: str

    @property
    def run_id(self) -> str:
        return self.spec.run_id


def run_id_for(name: str, period: Period, checkpoint_sha256: str) -> str:
    return f"{name}-{period.label}-{checkpoint_sha256[:12]}"


def prepare(
    path: str | Path,
    *,
    period: Period | None = None,
    scheduled: bool = False,
    schedules: Path | None = None,
    overrides: Sequence[str] = (),
) -> RegionRun:
    """Validate the config and derive the run's identity; reads only the checkpoint."""
    path = Path(path)
    config = load_region_config(path, overrides)
    config.apply_storage()
    configure_gdal()
    if scheduled:
        from jobs.schedule import scheduled_period

        period = scheduled_period(schedules or default_schedules(path), path)
    period = period or config.period.resolved()
    base = config.root(path)
    spec = config.run_spec(base, store="unknown until the run id", period=period)
    sha = hashlib.sha256(checkpoint_bytes(spec.setup.checkpoint)).hexdigest()
    run_id = run_id_for(config.name, period, sha)
    store = f"{output_root(config.output.stores, base)}/{run_id}.zarr"
    spec = replace(spec, setup=replace(spec.setup, store=store), run_id=run_id)
    maps = f"{output_root(config.output.maps, base)}/{run_id}"
    return RegionRun(config, path, period, spec, maps, sha)


def default_schedules(config: Path) -> Path:
    """jobs/regions/<region>.yaml -> jobs/schedules.yaml."""
    return config.resolve().parent.parent / "schedules.yaml"


def output_root(location: str, base: str | Path) -> str:
    """An ``output`` folder or prefix, without a trailing slash; relative paths from
    the config's folder, like every other path in it."""
    return resolve_uri(location, base).rstrip("/")


def execute(run: RegionRun, *, progress: bool = True, submission_id: str = "") -> int:
    """Predict, compile, publish; keeps the run record current. Exit code 0 when
    the maps are published, 1 when tiles failed (a rerun resumes)."""
    setup = run.spec.setup
    previous = load_record(record_uri(run.maps))
    if previous is not None and previous.state == "succeeded":
        print(f"run {run.run_id} already succeeded ({previous.finished}); maps at {run.maps}")
        return 0
    record = RunRecord(
        run_id=run.run_id,
        region=run.config.name,
        period=run.period.label,
        state="running",
        started=now_utc(),
        store=setup.store,
        maps=run.maps,
        checkpoint_sha256=run.checkpoint_sha256,
        version=VERSION,
        submission_id=submission_id,
    )
    record.save()
    print(f"run {run.run_id}: region {run.config.name}, period {run.period.label}")
    seconds: dict[str, float] = {}
    try:
        start = time.perf_counter()
        summary = run_predict(run.spec, progress=progress)
        seconds["predict"] = round(time.perf_counter() - start, 1)
        for line in summary.lines():
            print(line)
        tiles = {
            "tiles_done": summary.done,
            "tiles_skipped": summary.skipped,
            "tiles_failed": len(summary.failed),
            "object_storage": {
                "retries": summary.retries,
                "throttled": summary.throttled,
                "slowed": summary.slowed,
            },
        }
        if summary.failed:
            error = f"{len(summary.failed)} tiles failed; submit the run again to redo them"
            record.finish("failed", error=error, seconds=seconds, **tiles).save()
            print(f"run {run.run_id} failed: {error}")
            return 1
        start = time.perf_counter()
        config_uri = _publish_config(run)
        links = RunLinks(setup.checkpoint, config_uri, setup.start, setup.end)
        out = run.config.output
        outputs = compile_to(setup.store, run.maps, links, out.compression, out.max_part_px)
        seconds["compile"] = round(time.perf_counter() - start, 1)
    except BaseException as exc:
        state = "stopped" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed"
        record.finish(state, error=f"{type(exc).__name__}: {exc}", seconds=seconds).save()
        raise
    record.finish("succeeded", outputs=[*outputs, config_uri], seconds=seconds, **tiles).save()
    for uri in outputs:
        print(uri)
    print(f"run {run.run_id} succeeded: maps at {run.maps}")
    return 0


def _publish_config(run: RegionRun) -> str:
    """The config as run (period resolved), beside the maps, for the catalog's link:
    the file in the job's working dir does not outlive the job. Holds no credential:
    configs cannot name one."""
    doc = run.config.model_dump(mode="json", exclude_none=True)
    doc["period"] = {"start": run.period.start_iso, "end": run.period.end_iso}
    uri = f"{run.maps}/config.yaml"
    text = redact(yaml.safe_dump(doc, sort_keys=False))  # a catalog URL's token, say
    objstore.write_bytes_atomic(uri, text.encode())
    return uri


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """``ray job stop`` sends SIGTERM: unwind, so the done record is flushed and
    the run record says stopped; the next submission resumes from there."""
    raise SystemExit(128 + signum)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="region config (YAML)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--period", type=Period.parse, help="imagery period START/END, replacing the config's"
    )
    when.add_argument(
        "--scheduled",
        action="store_true",
        help="the period of the schedule's latest firing (jobs/schedules.yaml)",
    )
    parser.add_argument("--schedules", type=Path, help="schedules file for --scheduled")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field, e.g. --set output.maps=/tmp/maps (repeatable)",
    )
    parser.add_argument("--submission-id", default="", help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    region_run = prepare(
        args.config,
        period=args.period,
        scheduled=args.scheduled,
        schedules=args.schedules,
        overrides=args.overrides,
    )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    return execute(region_run, progress=not args.quiet, submission_id=args.submission_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.run", description=__doc__)
    add_arguments(parser)
    return guarded(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
