"""Recording a bounce or complaint that arrived after the send, once per delivery.

A hard bounce marks the contact ``bounced`` and suppresses the address; a permanent
failure that is not about the address counts as a soft bounce (``suppressions``); a
complaint marks the contact ``complained`` (no campaign mail reaches it), suppresses the
address and counts on the message. The delivery is stamped in the same transaction, so a
report received twice (servers retry) changes nothing the second time.
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection

from surge.bounces.reports import Report
from surge.contacts import service as contacts
from surge.observability.metrics import bounce_report
from surge.suppressions import service as suppressions

Conn = AsyncConnection[Any]
log = logging.getLogger(__name__)

STAMP = {
    "hard_bounce": "bounced_at",
    "soft_bounce": "bounced_at",
    "complaint": "complained_at",
}

# The delivery, stamped once; returns what the rest needs (organisation, address).
_STAMP = """
update deliveries d set {column} = now()
from contacts c
where d.message_id = %(message)s and d.contact_id = %(contact)s and d.{column} is null
  and c.organization_id = d.organization_id and c.id = d.contact_id
returning d.organization_id, c.email
"""


async def record(
    conn: Conn, report: Report, delivery: tuple[int, int], soft_threshold: int
) -> bool:
    """Apply ``report`` to the delivery (message id, contact id); False if nothing changed
    (unknown delivery, already recorded, or only a delay)."""
    column = STAMP.get(report.kind)
    if column is None:
        return False
    message_id, contact_id = delivery
    async with conn.transaction():
        cur = await conn.execute(
            _STAMP.format(column=column), {"message": message_id, "contact": contact_id}
        )
        row = await cur.fetchone()
        if row is None:
            return False
        org, address = int(row[0]), str(row[1])
        detail = f"{report.detail} (message {message_id})"[:500]
        if report.kind == "hard_bounce":
            await contacts.set_status(conn, org, [contact_id], "bounced")
            await suppressions.suppress(conn, org, [address], "hard_bounce", detail)
            await _count(conn, message_id, "bounced")
        elif report.kind == "soft_bounce":
            await suppressions.soft_bounced(conn, org, [address], soft_threshold, detail)
            await _count(conn, message_id, "bounced")
        else:
            await contacts.set_status(conn, org, [contact_id], "complained")
            await suppressions.suppress(conn, org, [address], "complaint", detail)
            await _count(conn, message_id, "complained")
    log.info(
        "report recorded",
        extra={"kind": report.kind, "message_id": message_id, "contact_id": contact_id},
    )
    bounce_report(report.kind)
    return True


async def _count(conn: Conn, message_id: int, column: str) -> None:
    assert column in ("bounced", "complained")
    await conn.execute(
        f"update message_stats set {column} = {column} + 1 where message_id = %s", [message_id]
    )
