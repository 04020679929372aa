"""SQL of engagement: first opens and clicks of deliveries, unsubscribes, and their counts.

Tracking owns the ``opened_at`` and ``clicked_at`` columns of ``deliveries`` and the
``opened``, ``clicked`` and ``unsubscribed`` counters of ``message_stats`` (and the
``opened`` and ``clicked`` of ``message_variants``); dispatch owns the rest of them.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

Conn = AsyncConnection[Any]

# The first open or click of a delivery counts; later ones change nothing. Machines'
# (Apple's privacy proxy, link scanners) go to columns of their own. People's also count
# per A/B variant (message_variants) for the deliveries of a test; that update, unread by
# the main statement, runs after it: message_stats, then message_variants, the order the
# dispatcher's outcome writes take too.
_HIT = """
with v as (select * from unnest(%s::bigint[], %s::bigint[]) as v(m, c)),
hit as (update deliveries d set {column} = now() from v
        where d.message_id = v.m and d.contact_id = v.c and d.{column} is null
        returning d.message_id, d.variant){per_variant}
update message_stats s set {counter} = {counter} + h.n
from (select message_id, count(*) as n from hit group by message_id) h
where s.message_id = h.message_id
"""
_PER_VARIANT = """,
by_variant as (update message_variants mv set {counter} = mv.{counter} + h.n
        from (select message_id, variant, count(*) as n from hit
              where variant is not null group by message_id, variant) h
        where mv.message_id = h.message_id and mv.variant = h.variant)"""


def _hit(column: str, counter: str, per_variant: bool) -> str:
    by_variant = _PER_VARIANT.format(counter=counter) if per_variant else ""
    return _HIT.format(column=column, counter=counter, per_variant=by_variant)


HITS = {
    ("open", False): _hit("opened_at", "opened", per_variant=True),
    ("click", False): _hit("clicked_at", "clicked", per_variant=True),
    ("open", True): _hit("machine_opened_at", "machine_opened", per_variant=False),
    ("click", True): _hit("machine_clicked_at", "machine_clicked", per_variant=False),
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
