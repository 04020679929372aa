"""SQL of sends (docs/dispatch.md, "Sends"): the snapshot of a message with an A/B test or a
send window, the window's check when a chunk starts, and the A/B winner's pick.

The plain snapshot, chunk ownership and outcomes are in ``store.py``; this module writes
no ``messages.status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import args_row, class_row

from surge.dispatch import store, windows

Conn = AsyncConnection[Any]

# A message with an A/B test or a send window is planned by one statement too: the same
# audience, each member placed in a variant (A/B) or a time zone (window), chunks numbered
# within (variant, zone) so that no chunk mixes two (so never two opening instants), the
# deliveries and the chunk rows written together. The rows pass through the server's
# memory (or temporary files) once more than the plain snapshot's, never through Python.
SHAPED = """
with audience as materialized ({audience}),
placed as ({placed}),
chunked as materialized (
    select contact_id, variant, zone,
           (dense_rank() over (order by variant nulls last, zone, part) - 1)::integer as chunk
    from (select contact_id, variant, zone,
                 (row_number() over (partition by variant, zone order by contact_id) - 1)
                     / {chunk_size} as part
          from placed) numbered
),
added as (
    insert into deliveries (message_id, contact_id, organization_id, chunk, variant)
    select {message_id}, contact_id, {org}, chunk, variant from chunked
    on conflict do nothing
),
grouped as (
    select chunk, count(*)::integer as recipients, min(variant) as variant, min(zone) as zone
    from chunked group by chunk
)
insert into dispatch_chunks (message_id, chunk, recipients, variant, timezone, not_before, status)
select {message_id}, chunk, recipients, variant, zone, {opening},
       case when {held} and variant is null then 'held' else 'pending' end
from grouped
returning chunk, recipients, variant, status, not_before
"""
# The A/B test group: the first ceil(n * percent / 100) members in the order of a hash of
# (message, contact), random but the same on every run; variants dealt in turn along that
# order, so their sizes differ by one at most. The rest (variant null) is held back.
PLACED_AB = """select contact_id,
       case when rn <= ceil(n * {percent} / 100.0)
            then ((rn - 1) % {variants})::smallint end as variant,
       null::text as zone
from (select contact_id, count(*) over () as n,
             row_number() over (order by hashtextextended(contact_id::text, {message_id}),
                                contact_id) as rn
      from audience) a"""
# Send window: the member's zone is the IANA name in their attribute (matched without
# regard to case, as PostgreSQL does), else the message's default. pg_timezone_names is
# read once (a hash join), not per member.
PLACED_WINDOW = """select a.contact_id, null::smallint as variant,
       coalesce(z.name, {default_zone}) as zone
from audience a
join contacts c on c.organization_id = {org} and c.id = a.contact_id
left join (select distinct on (lower(name)) name, lower(name) as key
           from pg_timezone_names order by lower(name), name) z
    on z.key = lower(c.attributes ->> {attribute})"""


@dataclass(frozen=True, slots=True)
class PlannedChunk:
    """A chunk as the shaped snapshot made it."""

    chunk: int
    recipients: int
    variant: int | None
    #: 'pending' (its job is enqueued to run at not_before, or now) or 'held' (A/B remainder).
    status: str
    not_before: datetime | None


@dataclass(frozen=True, slots=True)
class AbSplit:
    """How plan splits an A/B test's audience."""

    variants: int
    test_percent: int


@dataclass(frozen=True, slots=True)
class Window:
    """A send window as plan and send_chunk read it (docs/dispatch.md)."""

    start: time
    end: time
    timezone_attribute: str
    default_timezone: str


async def snapshot_shaped(
    conn: Conn,
    org: int,
    message_id: int,
    list_ids: list[int],
    chunk_size: int,
    narrow: sql.Composable | None,
    *,
    ab: AbSplit | None = None,
    window: Window | None = None,
) -> list[PlannedChunk]:
    """The snapshot of a message with an A/B test or a send window (not both): deliveries
    with their variant, and chunk rows of one variant or one zone, in one statement."""
    literal = sql.Literal
    if ab is not None:
        placed = sql.SQL(PLACED_AB).format(
            percent=literal(ab.test_percent),
            variants=literal(ab.variants),
            message_id=literal(message_id),
        )
    elif window is not None:
        placed = sql.SQL(PLACED_WINDOW).format(
            default_zone=literal(window.default_timezone),
            org=literal(org),
            attribute=literal(window.timezone_attribute),
        )
    else:
        raise ValueError("snapshot_shaped needs an A/B test or a send window")
    opening: sql.Composable = sql.SQL("null::timestamptz")
    if window is not None:
        opening = windows.opening(
            sql.SQL("now()"), sql.SQL("grouped.zone"), literal(window.start), literal(window.end)
        )
    query = sql.SQL(SHAPED).format(
        audience=store.audience(org, list_ids, narrow),
        placed=placed,
        chunk_size=literal(chunk_size),
        message_id=literal(message_id),
        org=literal(org),
        opening=opening,
        held=literal(ab is not None),
    )
    cur = conn.cursor(row_factory=class_row(PlannedChunk))
    await cur.execute(query)
    return await cur.fetchall()


# -- send windows ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkGate:
    """What a send_chunk job checks before it sends: the message's status, and the next
    opening of the chunk's send window if its zone's clock is outside it now."""

    status: str
    opens_at: datetime | None


