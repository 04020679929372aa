"""The donations page's live chart of the day, for one organisation, loaded by one poller
per organisation per API process (``surge.live``).

The day (UTC) is summed minute by minute from ``donations.reports.minutes`` (the index of
succeeded donations). Minutes that have settled (older than ``SETTLE`` seconds: a charge
stamped a moment ago may not have committed yet) are folded into memory once; each load
then reads only the unsettled tail, so a giving day's millionth donation costs what its
first did. A process that starts mid-day catches up ``CATCH_UP`` at a time, so no single
load scans a whole busy day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from surge.console.charts import Axis, bars, line
from surge.donations import reports
from surge.donations.currencies import MINOR_UNITS, format_amount

SETTLE = timedelta(seconds=10)
#: The most of the day one load folds in while catching up.
CATCH_UP = timedelta(hours=6)
#: Per-minute bars of the last hour.
LAST_MINUTES = 60

Sums = dict[str, tuple[int, int]]  # currency → (donations, amount in minor units)


@dataclass(slots=True)
class DayLoader:
    """The organisation's donations today, per minute; keeps the settled minutes."""

    pool: AsyncConnectionPool[Any]
    organization_id: int
    day: datetime | None = None
    #: Folded up to here (exclusive).
    until: datetime = datetime.min.replace(tzinfo=UTC)
    minutes: dict[datetime, Sums] = field(default_factory=dict)

    async def __call__(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.day != day:
            self.day, self.until, self.minutes = day, day, {}
        settled = max(day, now - SETTLE)
        catching_up = False
        async with self.pool.connection() as conn:
            if settled > self.until:
                upto = min(settled, self.until + CATCH_UP)
                catching_up = upto < settled
                for row in await reports.minutes(conn, self.organization_id, self.until, upto):
                    _add(self.minutes, row)
                self.until = upto
            tail: dict[datetime, Sums] = {}
            if not catching_up:
                for row in await reports.minutes(
                    conn, self.organization_id, self.until, now + timedelta(minutes=1)
                ):
                    _add(tail, row)
        figures = day_figures(day, now, _merged(self.minutes, tail), catching_up)
        figures["until"] = f"{self.until:%H:%M}"
        return figures


def _add(into: dict[datetime, Sums], row: reports.MinuteSum) -> None:
    sums = into.setdefault(row.minute, {})
    count, amount = sums.get(row.currency, (0, 0))
    sums[row.currency] = (count + row.donations, amount + row.amount)


def _merged(settled: dict[datetime, Sums], tail: dict[datetime, Sums]) -> dict[datetime, Sums]:
    out = {minute: dict(sums) for minute, sums in settled.items()}
    for minute, sums in tail.items():
        into = out.setdefault(minute, {})
        for currency, (count, amount) in sums.items():
            old = into.get(currency, (0, 0))
            into[currency] = (old[0] + count, old[1] + amount)
    return out


def day_figures(
    day: datetime, now: datetime, minutes: dict[datetime, Sums], catching_up: bool
) -> dict[str, Any]:
    """The live section's data: totals per currency, and the two charts in the main one."""
    totals: Sums = {}
    for sums in minutes.values():
        for currency, (count, amount) in sums.items():
            old = totals.get(currency, (0, 0))
            totals[currency] = (old[0] + count, old[1] + amount)
    ranked = sorted(totals, key=lambda c: -totals[c][1])
    main = ranked[0] if ranked else None
    # x: the day so far (midnight to now); y: major units of the main currency.
    elapsed = max((now - day).total_seconds(), 60.0)
    scale = 10 ** MINOR_UNITS.get(main or "", 2)
    running, points = 0, [(0.0, 0.0)]
    for minute in sorted(minutes):
        start = (minute - day).total_seconds()
        points.append((start / elapsed, running / scale))  # flat until this minute
        running += minutes[minute].get(main, (0, 0))[1] if main else 0
        points.append((min(start + 60, elapsed) / elapsed, running / scale))
    points.append((1.0, running / scale))
    this_minute = now.replace(second=0, microsecond=0)
    recent = [
        float(sum(c for c, _ in minutes.get(this_minute - timedelta(minutes=n), {}).values()))
        for n in range(LAST_MINUTES - 1, -1, -1)
    ]
    raised = format_amount(running, main) if main else "0"
    cumulative = line(
        "day-chart",
        "Raised today",
        f"Running total of donations that succeeded today (UTC), in {main or 'no currency yet'}:"
        f" {raised} by {now:%H:%M} UTC.",
        points,
        Axis("00:00", f"{now:%H:%M} UTC", f" {main}" if main else ""),
    )
    busiest = max(recent) if recent else 0
    per_minute = bars(
        "minute-chart",
        "Donations per minute, last hour",
        f"Donations per minute over the last {LAST_MINUTES} minutes: {recent[-1]:,.0f} this"
        f" minute, busiest {busiest:,.0f}.",
        recent,
        Axis(f"{this_minute - timedelta(minutes=LAST_MINUTES - 1):%H:%M}", f"{now:%H:%M} UTC"),
    )
    return {
        "donations": sum(count for count, _ in totals.values()),
        "raised": [(format_amount(totals[c][1], c), totals[c][0]) for c in ranked],
        "catching_up": catching_up,
        "as_of": f"{now:%H:%M:%S}",
        "day_chart": str(cumulative),
        "minute_chart": str(per_minute),
    }
