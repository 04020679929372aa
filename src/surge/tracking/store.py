"""SQL of engagement: first opens and clicks of deliveries, unsubscribes, and their counts.

Tracking owns the ``opened_at`` and ``clicked_at`` columns of ``deliveries`` and the
``opened``, ``clicked`` and ``unsubscribed`` counters of ``message_stats``; dispatch owns
the rest of both tables.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

Conn = AsyncConnection[Any]

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
