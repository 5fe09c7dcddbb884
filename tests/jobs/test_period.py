import datetime as dt

import pytest

from jobs.errors import ConfigError
from jobs.period import Period


def test_months_before_a_firing():
    fired = dt.datetime(2026, 9, 1, 3, 0, tzinfo=dt.UTC)
    assert Period.months_before(fired, 3) == Period(dt.date(2026, 6, 1), dt.date(2026, 8, 31))
    jan = dt.datetime(2027, 1, 15, tzinfo=dt.UTC)
    assert Period.months_before(jan, 1) == Period(dt.date(2026, 12, 1), dt.date(2026, 12, 31))
    march = dt.datetime(2027, 3, 1, 3, tzinfo=dt.UTC)
    assert Period.months_before(march, 24) == Period(dt.date(2025, 3, 1), dt.date(2027, 2, 28))


def test_label_and_argument_round_trip():
    p = Period.parse("2026-06-01/2026-08-31")
    assert p.label == "2026-06-01_2026-08-31"
    assert Period.parse(p.argument()) == p
    assert Period.parse("/").label == "all"
    assert Period.parse("2026-06-01/").label == "2026-06-01_open"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-06-01", "write START/END"),
        ("2026-13-01/2026-12-31", "period start '2026-13-01' is not an ISO date"),
        ("2026-09-01/2026-08-31", "ends before it starts"),
    ],
)
def test_bad_periods_are_named(text, message):
    with pytest.raises(ConfigError, match=message):
        Period.parse(text)
