"""SQL of webhook replays (``replay.py``). Every query a tenant can reach filters by
organization_id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

Conn = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Original:
    """The delivery to replay, and whether its endpoint is enabled."""

    id: int
    endpoint_id: int
    event_id: int
    status: str
    enabled: bool


# Locked, so that two replays of one delivery cannot both pass the "none pending" check.
ORIGINAL = """
select d.id, d.endpoint_id, d.event_id, d.status, ep.enabled
from webhook_deliveries d join webhook_endpoints ep on ep.id = d.endpoint_id
where d.organization_id = %s and d.endpoint_id = %s and d.id = %s
for no key update of d
"""

# A delivery of the same event to the endpoint still being tried (webhook_deliveries_event_idx).
PENDING = """
select id from webhook_deliveries
where event_id = %s and endpoint_id = %s and status = 'pending'
limit 1
"""

INSERT = """
insert into webhook_deliveries (organization_id, endpoint_id, event_id, next_attempt_at)
values (%s, %s, %s, now())
returning id
"""


async def lock_original(
    conn: Conn, org: int, endpoint_id: int, delivery_id: int
) -> Original | None:
    cur = conn.cursor(row_factory=class_row(Original))
    await cur.execute(ORIGINAL, [org, endpoint_id, delivery_id])
    return await cur.fetchone()


async def pending_of(conn: Conn, event_id: int, endpoint_id: int) -> int | None:
    row = await (await conn.execute(PENDING, [event_id, endpoint_id])).fetchone()
    return None if row is None else int(row[0])


async def insert_delivery(conn: Conn, org: int, endpoint_id: int, event_id: int) -> int:
    row = await (await conn.execute(INSERT, [org, endpoint_id, event_id])).fetchone()
    assert row is not None
    return int(row[0])
