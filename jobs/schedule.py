"""``statemap schedule tick``: submit the regional runs that are due.

What a cron job (or a Kubernetes CronJob) runs every few minutes. Each entry of
``jobs/schedules.yaml`` names a region config, a cron expression (UTC) and how
many whole calendar months before a firing its imagery period covers. A
firing is due for ``starting_deadline_hours`` after it (as a Kubernetes
CronJob's startingDeadlineSeconds); a due run is submitted through Ray's job
submission API with the submission id ``statemap-<region>-<period>``, which
Ray keeps unique, so however often the tick runs a period is submitted once.
The tick holds no state of its own: the Ray cluster's job table is the state.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from croniter import croniter
from pydantic import Field, ValidationError, field_validator

from cluster.errors import ClusterError
from jobs.config import _describe, _Strict, load_region_config, read_yaml
from jobs.errors import ConfigError, guarded
from jobs.period import Period

DEFAULT_SCHEDULES = Path(__file__).resolve().parent / "schedules.yaml"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class ScheduleEntry(_Strict):
    config: str  # region config, relative to the schedules file's folder
    cron: str  # minute hour day-of-month month day-of-week, UTC
    period_months: Annotated[int, Field(ge=1, le=36)]

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        if len(v.split()) != 5 or not croniter.is_valid(v):
            raise ValueError(f"{v!r} is not a 5-field cron expression (e.g. '0 3 1 9 *')")
        return v


class SchedulesFile(_Strict):
    starting_deadline_hours: Annotated[float, Field(gt=0)] = 24.0
    schedules: Annotated[list[ScheduleEntry], Field(min_length=1)]


@dataclass(frozen=True)
class Scheduled:
    """One schedule entry, its config found and validated."""

    region: str
    config: Path
    cron: str
    period_months: int

    def last_firing(self, now: dt.datetime) -> dt.datetime:
        """The latest firing at or before ``now``."""
        base = now + dt.timedelta(seconds=1)
        return croniter(self.cron, base).get_prev(dt.datetime)

    def next_firing(self, now: dt.datetime) -> dt.datetime:
        return croniter(self.cron, now).get_next(dt.datetime)

    def period_of(self, firing: dt.datetime) -> Period:
        return Period.months_before(firing, self.period_months)

    def submission_id(self, period: Period) -> str:
        return f"statemap-{self.region}-{period.label}"


@dataclass(frozen=True)
class Schedules:
    path: Path
    deadline: dt.timedelta
    entries: tuple[Scheduled, ...]


def load_schedules(path: str | Path = DEFAULT_SCHEDULES) -> Schedules:
    path = Path(path)
    try:
        doc = SchedulesFile.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path))) from exc
    entries = []
    for i, entry in enumerate(doc.schedules):
        config = (path.resolve().parent / entry.config).resolve()
        if not config.is_file():
            raise ConfigError(
                f"{path}: schedules.{i}.config: {entry.config} does not exist "
                f"(paths are relative to {path.resolve().parent})"
            )
        name = load_region_config(config).name
        entries.append(Scheduled(name, config, entry.cron, entry.period_months))
    names = [e.region for e in entries]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{path}: region(s) {twice} scheduled twice: keep one entry each")
    hours = dt.timedelta(hours=doc.starting_deadline_hours)
    return Schedules(path, hours, tuple(entries))


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def scheduled_period(schedules: Path, config: Path, now: dt.datetime | None = None) -> Period:
    """The period of ``config``'s latest firing: what a RayCronJob's run maps."""
    loaded = load_schedules(schedules)
    for entry in loaded.entries:
        if entry.config == config.resolve():
            return entry.period_of(entry.last_firing(now or utc_now()))
    raise ConfigError(f"{config} has no entry in {schedules}: add one, or give --period")


@dataclass(frozen=True)
class TickLine:
    region: str
    period: Period
    submission_id: str
    action: str  # "submitted", "exists", "not due", "submit failed"
    status: str = ""  # the Ray job's status, when there is a job
    detail: str = ""

    def text(self) -> str:
        status = f" [{self.status}]" if self.status else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.region}: {self.action}{status} {self.submission_id}{detail}"


def tick(
    schedules: Schedules,
    client: Any,  # ray.job_submission.JobSubmissionClient
    now: dt.datetime,
    *,
    python: str = "python",
    working_dir: Path | None = None,
) -> list[TickLine]:
    """Submit what is due; report every entry's latest period and its job."""
    jobs = {j.submission_id: j for j in client.list_jobs() if j.submission_id}
    lines = []
    for entry in schedules.entries:
        fired = entry.last_firing(now)
        period = entry.period_of(fired)
        sid = entry.submission_id(period)
        job = jobs.get(sid)
        if job is not None:
            lines.append(TickLine(entry.region, period, sid, "exists", str(job.status.value)))
            continue
        if now - fired > schedules.deadline:
            nxt = entry.next_firing(now).strftime("%Y-%m-%dT%H:%MZ")
            lines.append(TickLine(entry.region, period, sid, "not due", detail=f"next {nxt}"))
            continue
        config = entry.config
        runtime_env: dict[str, Any] = {}
        if working_dir is not None:
            config = config.relative_to(working_dir.resolve())
            runtime_env["working_dir"] = str(working_dir)
        args = ["--config", str(config), "--period", period.argument(), "--submission-id", sid]
        entrypoint = shlex.join([python, "-m", "jobs.run", *args, "--quiet"])
        try:
            client.submit_job(
                entrypoint=entrypoint,
                submission_id=sid,
                runtime_env=runtime_env or None,
                metadata={"statemap_region": entry.region, "statemap_period": period.label},
            )
        except RuntimeError as exc:  # the job client's error for a refused submission
            lines.append(TickLine(entry.region, period, sid, "submit failed", detail=str(exc)))
            continue
        lines.append(TickLine(entry.region, period, sid, "submitted", "PENDING"))
    return lines


