"""SQL of the ingest domain: the COPY that stores events, consumer reads and positions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from psycopg import AsyncConnection

Conn = AsyncConnection[Any]

#: organization_id, type, campaign_id, contact_id, contact_email, payload (JSON text), occurred_at
Row = tuple[int, str, int | None, int | None, str | None, str, datetime]

COPY_EVENTS = """
copy events (organization_id, type, campaign_id, contact_id, contact_email, payload, occurred_at)
from stdin
"""
# The payload goes as text: in text COPY the server parses it as jsonb itself.
COPY_TYPES = ["int8", "text", "int8", "int8", "text", "text", "timestamptz"]


async def copy_events(conn: Conn, rows: Sequence[Row]) -> None:
    """Store ``rows`` with one COPY; received_at and xid come from the column defaults."""
    async with conn.cursor() as cur, cur.copy(COPY_EVENTS) as copy:
        copy.set_types(COPY_TYPES)
        for row in rows:
            await copy.write_row(row)


class Position(NamedTuple):
    """Where a consumer is in the event stream: the last (transaction id, event id) it did."""

    xid: int
    id: int


class Event(NamedTuple):
    """A committed event, as consumers see it.

    ``payload`` is the stored JSON as text (None for consumers that do not read it): any
    event PostgreSQL accepted can be passed on, whatever numbers it holds; a handler that
    needs the values decodes it, and an event it cannot decode is set aside, not a stuck
    batch. ``occurred_at`` is in UTC, clamped to years 1-9999 (what ``datetime`` holds).
    """

    xid: int
    id: int
    organization_id: int
    type: str
    campaign_id: int | None
    contact_id: int | None
    contact_email: str | None
    payload: Any
    occurred_at: datetime
    received_at: datetime


ENSURE_POSITION = "insert into consumer_positions (name) values (%s) on conflict (name) do nothing"

# Whoever holds the row is this consumer's only runner; anyone else gets nothing and leaves.
LOCK_POSITION = """
select last_xid::text::bigint, last_id from consumer_positions
where name = %s for update skip locked
"""

# Only rows of transactions older than every running one: such rows are all committed (or
# rolled back) and nothing can still commit below them, so (xid, id) order never skips one.
# Times are read as UTC timestamps without zone: the session's TimeZone cannot then push one
# out of datetime's range. An accepted occurred_at can lie outside years 1-9999 in UTC (year
# 1 at +14:00 is year 0 in UTC): it is clamped, so no event makes the batch unreadable.
READ_BATCH = """
select xid::text::bigint, id, organization_id, type, campaign_id, contact_id, contact_email,
    {payload},
    least(greatest(occurred_at, '0001-01-01 00:00:00+00'), '9999-12-31 23:59:59.999999+00')
        at time zone 'UTC',
    received_at at time zone 'UTC'
from events
where (xid, id) > (%(xid)s::text::xid8, %(id)s)
  and xid < pg_snapshot_xmin(pg_current_snapshot())
order by events.xid, events.id  -- qualified: the output column "xid" is the bigint cast
limit %(limit)s
"""

SAVE_POSITION = """
update consumer_positions set last_xid = %s::text::xid8, last_id = %s, updated_at = now()
where name = %s
"""


async def ensure_position(conn: Conn, name: str) -> None:
    await conn.execute(ENSURE_POSITION, (name,))


async def lock_position(conn: Conn, name: str) -> Position | None:
    """The consumer's position, locked until the transaction ends; None if another runs it."""
    cur = await conn.execute(LOCK_POSITION, (name,))
    row = await cur.fetchone()
    return None if row is None else Position(int(row[0]), int(row[1]))


# Decoding jsonb is most of a batch's cost for consumers that never look at it; those that do
# get the text, since Python cannot decode every number jsonb holds (ints past 4,300 digits).
READ_WITH_PAYLOAD = READ_BATCH.format(payload="payload::text")
READ_WITHOUT_PAYLOAD = READ_BATCH.format(payload="null")


async def read_batch(
    conn: Conn, after: Position, limit: int, *, payload: bool = True
) -> list[Event]:
    """The next committed events after ``after`` in (xid, id) order; see READ_BATCH."""
    query = READ_WITH_PAYLOAD if payload else READ_WITHOUT_PAYLOAD
    cur = await conn.execute(query, {"xid": str(after.xid), "id": after.id, "limit": limit})
    return [
        Event._make((*row[:8], row[8].replace(tzinfo=UTC), row[9].replace(tzinfo=UTC)))
        for row in await cur.fetchall()
    ]


async def save_position(conn: Conn, name: str, at: Position) -> None:
    await conn.execute(SAVE_POSITION, (str(at.xid), at.id, name))


RECORD_FAILURE = """
insert into event_failures (consumer, xid, event_id, organization_id, error)
values (%s, %s::text::xid8, %s, %s, %s)
on conflict (consumer, xid, event_id) do update set error = excluded.error, failed_at = now()
"""


async def record_failures(conn: Conn, consumer: str, failed: Sequence[tuple[Event, str]]) -> None:
    """Set ``failed`` events aside for ``consumer``, with why (see migration 0009)."""
    async with conn.cursor() as cur:
        await cur.executemany(
            RECORD_FAILURE,
            [(consumer, str(e.xid), e.id, e.organization_id, error) for e, error in failed],
        )


FAILURES = """
select consumer, event_id, xid::text::bigint, organization_id, error, failed_at
from event_failures
where %(consumer)s::text is null or consumer = %(consumer)s
order by failed_at desc, event_id desc
limit %(limit)s
"""


async def failures(conn: Conn, consumer: str | None, limit: int) -> list[Any]:
    """The newest events set aside: (consumer, event_id, xid, organization_id, error, at)."""
    cur = await conn.execute(FAILURES, {"consumer": consumer, "limit": limit})
    return await cur.fetchall()


ADD_COUNTS = """
insert into event_counts (organization_id, type, minute, count)
select * from unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::bigint[])
on conflict (organization_id, type, minute)
do update set count = event_counts.count + excluded.count
"""


async def add_counts(conn: Conn, counts: dict[tuple[int, str, datetime], int]) -> None:
    """Add ``counts`` per (organisation, type, minute) to the rollup, in one statement."""
    keys = list(counts)
    await conn.execute(
        ADD_COUNTS,
        (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            list(counts.values()),
        ),
    )


COUNTS = """
select type, minute, count from event_counts
where organization_id = %s and minute >= %s
order by minute, type
"""


async def counts_since(conn: Conn, organization_id: int, since: datetime) -> list[Any]:
    cur = await conn.execute(COUNTS, (organization_id, since))
    return await cur.fetchall()


async def maintain_partitions(
    conn: Conn, days_ahead: int, keep_days: int
) -> tuple[list[str], list[str]]:
    """Create the coming days' partitions, drop expired ones; returns (created, dropped)."""
    cur = await conn.execute(
        "select created, dropped from maintain_day_partitions('events', 'received_at', %s, %s)",
        (days_ahead, keep_days),
    )
    row = await cur.fetchone()
    assert row is not None
    return list(row[0]), list(row[1])
