"""SQL of the dispatcher: audience snapshot, chunk ownership, outcomes and rollups.

This module is the one writer of ``messages.status`` once a message exists: ``set_status``
(staff actions, through ``dispatch.service.act``), ``create_chunks`` and ``mark_sending``
(→ sending) and ``finish_message`` (→ sent). The SQL of A/B tests and send windows is in
``sends_store.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import args_row, class_row

Conn = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class MessageToPlan:
    """What ``plan`` needs of a message, read under its row lock."""

    id: int
    organization_id: int
    status: str
    started_at: datetime | None
    list_ids: list[int]
    segment_id: int | None
    send_at: datetime | None
    #: The A/B test, send window and follow-up kind (docs/dispatch.md, "Sends").
    ab_test: dict[str, Any] | None = None
    ab_winner: int | None = None
    send_window: dict[str, Any] | None = None
    resend_of: int | None = None
    send_to_new_of: int | None = None


@dataclass(frozen=True, slots=True)
class MessageToSend:
    """What every send of a chunk is made from."""

    id: int
    organization_id: int
    status: str
    subject: str
    html: str | None
    text_body: str | None
    from_email: str
    from_name: str | None
    reply_to: str | None
    sender: str | None
    track_opens: bool
    track_clicks: bool


@dataclass(frozen=True, slots=True)
class Recipient:
    """A queued delivery of a chunk, with its contact as it is now."""

    contact_id: int
    attempts: int
    email: str
    first_name: str | None
    last_name: str | None
    attributes: dict[str, Any] | None
    status: str
    #: The reason, if the organisation suppressed this address (suppressions table).
    suppressed: str | None


@dataclass(frozen=True, slots=True)
class FinalStats:
    """A finished message's figures, as ``message.completed`` announces them."""

    organization_id: int
    message_id: int
    campaign_id: int
    total: int
    sent: int
    failed: int
    skipped: int
    bounced: int


# The audience snapshot reads list_members and contacts directly: it must be one
# INSERT … SELECT (a million rows never pass through Python), so it cannot go through the
# contacts service. Uses list_members' primary key (organization_id, list_id, contact_id).
# With a segment, the members are narrowed by its predicate over ``contacts c`` (segments/
# rules.py), still in the same statement. The values are composed in as literals, not sent
# as parameters: a predicate's literals may hold "%", which parameters would misread.
AUDIENCE = """select distinct contact_id from list_members
      where organization_id = {org} and list_id = any({list_ids})
        and confirmed_at is not null and unsubscribed_at is null{narrow}"""
SNAPSHOT = """
insert into deliveries (message_id, contact_id, organization_id, chunk)
select {message_id}, contact_id, {org},
       ((row_number() over (order by contact_id)) - 1) / {chunk_size}
from ({audience}) audience
on conflict do nothing
"""
IN_SEGMENT = " and contact_id in (select c.id from contacts c where c.organization_id = {} and {})"
# A send to new members: no delivery (other than a cancelled one) of any message of its
# family yet. A resend: a delivery of the original that was sent and neither opened nor
# clicked by a person (machine opens are in other columns; a click shows it was read).
# Both probe deliveries' primary key (message_id, contact_id) once per member.
NOT_YET_SENT = (
    " and not exists (select 1 from deliveries o where o.message_id = any({})"
    " and o.contact_id = list_members.contact_id and o.status <> 'cancelled')"
)
NON_OPENERS = (
    " and exists (select 1 from deliveries o where o.message_id = {}"
    " and o.contact_id = list_members.contact_id and o.status = 'sent'"
    " and o.opened_at is null and o.clicked_at is null)"
)


def audience_filter(
    org: int,
    segment: sql.Composable | None = None,
    *,
    resend_of: int | None = None,
    family: list[int] | None = None,
) -> sql.Composable:
    """What narrows a message's list members: its segment's predicate over ``contacts c``,
    a resend's non-openers of ``resend_of``, a send to new members' "nobody ``family``
    reached"."""
    parts: list[sql.Composable] = []
    if segment is not None:
        parts.append(sql.SQL(IN_SEGMENT).format(sql.Literal(org), segment))
    if resend_of is not None:
        parts.append(sql.SQL(NON_OPENERS).format(sql.Literal(resend_of)))
    if family:
        parts.append(sql.SQL(NOT_YET_SENT).format(sql.Literal(family)))
    return sql.Composed(parts)


