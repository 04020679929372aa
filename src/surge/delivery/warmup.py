"""Warm-up: a new sender's daily cap, growing by schedule, shared by every worker.

Mailbox providers distrust a new IP or domain that sends a lot at once; reputation is
built by sending a little to engaged recipients and more each day. A sender with
``warmup=YYYY-MM-DD`` in its URL may send ``schedule[d]`` messages on day ``d`` after that
date (UTC days), then without a cap. The default schedule goes from 50 to 1,000,000 a day
over 15 days; ``warmup_schedule=50,100,…`` replaces it.

Workers reserve their share of the day's cap per chunk with one statement
(``sender_days``) and give back what they did not use; recipients past the cap stay
queued, no attempt counted, until the next UTC day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

DEFAULT_SCHEDULE = (
    50, 100, 500, 1_000, 5_000, 10_000, 20_000, 40_000, 70_000, 100_000,
    150_000, 250_000, 400_000, 600_000, 1_000_000,
)  # fmt: skip

_CREATE = """
insert into sender_days (sender, day, sent) values (%(sender)s, %(day)s, 0)
on conflict (sender, day) do nothing
"""
# The row is locked and read, then moved: the same pattern as the senders' token bucket
# (delivery/ratelimit), so concurrent workers are granted from what the others left.
_RESERVE = """
with cur as (
    select sent from sender_days where sender = %(sender)s and day = %(day)s for update
)
update sender_days d set sent = greatest(cur.sent, least(%(cap)s, cur.sent + %(n)s))
from cur where d.sender = %(sender)s and d.day = %(day)s
returning d.sent - cur.sent
"""

_GIVE_BACK = """
update sender_days set sent = greatest(0, sent - %(n)s) where sender = %(sender)s and day = %(day)s
"""


def cap_for(start: date, schedule: tuple[int, ...], today: date) -> int | None:
    """The day's cap (0 before the start date), or None once the schedule is over."""
    days = (today - start).days
    if days < 0:
        return 0
    return schedule[days] if days < len(schedule) else None


def today() -> date:
    return datetime.now(UTC).date()


def seconds_to_tomorrow() -> float:
    now = datetime.now(UTC)
    tomorrow = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1.0, (tomorrow - now).total_seconds())


async def reserve(pool: AsyncConnectionPool, sender: str, day: date, cap: int, n: int) -> int:
    """Take up to ``n`` of the sender's messages for ``day``; returns how many were granted."""
    if n <= 0:
        return 0
    params: dict[str, Any] = {"sender": sender, "day": day, "cap": cap, "n": n}
    async with pool.connection() as conn:
        await conn.execute(_CREATE, params)
        cur = await conn.execute(_RESERVE, params)
        row = await cur.fetchone()
    return max(0, int(row[0])) if row else 0


async def give_back(pool: AsyncConnectionPool, sender: str, day: date, n: int) -> None:
    """Return ``n`` reserved messages that were not sent."""
    if n > 0:
        async with pool.connection() as conn:
            await conn.execute(_GIVE_BACK, {"sender": sender, "day": day, "n": n})
