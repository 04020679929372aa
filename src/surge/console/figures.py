"""The overview's live figures for one organisation, read from rollups and the job tables.

Loaded by one poller per organisation per API process (``surge.live``), whatever the number
of viewers. Every query is indexed and bounded: messages being sent (the organisation's
``sending`` messages, with their ``message_stats`` rollup row), events per second from the
``event_counts`` rollup (its last two minutes), the queues' depths (the small hot ``jobs``
table), the organisation's dead letters, and the donations that succeeded today.

Donations today are summed incrementally: the first load of the day sums what already
succeeded (one range of ``donations_succeeded_idx``); later loads add only the donations
that succeeded since, so a giving day's millionth donation costs what its first did. Rows
younger than ``SETTLE`` seconds are read afresh on every load rather than folded in, since a
transaction that stamped ``succeeded_at`` a moment ago may not have committed yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from surge.donations.currencies import format_amount
from surge.jobs.metrics import queue_metrics

#: Seconds after which a succeeded donation is folded into the day's running sum.
SETTLE = 10.0
#: Messages listed as "sending now" at most.
SENDING_LIMIT = 10

# messages_campaign_idx (organization_id, …): the organisation's messages, then the few
# sending ones; message_stats by primary key.
SENDING = """
select m.id, m.subject, coalesce(s.total, 0), coalesce(s.sent, 0), coalesce(s.failed, 0)
from messages m left join message_stats s on s.message_id = m.id
where m.organization_id = %s and m.status = 'sending'
order by m.id desc
limit %s
"""

# event_counts primary key (organization_id, type, minute): two minutes of every type.
EVENTS = """
select coalesce(sum(count) filter (where minute = date_trunc('minute', now())), 0),
    coalesce(sum(count) filter (where minute < date_trunc('minute', now())), 0),
    extract(epoch from now() - date_trunc('minute', now()))
from event_counts
where organization_id = %s and minute >= date_trunc('minute', now()) - interval '1 minute'
"""

# donations_succeeded_idx (organization_id, succeeded_at, id) where succeeded_at is not null.
DONATIONS = """
select currency, count(*), coalesce(sum(amount_minor), 0)::bigint from donations
where organization_id = %(org)s and succeeded_at >= %(since)s and succeeded_at < %(until)s
group by currency
"""

# jobs_discarded_idx (queue, id) where state = 'discarded': dead letters are few.
DEAD = "select count(*) from jobs where state = 'discarded' and organization_id = %s"


@dataclass(slots=True)
class _Day:
    """Donations of one UTC day folded so far, up to ``until``."""

    day: datetime
    until: datetime
    counts: dict[str, int] = field(default_factory=dict)
    sums: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class OverviewLoader:
    """The figures of one organisation; keeps what it needs between loads (rates, the day)."""

    pool: AsyncConnectionPool[Any]
    organization_id: int
    _day: _Day | None = None
    _sent: dict[int, tuple[float, int]] = field(default_factory=dict)

    async def __call__(self) -> dict[str, Any]:
        async with self.pool.connection() as conn:
            sending = await self._sending(conn)
            events = await self._events(conn)
            donations = await self._donations(conn)
            queues = [{"queue": q.queue, **q.states} for q in await queue_metrics(conn)]
            cur = await conn.execute(DEAD, [self.organization_id])
            row = await cur.fetchone()
        return {
            "sending": sending,
            "events_per_second": events,
            "donations": donations,
            "queues": queues,
            "failed_jobs": int(row[0]) if row else 0,
        }

    async def _sending(self, conn: AsyncConnection[Any]) -> list[dict[str, Any]]:
        cur = await conn.execute(SENDING, [self.organization_id, SENDING_LIMIT])
        now = time.monotonic()
        out, seen = [], {}
        for message_id, subject, total, sent, failed in await cur.fetchall():
            before = self._sent.get(message_id)
            rate = 0.0
            if before is not None and now > before[0]:
                rate = max(0.0, (sent - before[1]) / (now - before[0]))
            # Keep the older sample for a steadier rate over about five seconds.
            seen[message_id] = before if before and now - before[0] < 5 else (now, sent)
            out.append(
                {
                    "id": message_id,
                    "subject": subject,
                    "total": total,
                    "sent": sent,
                    "failed": failed,
                    "per_second": round(rate),
                }
            )
        self._sent = seen
        return out

    async def _events(self, conn: AsyncConnection[Any]) -> float:
        cur = await conn.execute(EVENTS, [self.organization_id])
        row = await cur.fetchone()
        if row is None:
            return 0.0
        current, previous, elapsed = int(row[0]), int(row[1]), float(row[2])
        # The last 60 s: this minute so far, and the part of the previous one still inside.
        window = current + previous * max(0.0, 1.0 - elapsed / 60.0)
        return round(window / 60.0, 1)

    async def _donations(self, conn: AsyncConnection[Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        settled = max(day, now - timedelta(seconds=SETTLE))
        if self._day is None or self._day.day != day:
            self._day = _Day(day, day)
        state = self._day
        if settled > state.until:
            for currency, count, amount in await self._range(conn, state.until, settled):
                state.counts[currency] = state.counts.get(currency, 0) + count
                state.sums[currency] = state.sums.get(currency, 0) + amount
            state.until = settled
        counts, sums = dict(state.counts), dict(state.sums)
        for currency, count, amount in await self._range(conn, state.until, now + timedelta(1)):
            counts[currency] = counts.get(currency, 0) + count
            sums[currency] = sums.get(currency, 0) + amount
        return {
            "count": sum(counts.values()),
            "amounts": [format_amount(sums[c], c) for c in sorted(sums, key=lambda c: -sums[c])],
        }

    async def _range(
        self, conn: AsyncConnection[Any], since: datetime, until: datetime
    ) -> list[tuple[str, int, int]]:
        cur = await conn.execute(
            DONATIONS, {"org": self.organization_id, "since": since, "until": until}
        )
        return [(str(r[0]), int(r[1]), int(r[2])) for r in await cur.fetchall()]