async def lock_message(conn: Conn, message_id: int) -> MessageToPlan | None:
    cur = conn.cursor(row_factory=class_row(MessageToPlan))
    await cur.execute(
        "select id, organization_id, status, started_at, list_ids, segment_id, send_at,"
        " ab_test, ab_winner, send_window, resend_of, send_to_new_of"
        " from messages where id = %s for update",
        [message_id],
    )
    return await cur.fetchone()


def audience(org: int, list_ids: list[int], narrow: sql.Composable | None) -> sql.Composed:
    """The SELECT of a message's audience (``AUDIENCE``), narrowed by ``narrow``."""
    return sql.SQL(AUDIENCE).format(
        org=sql.Literal(org), list_ids=sql.Literal(list_ids), narrow=narrow or sql.SQL("")
    )


async def snapshot_audience(
    conn: Conn,
    org: int,
    message_id: int,
    list_ids: list[int],
    chunk_size: int,
    narrow: sql.Composable | None = None,
) -> int:
    """Insert one queued delivery per distinct audience member (narrowed by ``narrow``,
    from ``audience_filter``, if given); returns how many."""
    query = sql.SQL(SNAPSHOT).format(
        message_id=sql.Literal(message_id),
        org=sql.Literal(org),
        chunk_size=sql.Literal(chunk_size),
        audience=audience(org, list_ids, narrow),
    )
    cur = await conn.execute(query)
    return cur.rowcount


async def mark_sending(conn: Conn, message_id: int, total: int, chunks: int) -> None:
    """The message is planned: sending, with ``total`` recipients in ``chunks`` chunks."""
    await conn.execute(
        "update messages set status = 'sending', started_at = now(), chunks_total = %s"
        " where id = %s",
        [chunks, message_id],
    )
    await conn.execute(
        "update message_stats set total = %s where message_id = %s", [total, message_id]
    )


async def lock_family(conn: Conn, org: int, root: int) -> list[int]:
    """The messages of a send-to-new family: ``root`` and its sends to new members. Their
    plans run one at a time (a lock on the root's row), so each sees the others' deliveries.
    NO KEY UPDATE leaves the root free for a new follow-up's foreign key check."""
    await conn.execute(
        "select 1 from messages where id = %s and organization_id = %s for no key update",
        [root, org],
    )
    cur = await conn.execute(
        "select id from messages where organization_id = %s and send_to_new_of = %s",
        [org, root],
    )
    return [root, *(int(row[0]) for row in await cur.fetchall())]


async def create_chunks(conn: Conn, message_id: int, total: int, chunk_size: int) -> int:
    """One dispatch_chunks row per chunk; returns the number of chunks."""
    chunks = (total + chunk_size - 1) // chunk_size
    await conn.execute(
        "insert into dispatch_chunks (message_id, chunk, recipients)"
        " select %(m)s, c, least(%(size)s, %(total)s - c * %(size)s)"
        " from generate_series(0, %(n)s - 1) c",
        {"m": message_id, "size": chunk_size, "total": total, "n": chunks},
    )
    await conn.execute(
        "update messages set status = 'sending', started_at = now(), chunks_total = %s"
        " where id = %s",
        [chunks, message_id],
    )
    await conn.execute(
        "update message_stats set total = %s where message_id = %s", [total, message_id]
    )
    return chunks


async def claim_chunk(conn: Conn, message_id: int, chunk: int, job_id: int) -> bool:
    """Take the chunk for this job: free, or already ours (a rescued re-run of the job)."""
    cur = await conn.execute(
        "update dispatch_chunks set status = 'running', owner_job = %(job)s,"
        " started_at = now(), updated_at = now()"
        " where message_id = %(m)s and chunk = %(c)s"
        " and (status = 'pending' or (status = 'running' and owner_job = %(job)s))",
        {"m": message_id, "c": chunk, "job": job_id},
    )
    return cur.rowcount == 1


async def release_chunk(conn: Conn, message_id: int, chunk: int, *, done: bool) -> None:
    await conn.execute(
        "update dispatch_chunks set status = %s, owner_job = null, updated_at = now()"
        " where message_id = %s and chunk = %s",
        ["done" if done else "pending", message_id, chunk],
    )


async def pending_chunks(conn: Conn, message_id: int) -> list[int]:
    cur = await conn.execute(
        "select chunk from dispatch_chunks where message_id = %s and status = 'pending'"
        " order by chunk",
        [message_id],
    )
    return [row[0] for row in await cur.fetchall()]


