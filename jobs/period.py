"""The imagery period of a run: which scenes it maps, and part of its identity.

A regional run is one region over one period (e.g. a summer's Sentinel-2
scenes). The period is in the run id and the schedule's submission id, so
the same period is computed once however often it is submitted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from jobs.errors import ConfigError


@dataclass(frozen=True)
class Period:
    """Whole days, both ends inclusive; ``None`` is open-ended."""

    start: dt.date | None
    end: dt.date | None

    def __post_init__(self) -> None:
        if self.start and self.end and self.start > self.end:
            raise ConfigError(f"period {self.start}..{self.end} ends before it starts")

    @property
    def label(self) -> str:
        """Path- and id-safe: ``2026-06-01_2026-08-31``; ``all`` when unbounded."""
        if self.start is None and self.end is None:
            return "all"
        return f"{self.start or 'open'}_{self.end or 'open'}"

    @property
    def start_iso(self) -> str | None:
        return self.start.isoformat() if self.start else None

    @property
    def end_iso(self) -> str | None:
        return self.end.isoformat() if self.end else None

    def argument(self) -> str:
        """The form ``--period`` takes."""
        return f"{self.start or ''}/{self.end or ''}"

    @classmethod
    def parse(cls, text: str) -> Period:
        """``START/END`` (ISO dates, either may be empty)."""
        if text.count("/") != 1:
            raise ConfigError(f"period {text!r}: write START/END, e.g. 2026-06-01/2026-08-31")
        start, end = text.split("/")
        return cls(_date(start, "period start"), _date(end, "period end"))

    @classmethod
    def of(cls, start: str | None, end: str | None) -> Period:
        return cls(_date(start, "period.start"), _date(end, "period.end"))

    @classmethod
    def months_before(cls, when: dt.datetime, months: int) -> Period:
        """The ``months`` whole calendar months before the month of ``when``: a
        schedule firing on 1 September with 3 months maps June to August."""
        if months < 1:
            raise ConfigError(f"period_months {months} must be at least 1")
        first_of_month = when.date().replace(day=1)
        end = first_of_month - dt.timedelta(days=1)
        index = first_of_month.year * 12 + first_of_month.month - 1 - months
        return cls(dt.date(index // 12, index % 12 + 1, 1), end)


def _date(text: str | None, field: str) -> dt.date | None:
    if text is None or str(text).strip() == "":
        return None
    value = str(text).strip()
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise ConfigError(f"{field} {value!r} is not an ISO date (YYYY-MM-DD)") from None
