"""The send-window opening as PostgreSQL computes it (dispatch/windows.py), against a
reference written with Python's zoneinfo, over many zones, times and windows: daylight
saving changes, half- and quarter-hour offsets, windows over midnight."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from surge.dispatch.windows import opening

#: Zones whose rules have not changed lately (so the server's and Python's time zone data
#: agree), among them the awkward ones.
ZONES = [
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",  # -03:30, daylight saving
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Australia/Adelaide",  # +09:30/+10:30, southern daylight saving
    "Australia/Lord_Howe",  # a half-hour daylight saving shift
    "Pacific/Chatham",  # +12:45/+13:45
    "Pacific/Kiritimati",  # +14
    "Etc/GMT+12",  # -12
]

QUERY = sql.SQL("select {}").format(
    opening(
        sql.Placeholder("at"),
        sql.Placeholder("zone"),
        sql.SQL("%(s)s::time"),
        sql.SQL("%(e)s::time"),
    )
)


def reference(at: datetime, zone: str, start: time, end: time) -> datetime:
    """The first instant at or after ``at`` whose local time in ``zone`` is in [start, end)."""
    tz = ZoneInfo(zone)
    local = at.astimezone(tz)
    t = local.time().replace(tzinfo=None)
    if (start < end and start <= t < end) or (start > end and (t >= start or t < end)):
        return at
    day = local.date() + timedelta(days=1 if t >= start else 0)
    # A start that does not exist (the clocks skip it) or exists twice (they go back over
    # it) is read as standard time, as PostgreSQL reads such local times.
    first, second = (datetime.combine(day, start, tzinfo=tz).replace(fold=f) for f in (0, 1))
    if first.utcoffset() != second.utcoffset() and second.dst() == timedelta(0):
        return second.astimezone(UTC)
    return first.astimezone(UTC)


@pytest.fixture(scope="module")
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def computed(conn: psycopg.Connection, at: datetime, zone: str, start: time, end: time) -> datetime:
    row = conn.execute(QUERY, {"at": at, "zone": zone, "s": start, "e": end}).fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


clock = st.builds(time, st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59]))


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    at=st.datetimes(datetime(2021, 1, 1), datetime(2027, 12, 31), timezones=st.just(UTC)),
    zone=st.sampled_from(ZONES),
    start=clock,
    end=clock,
)
def test_the_opening_matches_the_reference(
    conn: psycopg.Connection, at: datetime, zone: str, start: time, end: time
) -> None:
    if start == end:
        return
    got = computed(conn, at, zone, start, end)
    assert got == reference(at, zone, start, end)
    assert got >= at
    assert got - at < timedelta(hours=25)


@pytest.mark.parametrize(
    ("at", "zone", "start", "end", "expected"),
    [
        # Inside: now.
        ("2025-06-02T10:00:00Z", "Europe/London", "09:00", "17:00", "2025-06-02T10:00:00Z"),
        # Before the start today (BST): today's 09:00 local.
        ("2025-06-02T06:00:00Z", "Europe/London", "09:00", "17:00", "2025-06-02T08:00:00Z"),
        # After the end: tomorrow's start; the end itself is outside.
        ("2025-06-02T16:00:00Z", "Europe/London", "09:00", "17:00", "2025-06-03T08:00:00Z"),
        # Over midnight: 22:00-06:00 is open at 01:00 and at 23:00, shut at noon.
        ("2025-06-02T01:00:00Z", "UTC", "22:00", "06:00", "2025-06-02T01:00:00Z"),
        ("2025-06-02T23:00:00Z", "UTC", "22:00", "06:00", "2025-06-02T23:00:00Z"),
        ("2025-06-02T12:00:00Z", "UTC", "22:00", "06:00", "2025-06-02T22:00:00Z"),
        # The night the clocks go forward in New York (02:00 → 03:00): 09:00 is EDT.
        ("2025-03-09T05:00:00Z", "America/New_York", "09:00", "17:00", "2025-03-09T13:00:00Z"),
        # A start the clocks skip that night (02:30) is read as standard time: 03:30 EDT.
        ("2025-03-09T05:00:00Z", "America/New_York", "02:30", "04:00", "2025-03-09T07:30:00Z"),
        # A start the clocks pass twice (01:30 on the night they go back): the standard
        # time's, the second. Documented in docs/dispatch.md.
        ("2025-11-02T04:00:00Z", "America/New_York", "01:30", "04:00", "2025-11-02T06:30:00Z"),
    ],
)
def test_examples(
    conn: psycopg.Connection, at: str, zone: str, start: str, end: str, expected: str
) -> None:
    got = computed(
        conn,
        datetime.fromisoformat(at),
        zone,
        time.fromisoformat(start),
        time.fromisoformat(end),
    )
    assert got == datetime.fromisoformat(expected)
