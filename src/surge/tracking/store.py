"""SQL of engagement: first opens and clicks of deliveries, unsubscribes, and their counts.

Tracking owns the ``opened_at`` and ``clicked_at`` columns of ``deliveries`` and the
``opened``, ``clicked`` and ``unsubscribed`` counters of ``message_stats``; dispatch owns
the rest of both tables.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

Conn = AsyncConnection[Any]

# The first open or click of a delivery counts; later ones change nothing. Machines'
# (Apple's privacy proxy, link scanners) go to columns of their own.
_HIT = """
with v as (select * from unnest(%s::bigint[], %s::bigint[]) as v(m, c)),
hit as (update deliveries d set {column} = now() from v
        where d.message_id = v.m and d.contact_id = v.c and d.{column} is null
        returning d.message_id)
update message_stats s set {counter} = {counter} + h.n
from (select message_id, count(*) as n from hit group by message_id) h
where s.message_id = h.message_id
"""
HITS = {
    ("open", False): _HIT.format(column="opened_at", counter="opened"),
    ("click", False): _HIT.format(column="clicked_at", counter="clicked"),
    ("open", True): _HIT.format(column="machine_opened_at", counter="machine_opened"),
    ("click", True): _HIT.format(column="machine_clicked_at", counter="machine_clicked"),
}


async def record_hits(
    conn: Conn, kind: str, machine: bool, message_ids: list[int], contact_ids: list[int]
) -> None:
    """Count first opens or clicks (by people, or by machines) of many deliveries at once."""
    await conn.execute(HITS[kind, machine], [message_ids, contact_ids])


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