async def unfinished_chunks(conn: Conn, message_id: int) -> int:
    cur = await conn.execute(
        "select count(*) from dispatch_chunks where message_id = %s and status <> 'done'",
        [message_id],
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def message_for_send(
    conn: Conn, message_id: int, chunk: int | None = None
) -> MessageToSend | None:
    """The message as ``chunk`` sends it: an A/B test chunk with its variant's subject."""
    cur = conn.cursor(row_factory=class_row(MessageToSend))
    await cur.execute(
        "select m.id, m.organization_id, m.status,"
        " coalesce(m.ab_test -> 'subjects' ->> c.variant::integer, m.subject) as subject,"
        " m.html, m.text_body, m.from_email, m.from_name, m.reply_to, m.sender,"
        " m.track_opens, m.track_clicks from messages m left join dispatch_chunks c"
        " on c.message_id = m.id and c.chunk = %s where m.id = %s",
        [chunk, message_id],
    )
    return await cur.fetchone()


async def message_status(conn: Conn, message_id: int) -> str | None:
    cur = await conn.execute("select status from messages where id = %s", [message_id])
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def chunk_recipients(conn: Conn, message_id: int, chunk: int) -> list[Recipient]:
    """The chunk's still-queued recipients with their contact, in one query.

    Uses deliveries_chunk_idx (partial on status = 'queued'), contacts' primary key and
    suppressions' primary key: a suppression applies to messages already sending.
    """
    cur = conn.cursor(row_factory=args_row(Recipient))  # columns in field order
    await cur.execute(
        "select d.contact_id, d.attempts, c.email, c.first_name, c.last_name, c.attributes,"
        " c.status, s.reason from deliveries d join contacts c"
        " on c.organization_id = d.organization_id and c.id = d.contact_id"
        " left join suppressions s"
        " on s.organization_id = d.organization_id and s.email = lower(c.email)"
        " where d.message_id = %s and d.chunk = %s and d.status = 'queued'",
        [message_id, chunk],
    )
    return await cur.fetchall()


async def record_outcomes(
    conn: Conn,
    message_id: int,
    chunk: int,
    contact_ids: list[int],
    statuses: list[str],
    errors: list[str | None],
) -> dict[str, int]:
    """Write a batch of outcomes in one statement and roll them into message_stats.

    Only rows still ``queued`` change, so replaying a batch counts nothing twice.
    The chunk bounds the statement's work whatever the planner believes: a message planned
    a moment ago has no statistics yet, and the planner, estimating one row for its id,
    read all of its deliveries for every batch (measured: 1,400 instead of 3,000+ msg/s at
    30,000 recipients, quadratic in the audience).
    ``status`` 'queued' records a temporary failure: attempts go up, the row stays queued.
    """
    cur = await conn.execute(
        "with v as (select * from unnest(%s::bigint[], %s::text[], %s::text[])"
        " as v(contact_id, status, error)),"
        " changed as (update deliveries d set status = v.status,"
        "   attempts = d.attempts + 1, last_error = v.error,"
        "   sent_at = case when v.status = 'sent' then now() end"
        "  from v where d.message_id = %s and d.chunk = %s and d.contact_id = v.contact_id"
        "  and d.status = 'queued' returning d.status, d.variant)"
        " select status, variant, count(*) from changed group by status, variant",
        [contact_ids, statuses, errors, message_id, chunk],
    )
    counts: dict[str, int] = {}
    sent_by_variant: dict[int, int] = {}
    for status, variant, n in await cur.fetchall():
        counts[status] = counts.get(status, 0) + int(n)
        if status == "sent" and variant is not None:
            sent_by_variant[int(variant)] = int(n)
    sent, failed, skipped = counts.get("sent", 0), counts.get("failed", 0), counts.get("skipped", 0)
    if sent or failed or skipped:
        await conn.execute(
            "update message_stats set sent = sent + %(sent)s, failed = failed + %(failed)s,"
            " skipped = skipped + %(skipped)s,"
            " first_sent_at = case when %(sent)s > 0 then coalesce(first_sent_at, now())"
            "   else first_sent_at end,"
            " last_sent_at = case when %(sent)s > 0 then now() else last_sent_at end"
            " where message_id = %(m)s",
            {"sent": sent, "failed": failed, "skipped": skipped, "m": message_id},
        )
    if sent_by_variant:
        # After message_stats, as the tracking writer does: one lock order, no deadlock.
        await conn.execute(
            "update message_variants mv set sent = mv.sent + v.n"
            " from unnest(%s::smallint[], %s::integer[]) as v(variant, n)"
            " where mv.message_id = %s and mv.variant = v.variant",
            [list(sent_by_variant), list(sent_by_variant.values()), message_id],
        )
    return counts


async def cancel_queued(conn: Conn, message_id: int, chunk: int) -> None:
    await conn.execute(
        "update deliveries set status = 'cancelled' where message_id = %s and chunk = %s"
        " and status = 'queued'",
        [message_id, chunk],
    )


async def set_status(conn: Conn, message_id: int, status: str, *, finished: bool = False) -> None:
    """Move a message (locked by the caller) to ``status``; ``finished`` stamps finished_at."""
    await conn.execute(
        "update messages set status = %s,"
        " finished_at = case when %s then now() else finished_at end where id = %s",
        [status, finished, message_id],
    )


async def finish_message(conn: Conn, message_id: int) -> bool:
    """Mark a sending message sent; False if it is not sending (paused, cancelled, done) or
    still open-ended (a journey may append recipients to it)."""
    cur = await conn.execute(
        "update messages set status = 'sent', finished_at = now()"
        " where id = %s and status = 'sending' and not open_ended",
        [message_id],
    )
    return cur.rowcount == 1


# -- open-ended messages (a journey's send step) ------------------------------------------


async def open_message(conn: Conn, message_id: int) -> None:
    """A new draft message becomes open-ended and sending, with no recipients yet."""
    await conn.execute(
        "update messages set status = 'sending', started_at = now(), chunks_total = 0,"
        " open_ended = true where id = %s and status = 'draft'",
        [message_id],
    )


# Chunk numbers come from a sequence, not messages.chunks_total, so that appending takes no
# lock on the message row. Existing deliveries (message, contact) are left as they are.
APPEND = """
with added as (
    insert into deliveries (message_id, contact_id, organization_id, chunk)
    select %(m)s, v.contact_id, %(org)s, v.chunk
    from unnest(%(ids)s::bigint[], %(chunks)s::integer[]) as v(contact_id, chunk)
    on conflict do nothing
    returning chunk
)
insert into dispatch_chunks (message_id, chunk, recipients)
select %(m)s, chunk, count(*) from added group by chunk
returning chunk, recipients
"""


async def append_deliveries(
    conn: Conn, org: int, message_id: int, contact_ids: list[int], chunk_size: int
) -> dict[int, int]:
    """Queue deliveries of an open-ended message in new chunks; returns chunk → recipients."""
    if not contact_ids:
        return {}
    count = (len(contact_ids) + chunk_size - 1) // chunk_size
    cur = await conn.execute(
        "select nextval('open_message_chunks') from generate_series(1, %s)", [count]
    )
    numbers = [int(r[0]) for r in await cur.fetchall()]
    chunks = [numbers[i // chunk_size] for i in range(len(contact_ids))]
    cur = await conn.execute(
        APPEND, {"m": message_id, "org": org, "ids": contact_ids, "chunks": chunks}
    )
    return {int(r[0]): int(r[1]) for r in await cur.fetchall()}


async def add_to_total(conn: Conn, message_id: int, n: int) -> None:
    """Count appended recipients in the progress rollup (a caller's last write: it locks
    the row that every chunk's outcomes also update)."""
    await conn.execute(
        "update message_stats set total = total + %s where message_id = %s", [n, message_id]
    )


async def close_message(conn: Conn, message_id: int) -> None:
    await conn.execute("update messages set open_ended = false where id = %s", [message_id])


async def lock_stats(conn: Conn, message_id: int) -> None:
    """Hold the message's rollup row: "is any chunk left?" answered once at a time."""
    await conn.execute("select 1 from message_stats where message_id = %s for update", [message_id])


async def count_bounces(conn: Conn, message_id: int, n: int) -> None:
    await conn.execute(
        "update message_stats set bounced = bounced + %s where message_id = %s", [n, message_id]
    )


async def final_stats(conn: Conn, message_id: int) -> FinalStats:
    """What message.completed announces: the message's final figures."""
    cur = conn.cursor(row_factory=class_row(FinalStats))
    await cur.execute(
        "select m.organization_id, m.id as message_id, m.campaign_id, s.total, s.sent,"
        " s.failed, s.skipped, s.bounced from messages m"
        " join message_stats s on s.message_id = m.id where m.id = %s",
        [message_id],
    )
    row = await cur.fetchone()
    assert row is not None
    return row
