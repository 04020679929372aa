"""A per-sender token bucket in PostgreSQL, shared by every worker process.

Each process takes tokens in batches (say 50) with one statement, then spends them locally,
so a sender sending 1,000 messages a second costs ~20 database round trips a second in
total. Tokens a process took but did not use are simply lost: the limit can be undershot,
never exceeded.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

# Refill by elapsed time (capped at burst), then take up to n tokens, but only if at least
# min_grant are there: waiting for a few tokens to gather beats many one-token round trips.
# `greatest` guards the clock: a statement that read clock_timestamp() before waiting for the
# row lock must neither refill negatively nor move refilled_at backwards (which would let the
# next caller count the same seconds twice).
TAKE = """
with clock as (select clock_timestamp() as now),
filled as (
    select b.sender, c.now,
        least(%(burst)s::float8, b.tokens + %(rate)s::float8
            * greatest(0, extract(epoch from c.now - b.refilled_at))::float8) as available
    from delivery_rate_buckets b, clock c
    where b.sender = %(sender)s
    for update of b
)
update delivery_rate_buckets b
set last_grant = g.granted,
    tokens = greatest(0, f.available - g.granted),
    refilled_at = greatest(b.refilled_at, f.now)
from filled f,
    lateral (select case when f.available >= %(min_grant)s
                then least(%(n)s, floor(f.available))::integer else 0 end as granted) g
where b.sender = f.sender
returning b.last_grant, b.tokens
"""

# A new sender's bucket starts full.
CREATE = """
insert into delivery_rate_buckets (sender, tokens) values (%(sender)s, %(burst)s)
on conflict (sender) do nothing
"""

Connectable = AsyncConnection[Any] | AsyncConnectionPool


@dataclass(frozen=True, slots=True)
class Grant:
    """Tokens granted by one take, and how long until ``min_grant`` more are there."""

    granted: int
    wait: float


async def take_tokens(
    db: Connectable, sender: str, n: int, rate: float, burst: int, min_grant: int = 1
) -> Grant:
    """Take up to ``n`` tokens from ``sender``'s bucket (0 if fewer than ``min_grant`` are there).

    ``rate`` is tokens per second and ``burst`` the bucket's size; both come from the sender's
    configuration. ``db`` is an autocommit connection or a pool.
    """
    min_grant = max(1, min(min_grant, n, burst))
    params = {"sender": sender, "n": n, "rate": rate, "burst": burst, "min_grant": min_grant}
    row = await _execute(db, params)
    if row is None:
        await _execute_create(db, params)
        row = await _execute(db, params)
    if row is None:
        raise RuntimeError(f"no rate bucket for sender {sender!r}")
    granted, left = int(row[0]), float(row[1])
    return Grant(granted, max(0.0, (min_grant - left) / rate))


async def acquire(
    db: Connectable, sender: str, n: int, rate: float, burst: int, min_grant: int = 1
) -> int:
    """Tokens granted now (maybe fewer than ``n``, maybe 0); see ``take_tokens``."""
    return (await take_tokens(db, sender, n, rate, burst, min_grant)).granted


async def _execute(db: Connectable, params: dict[str, Any]) -> tuple[Any, ...] | None:
    if isinstance(db, AsyncConnectionPool):
        async with db.connection() as conn:
            cur = await conn.execute(TAKE, params)
            return await cur.fetchone()
    cur = await db.execute(TAKE, params)
    return await cur.fetchone()


async def _execute_create(db: Connectable, params: dict[str, Any]) -> None:
    if isinstance(db, AsyncConnectionPool):
        async with db.connection() as conn:
            await conn.execute(CREATE, params)
    else:
        await db.execute(CREATE, params)


class TokenBucket:
    """One process's share of a sender's bucket: ``await take()`` before each message.

    Tokens are fetched ``batch`` at a time and spent locally; when the bucket is empty the
    limiter sleeps until enough tokens for a useful batch have accumulated (~10 takes per
    second at most), never busy-polling the database.
    """

    def __init__(
        self, db: Connectable, sender: str, rate: float, burst: int, batch: int = 50
    ) -> None:
        self.db = db
        self.sender = sender
        self.rate = rate
        self.burst = burst
        self.batch = max(1, min(batch, burst))
        # Gathering a tenth of a second's worth keeps round trips bounded at any rate.
        self.min_grant = max(1, min(self.batch, math.floor(rate / 10)))
        #: Database round trips so far (metrics; tests check they stay few).
        self.takes = 0
        self._tokens = 0
        self._lock = asyncio.Lock()

    async def take(self, n: int = 1) -> None:
        """Return once ``n`` messages may be sent (``n`` at most the limiter's batch)."""
        if n > self.batch:
            raise ValueError(f"cannot wait for {n} tokens at once; the batch is {self.batch}")
        async with self._lock:
            while self._tokens < n:
                grant = await take_tokens(
                    self.db, self.sender, self.batch, self.rate, self.burst, self.min_grant
                )
                self.takes += 1
                self._tokens += grant.granted
                if self._tokens < n:
                    await asyncio.sleep(max(grant.wait, 0.005))
            self._tokens -= n
