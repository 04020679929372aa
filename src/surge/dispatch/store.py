"""SQL of the dispatcher: audience snapshot, chunk ownership, outcomes and rollups."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

Conn = AsyncConnection[Any]

# The audience snapshot reads list_members and contacts directly: it must be one
# INSERT … SELECT (a million rows never pass through Python), so it cannot go through the
# contacts service. Uses list_members' primary key (organization_id, list_id, contact_id).
SNAPSHOT = """
insert into deliveries (message_id, contact_id, organization_id, chunk)
select %(message_id)s, contact_id, %(org)s,
       ((row_number() over (order by contact_id)) - 1) / %(chunk_size)s
from (select distinct contact_id from list_members
      where organization_id = %(org)s and list_id = any(%(list_ids)s)) audience
on conflict do nothing
"""


async def lock_message(conn: Conn, message_id: int) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "select id, organization_id, status, started_at, list_ids, send_at"
        " from messages where id = %s for update",
        [message_id],
    )
    return await cur.fetchone()


async def snapshot_audience(
    conn: Conn, org: int, message_id: int, list_ids: list[int], chunk_size: int
) -> int:
    """Insert one queued delivery per distinct audience member; returns how many."""
    cur = await conn.execute(
        SNAPSHOT,
        {"message_id": message_id, "org": org, "list_ids": list_ids, "chunk_size": chunk_size},
    )
    return cur.rowcount


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


async def message_for_send(conn: Conn, message_id: int) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "select id, organization_id, status, subject, html, text_body, from_email, from_name,"
        " reply_to, sender, track_opens, track_clicks from messages where id = %s",
        [message_id],
    )
    return await cur.fetchone()


async def message_status(conn: Conn, message_id: int) -> str | None:
    cur = await conn.execute("select status from messages where id = %s", [message_id])
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def chunk_recipients(conn: Conn, message_id: int, chunk: int) -> list[tuple[Any, ...]]:
    """The chunk's still-queued recipients with their contact, in one query.

    Uses deliveries_chunk_idx (partial on status = 'queued') and contacts' primary key.
    """
    cur = await conn.execute(
        "select d.contact_id, d.attempts, c.email, c.first_name, c.last_name, c.attributes,"
        " c.status from deliveries d join contacts c"
        " on c.organization_id = d.organization_id and c.id = d.contact_id"
        " where d.message_id = %s and d.chunk = %s and d.status = 'queued'",
        [message_id, chunk],
    )
    return await cur.fetchall()


async def record_outcomes(
    conn: Conn,
    message_id: int,
    contact_ids: list[int],
    statuses: list[str],
    errors: list[str | None],
) -> dict[str, int]:
    """Write a batch of outcomes in one statement and roll them into message_stats.

    Only rows still ``queued`` change, so replaying a batch counts nothing twice.
    ``status`` 'queued' records a temporary failure: attempts go up, the row stays queued.
    """
    cur = await conn.execute(
        "with v as (select * from unnest(%s::bigint[], %s::text[], %s::text[])"
        " as v(contact_id, status, error)),"
        " changed as (update deliveries d set status = v.status,"
        "   attempts = d.attempts + 1, last_error = v.error,"
        "   sent_at = case when v.status = 'sent' then now() end"
        "  from v where d.message_id = %s and d.contact_id = v.contact_id"
        "  and d.status = 'queued' returning d.status)"
        " select status, count(*) from changed group by status",
        [contact_ids, statuses, errors, message_id],
    )
    counts = {row[0]: int(row[1]) for row in await cur.fetchall()}
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
    return counts


async def cancel_queued(conn: Conn, message_id: int, chunk: int) -> None:
    await conn.execute(
        "update deliveries set status = 'cancelled' where message_id = %s and chunk = %s"
        " and status = 'queued'",
        [message_id, chunk],
    )


async def finish_message(conn: Conn, message_id: int) -> bool:
    """Mark a sending message sent; False if it is not sending (paused, cancelled, done)."""
    cur = await conn.execute(
        "update messages set status = 'sent', finished_at = now()"
        " where id = %s and status = 'sending'",
        [message_id],
    )
    return cur.rowcount == 1


HITS = {
    # The first open or click of a delivery counts; later ones change nothing.
    "open": """
with v as (select * from unnest(%s::bigint[], %s::bigint[]) as v(m, c)),
hit as (update deliveries d set opened_at = now() from v
        where d.message_id = v.m and d.contact_id = v.c and d.opened_at is null
        returning d.message_id)
update message_stats s set opened = opened + h.n
from (select message_id, count(*) as n from hit group by message_id) h
where s.message_id = h.message_id
""",
    "click": """
with v as (select * from unnest(%s::bigint[], %s::bigint[]) as v(m, c)),
hit as (update deliveries d set clicked_at = now() from v
        where d.message_id = v.m and d.contact_id = v.c and d.clicked_at is null
        returning d.message_id)
update message_stats s set clicked = clicked + h.n
from (select message_id, count(*) as n from hit group by message_id) h
where s.message_id = h.message_id
""",
}


async def record_hits(
    conn: Conn, kind: str, message_ids: list[int], contact_ids: list[int]
) -> None:
    """Count first opens or clicks of many deliveries with one statement."""
    await conn.execute(HITS[kind], [message_ids, contact_ids])


async def delivery_org(conn: Conn, message_id: int, contact_id: int) -> int | None:
    """The organisation of a delivery, if it exists (unsubscribe links check this)."""
    cur = await conn.execute(
        "select organization_id from deliveries where message_id = %s and contact_id = %s",
        [message_id, contact_id],
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def count_unsubscribe(conn: Conn, message_id: int) -> None:
    await conn.execute(
        "update message_stats set unsubscribed = unsubscribed + 1 where message_id = %s",
        [message_id],
    )


async def count_bounces(conn: Conn, message_id: int, n: int) -> None:
    await conn.execute(
        "update message_stats set bounced = bounced + %s where message_id = %s", [n, message_id]
    )


async def final_stats(conn: Conn, message_id: int) -> dict[str, Any]:
    """What message.completed announces: the message's final figures."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "select m.organization_id, m.id as message_id, m.campaign_id, s.total, s.sent,"
        " s.failed, s.skipped, s.bounced from messages m"
        " join message_stats s on s.message_id = m.id where m.id = %s",
        [message_id],
    )
    row = await cur.fetchone()
    assert row is not None
    return row
