"""A run's record: its state, timing and outputs, beside its maps.

Written by the job itself (``run.json`` in ``<maps>/<run id>/``), replaced
whole at each change, so it lives as long as the outputs do and
``statemap runs`` can list past runs without the Ray cluster that ran them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cluster.storage import objstore
from cluster.storage.redact import redact
from jobs.errors import ConfigError

RECORD = "run.json"


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    region: str
    period: str  # Period.label
    state: str  # running, succeeded, failed or stopped
    started: str
    store: str
    maps: str
    checkpoint_sha256: str
    version: str
    submission_id: str = ""
    finished: str = ""
    tiles_done: int = 0
    tiles_skipped: int = 0
    tiles_failed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # per stage: predict, compile
    outputs: list[str] = field(default_factory=list)
    error: str = ""
    # Imagery requests retried, of them throttled (429/503), and times readers slowed down.
    object_storage: dict[str, int] = field(default_factory=dict)

    def finish(self, state: str, **changes: Any) -> RunRecord:
        return replace(self, state=state, finished=now_utc(), **changes)

    @property
    def uri(self) -> str:
        return record_uri(self.maps)

    def save(self) -> None:
        body = redact(json.dumps(asdict(self), indent=2, sort_keys=True)) + "\n"
        objstore.write_bytes_atomic(self.uri, body.encode())

    def line(self) -> str:
        took = sum(self.seconds.values())
        when = f"{self.started} .. {self.finished or '(running)'}"
        tiles = f"{self.tiles_done} done, {self.tiles_skipped} resumed, {self.tiles_failed} failed"
        return f"{self.run_id}  {self.state:<9}  {when}  {took:,.0f} s  tiles {tiles}  {self.maps}"


def record_uri(maps: str) -> str:
    return f"{maps.rstrip('/')}/{RECORD}"


def load_record(uri: str) -> RunRecord | None:
    data = objstore.read_bytes(uri)
    if data is None:
        return None
    try:
        doc = json.loads(data)
        return RunRecord(**doc)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{uri} is not a statemap run record ({exc}): remove it") from exc


def iter_records(maps_root: str) -> Iterator[RunRecord]:
    """The records of every run under a region's ``output.maps``."""
    for uri in objstore.iter_under(maps_root, f"/{RECORD}"):
        record = load_record(uri)
        if record is not None:
            yield record