async def chunk_gate(conn: Conn, message_id: int, chunk: int) -> ChunkGate | None:
    opening = windows.opening(
        sql.SQL("now()"),
        sql.SQL("c.timezone"),
        sql.SQL("(m.send_window ->> 'start')::time"),
        sql.SQL("(m.send_window ->> 'end')::time"),
    )
    query = sql.SQL(
        "select m.status, case when c.timezone is not null and m.send_window is not null"
        " then nullif(greatest({opening}, now()), now()) end"
        " from messages m join dispatch_chunks c on c.message_id = m.id"
        " where m.id = {m} and c.chunk = {c}"
    ).format(opening=opening, m=sql.Literal(message_id), c=sql.Literal(chunk))
    cur = conn.cursor(row_factory=args_row(ChunkGate))
    await cur.execute(query)
    return await cur.fetchone()


async def defer_chunk(conn: Conn, message_id: int, chunk: int, opens_at: datetime) -> None:
    """Give the chunk back, to be sent when its window opens."""
    await conn.execute(
        "update dispatch_chunks set status = 'pending', owner_job = null, not_before = %s,"
        " updated_at = now() where message_id = %s and chunk = %s",
        [opens_at, message_id, chunk],
    )


@dataclass(frozen=True, slots=True)
class WindowSchedule:
    """When a windowed message's unfinished chunks open (progress and its ETA)."""

    next_at: datetime | None
    last_at: datetime | None
    #: Recipients of the chunks that open last.
    last_recipients: int


async def window_schedule(conn: Conn, message_id: int) -> WindowSchedule:
    """Read from the message's chunk rows (a thousandth of its deliveries), by primary key."""
    cur = conn.cursor(row_factory=args_row(WindowSchedule))
    await cur.execute(
        "with open as (select not_before, recipients from dispatch_chunks"
        "  where message_id = %s and status <> 'done' and not_before is not null)"
        " select (select min(not_before) from open where not_before > now()),"
        "  (select max(not_before) from open),"
        "  (select coalesce(sum(recipients), 0)::integer from open"
        "   where not_before = (select max(not_before) from open))",
        [message_id],
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def known_timezone(conn: Conn, name: str) -> str | None:
    """The IANA zone PostgreSQL knows by ``name`` (any case), as it spells it; None if none."""
    cur = await conn.execute(
        "select name from pg_timezone_names where lower(name) = lower(%s) order by name limit 1",
        [name],
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


# -- A/B tests --------------------------------------------------------------------------------


async def schedule_decision(conn: Conn, message_id: int, wait_minutes: int) -> datetime:
    """Set when the winner is picked: ``wait_minutes`` from now (the test's start)."""
    cur = await conn.execute(
        "update messages set ab_decides_at = now() + make_interval(mins => %s)"
        " where id = %s returning ab_decides_at",
        [wait_minutes, message_id],
    )
    row = await cur.fetchone()
    assert row is not None
    decides_at: datetime = row[0]
    return decides_at


async def set_variant_recipients(
    conn: Conn, org: int, message_id: int, recipients: list[int]
) -> None:
    """One message_variants row per variant, with how many recipients plan gave it."""
    await conn.execute(
        "insert into message_variants (message_id, variant, organization_id, recipients)"
        " select %s, v.variant - 1, %s, v.n"
        " from unnest(%s::integer[]) with ordinality as v(n, variant)"
        " on conflict (message_id, variant) do update set recipients = excluded.recipients",
        [message_id, org, recipients],
    )


@dataclass(frozen=True, slots=True)
class VariantFigures:
    """A variant's test deliveries as the winner is judged on them."""

    variant: int
    sent: int
    opened: int
    clicked: int


async def variant_figures(conn: Conn, message_id: int) -> list[VariantFigures]:
    """Sent, and opened or clicked by people, of the test deliveries, counted exactly.

    Reads the test chunks' deliveries only (deliveries_chunk_idx); once per test, in a job.
    """
    cur = conn.cursor(row_factory=args_row(VariantFigures))
    await cur.execute(
        "select d.variant, count(*) filter (where d.status = 'sent'),"
        " count(*) filter (where d.status = 'sent' and d.opened_at is not null),"
        " count(*) filter (where d.status = 'sent' and d.clicked_at is not null)"
        " from deliveries d where d.message_id = %s and d.chunk = any(array("
        "  select chunk from dispatch_chunks where message_id = %s and variant is not null))"
        " and d.variant is not null group by d.variant order by d.variant",
        [message_id, message_id],
    )
    return await cur.fetchall()


async def set_winner(conn: Conn, message_id: int, winner: int) -> None:
    """Record the winner; the message's subject becomes the winner's (the remainder and
    any later send to new members go with it)."""
    await conn.execute(
        "update messages set ab_winner = %s, ab_decided_at = now(),"
        " subject = ab_test -> 'subjects' ->> %s::integer where id = %s and ab_winner is null",
        [winner, winner, message_id],
    )


async def release_held(conn: Conn, message_id: int) -> list[int]:
    """The held-back remainder's chunks become pending; returns their numbers."""
    cur = await conn.execute(
        "update dispatch_chunks set status = 'pending', updated_at = now()"
        " where message_id = %s and status = 'held' returning chunk",
        [message_id],
    )
    return sorted(int(row[0]) for row in await cur.fetchall())


async def cancel_held(conn: Conn, message_id: int) -> None:
    """A cancelled message's remainder: its deliveries cancelled, its chunks done."""
    cur = await conn.execute(
        "update dispatch_chunks set status = 'done', updated_at = now()"
        " where message_id = %s and status = 'held' returning chunk",
        [message_id],
    )
    chunks = [int(row[0]) for row in await cur.fetchall()]
    if chunks:
        await conn.execute(
            "update deliveries set status = 'cancelled' where message_id = %s"
            " and chunk = any(%s) and status = 'queued'",
            [message_id, chunks],
        )