def wait_for(client: Any, lines: Sequence[TickLine], timeout_s: float) -> list[TickLine]:
    """Follow the jobs of ``lines`` until they end or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    out = list(lines)
    while True:
        out = [_refresh(client, line) for line in out]
        if all(not ln.status or ln.status in TERMINAL for ln in out):
            return out
        if time.monotonic() > deadline:
            return out
        time.sleep(2.0)


def _refresh(client: Any, line: TickLine) -> TickLine:
    if not line.status:
        return line
    status = str(client.get_job_status(line.submission_id).value)
    return TickLine(line.region, line.period, line.submission_id, line.action, status, line.detail)


def job_client(address: str | None) -> Any:
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except (ConnectionError, ValueError) as exc:
        where = address or "RAY_ADDRESS / a local cluster"
        raise ClusterError(
            f"cannot reach Ray's job API at {where}: {exc}; give --address "
            "http://<head>:8265 (and RAY_AUTH_MODE=token with the token where auth is on)"
        ) from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="schedule_command", required=True)
    t = sub.add_parser("tick", help="submit the regional runs that are due", description=__doc__)
    t.add_argument("--schedules", type=Path, default=DEFAULT_SCHEDULES)
    t.add_argument(
        "--address", help="Ray dashboard address, e.g. http://head:8265 (default: RAY_ADDRESS)"
    )
    t.add_argument("--now", type=_instant, help="the clock, ISO (default: now, UTC)")
    t.add_argument("--python", default="python", help="the cluster's Python for jobs.run")
    t.add_argument("--working-dir", type=Path, help="upload this folder as the jobs' working dir")
    t.add_argument("--wait", type=float, default=0.0, help="follow the jobs for up to S seconds")


def _instant(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def run_tick(args: argparse.Namespace) -> int:
    schedules = load_schedules(args.schedules)
    client = job_client(args.address)
    now = args.now or utc_now()
    print(f"tick at {now:%Y-%m-%dT%H:%M:%SZ}: {len(schedules.entries)} scheduled region(s)")
    lines = tick(schedules, client, now, python=args.python, working_dir=args.working_dir)
    if args.wait > 0:
        lines = wait_for(client, lines, args.wait)
    for line in lines:
        print(line.text())
    bad = [ln for ln in lines if ln.action == "submit failed" or ln.status in {"FAILED"}]
    return 1 if bad else 0


def run(args: argparse.Namespace) -> int:
    return {"tick": run_tick}[args.schedule_command](args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.schedule", description=__doc__)
    add_arguments(parser)
    return guarded(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
