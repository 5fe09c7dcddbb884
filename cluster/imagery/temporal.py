"""How a tile's inputs are made over time: compositing and multi-temporal stacks.

Tree-species groups differ over their year more than on one summer day
(beech and larch leaf out late and drop their leaves; spruce and pine stay
the same), and one day's scene carries the haze its quality mask missed. A
:class:`TimeRecipe` says how the items of a period become model input: the
first clear item per pixel (``first``, the mosaic), or the per-pixel
``median``, ``mean`` or a ``percentile`` of all clear observations (at least
``min_clear`` of them, else nodata); optionally over several sub-periods
(spring, summer, autumn), each composited alike and stacked band-wise as
channels ``bands x periods``.

Training chips and a run's tiles are made from the same recipe: the
checkpoint records it, and prediction rebuilds the same stack for the run's
year. Sub-periods are written ``MM-DD`` (relative: in the year the run's
period starts) or ``YYYY-MM-DD`` (absolute); a relative one whose end comes
before its start runs into the next year (a winter).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

from cluster.errors import ClusterError
from cluster.imagery.stacitem import ItemRef

__all__ = [
    "FILLS",
    "METHODS",
    "SubPeriod",
    "TimeRecipe",
    "TimeSettings",
    "items_within",
    "run_recipe",
    "run_year",
]

METHODS = ("first", "median", "mean", "percentile")
FILLS = ("nodata", "neighbour")  # a sub-period without a clear observation at a pixel
Window = tuple[dt.datetime, dt.datetime]  # [start, end) in UTC
TimeSettings = tuple[tuple[str, Any], ...]  # a config's TimeRecipe fields, those it sets


@dataclass(frozen=True)
class SubPeriod:
    """One layer of a stack: a name and its dates, relative (``MM-DD``) or absolute."""

    name: str
    start: str
    end: str

    @property
    def relative(self) -> bool:
        return len(self.start) == 5

    def window(self, year: int | None) -> Window:
        """[start, end) in UTC; a relative period is placed in ``year``."""
        if self.relative and year is None:
            raise ClusterError(
                f"sub-period {self.name!r} ({self.start}..{self.end}) is relative to the run's "
                "year, but the run has no period start: set period.start"
            )
        start = _date(self.start, year, self.name)
        end = _date(self.end, year, self.name)
        if end < start and self.relative:
            end = end.replace(year=end.year + 1)  # e.g. 12-01..02-28: a winter
        if end < start:
            raise ClusterError(f"sub-period {self.name!r} ends ({self.end}) before it starts")
        return start, end + dt.timedelta(days=1)


@dataclass(frozen=True)
class TimeRecipe:
    """How items become input pixels over time; the default is the single-period mosaic."""

    compositing: str = "first"
    percentile: float = 50.0  # for compositing "percentile"
    min_clear: int = 1  # clear observations a composite pixel needs, else nodata
    periods: tuple[SubPeriod, ...] = ()  # empty: one layer, the run's whole period
    fill: str = "nodata"  # a sub-period missing at a pixel: nodata, or the nearest layer's

    def __post_init__(self) -> None:
        if self.compositing not in METHODS:
            raise ClusterError(f"compositing {self.compositing!r}: use one of {list(METHODS)}")
        if self.fill not in FILLS:
            raise ClusterError(f"fill {self.fill!r}: use one of {list(FILLS)}")
        if not 0 <= self.percentile <= 100:
            raise ClusterError(f"percentile {self.percentile!r} must lie in 0..100")
        if self.min_clear < 1:
            raise ClusterError(f"min_clear {self.min_clear!r} must be at least 1")
        names = [p.name for p in self.periods]
        if len(set(names)) != len(names):
            raise ClusterError(f"sub-period names {names} must be distinct")
        for period in self.periods:
            period.window(2000 if period.relative else None)  # dates well formed

    @property
    def layers(self) -> int:
        return max(1, len(self.periods))

    @property
    def names(self) -> tuple[str, ...]:
        """The sub-periods' names as a checkpoint records them (empty: one layer)."""
        return tuple(p.name for p in self.periods)

    def channels(self, bands: Sequence[str]) -> list[str]:
        """Input channel names, layer-major: ``summer:red``."""
        if not self.periods:
            return list(bands)
        return [f"{p.name}:{b}" for p in self.periods for b in bands]

    def describe(self) -> str:
        how = self.compositing
        if how == "percentile":
            how = f"percentile {self.percentile:g}"
        if how != "first":
            how += f" of >= {self.min_clear} clear observation(s)"
        if not self.periods:
            return how
        return how + " over " + ", ".join(f"{p.name} {p.start}..{p.end}" for p in self.periods)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["periods"] = [asdict(p) for p in self.periods]
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> TimeRecipe:
        """From a checkpoint's recipe; absent (older checkpoints): the mosaic."""
        if not doc:
            return cls()
        periods = tuple(SubPeriod(**p) for p in doc.get("periods", ()))
        fields = {k: doc[k] for k in ("compositing", "percentile", "min_clear", "fill") if k in doc}
        return cls(**fields, periods=periods)

    def windows(self, year: int | None) -> list[Window | None]:
        """Each layer's [start, end); None: the whole period the catalog was opened for."""
        if not self.periods:
            return [None]
        return [p.window(year) for p in self.periods]

    def check_within(self, year: int | None, start: str | None, end: str | None) -> None:
        """Refuse sub-periods outside the run's period: the catalog holds no item of them,
        so every pixel of that layer would be missing."""
        first = _date(start[:10], None, "period.start") if start else None
        last = _date(end[:10], None, "period.end") + dt.timedelta(days=1) if end else None
        for period, (a, b) in zip(self.periods, self.windows(year), strict=False):
            if (first and b <= first) or (last and a >= last):
                raise ClusterError(
                    f"sub-period {period.name!r} ({a:%Y-%m-%d}..{b - dt.timedelta(days=1):%Y-%m-%d}"
                    f") lies outside the period {start or '..'}..{end or '..'}: widen the period "
                    "to the whole year the stack needs"
                )


