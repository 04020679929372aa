"""SQL of the ingest domain: the COPY that stores events, consumer reads and positions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from psycopg import AsyncConnection

Conn = AsyncConnection[Any]

#: organization_id, type, campaign_id, contact_id, contact_email, payload (JSON text),
#: occurred_at, message_id, user_id, anonymous_id
Row = tuple[
    int, str, int | None, int | None, str | None, str, datetime, str | None, str | None, str | None
]
#: Where a row keeps its messageId (the de-duplication key with its organisation).
MESSAGE_ID: Final = 7

COPY_EVENTS = """
copy events (organization_id, type, campaign_id, contact_id, contact_email, payload, occurred_at,
    message_id, user_id, anonymous_id)
from stdin
"""
# The payload goes as text: in text COPY the server parses it as jsonb itself.
COPY_TYPES = [
    "int8", "text", "int8", "int8", "text", "text", "timestamptz", "text", "text", "text"
]  # fmt: skip


async def copy_events(conn: Conn, rows: Sequence[Row]) -> None:
    """Store ``rows`` with one COPY; received_at and xid come from the column defaults."""
    async with conn.cursor() as cur, cur.copy(COPY_EVENTS) as copy:
        copy.set_types(COPY_TYPES)
        for row in rows:
            await copy.write_row(row)


# The (organisation, messageId key) pairs of a flush, sorted (two flushes in different
# processes then lock shared keys in the same order: no deadlock), each once, as one JSON
# array: psycopg builds array parameters in Python, element by element, which cost more than
# the rest of a flush. A key is claimed if new, or if its last acceptance is older than the
# window (the resend then counts as new). A key another transaction inserted but has not
# committed waits for it: the event is stored by whichever commits, once. Returns the
# positions of the keys not claimed (duplicates: usually none, so little comes back).
# Served by the primary key.
CLAIM_MESSAGE_IDS = """
with keys as (
    select (k->>0)::bigint as org, k->>1 as id, n
    from jsonb_array_elements(%(keys)s::jsonb) with ordinality as t(k, n)
), claimed as (
    insert into event_message_ids as m (organization_id, message_id)
    select org, id from keys order by n
    on conflict (organization_id, message_id) do update set accepted_at = now()
    where m.accepted_at < now() - make_interval(secs => %(window)s)
    returning organization_id, message_id
)
select n - 1 from keys
where not exists (
    select from claimed c where c.organization_id = keys.org and c.message_id = keys.id
)
"""


async def claim_message_ids(
    conn: Conn, keys: Sequence[tuple[int, str]], window: float
) -> set[tuple[int, str]]:
    """Claim (organisation, key) ``keys`` (sorted, distinct); the ones already taken."""
    cur = await conn.execute(
        CLAIM_MESSAGE_IDS, {"keys": json.dumps(keys, ensure_ascii=False), "window": window}
    )
    return {keys[int(row[0])] for row in await cur.fetchall()}


# Keys past the window, oldest first, a batch at a time (each its own short transaction):
# the BRIN index on accepted_at finds them; deleting by ctid is a TID scan.
PRUNE_MESSAGE_IDS = """
delete from event_message_ids where ctid = any(array(
    select ctid from event_message_ids
    where accepted_at < now() - make_interval(secs => %(window)s)
    limit %(limit)s
))
"""


async def prune_message_ids(conn: Conn, window: float, limit: int) -> int:
    """Delete at most ``limit`` messageIds accepted longer than ``window`` seconds ago."""
    cur = await conn.execute(PRUNE_MESSAGE_IDS, {"window": window, "limit": limit})
    return cur.rowcount


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
    message_id: str | None
    user_id: str | None
    anonymous_id: str | None


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
    received_at at time zone 'UTC',
    message_id, user_id, anonymous_id
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
#: Which payloads a consumer reads: every event's, none, or those of Segment's identify,
#: group and alias calls (what the profiles consumer needs beyond the id columns).
PAYLOADS: dict[str, str] = {
    "all": "payload::text",
    "none": "null",
    "identity": "case when type in ('identify', 'group', 'alias')"
    " and coalesce(user_id, anonymous_id) is not null then payload::text end",
}
READS = {name: READ_BATCH.format(payload=column) for name, column in PAYLOADS.items()}


async def read_batch(
    conn: Conn, after: Position, limit: int, *, payload: bool | str = True
) -> list[Event]:
    """The next committed events after ``after`` in (xid, id) order; see READ_BATCH.

    ``payload``: a key of PAYLOADS; True means ``all``, False ``none``.
    """
    query = READS[payload if isinstance(payload, str) else "all" if payload else "none"]
    cur = await conn.execute(query, {"xid": str(after.xid), "id": after.id, "limit": limit})
    return [
        Event._make((*row[:8], row[8].replace(tzinfo=UTC), row[9].replace(tzinfo=UTC), *row[10:]))
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