def run_recipe(trained: TimeRecipe, settings: TimeSettings, source: str) -> TimeRecipe:
    """The checkpoint's recipe with a run's settings: ``fill`` is the run's to choose; any
    other setting must restate the checkpoint's, since a model maps only pixels made as
    it learnt them."""
    for key, ours in settings:
        if key != "fill" and getattr(trained, key) != ours:
            raise ClusterError(
                f"checkpoint {source} was trained on inputs made by {trained.describe()!r}; "
                f"this run sets time.{key} = {ours!r}: a model maps only pixels made as it "
                "learnt them. Drop the setting (the run then follows the checkpoint), or "
                "retrain with it"
            )
    return replace(trained, **{k: v for k, v in settings if k == "fill"})


def run_year(start: str | None, end: str | None) -> int | None:
    """The year relative sub-periods are placed in: the period's start's (else end's)."""
    text = start or end
    return int(text[:4]) if text else None


def items_within(items: Sequence[ItemRef], window: Window | None) -> list[ItemRef]:
    """The items acquired in ``window`` (all when None), in their given (mosaic) order."""
    if window is None:
        return list(items)
    a, b = window
    return [i for i in items if i.datetime and a <= _item_time(i.datetime) < b]


@lru_cache(maxsize=65536)
def _item_time(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.replace(tzinfo=moment.tzinfo or dt.UTC)


def _date(text: str, year: int | None, what: str) -> dt.datetime:
    try:
        if len(text) == 5:
            day = dt.date(year or 2000, int(text[:2]), int(text[3:]))
        else:
            day = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ClusterError(
            f"{what}: {text!r} is not a date; write MM-DD (in the run's year) or YYYY-MM-DD"
        ) from exc
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
