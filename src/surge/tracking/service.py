"""Engagement: counting the opens and clicks recipients make, and their unsubscribes.

Hits arrive in batches from the tracking endpoints' group-commit writer; the first open and
the first click of a delivery count, later ones change nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from surge.contacts import service as contacts
from surge.errors import NotFound
from surge.tracking import store
from surge.tracking.tokens import Hit
from surge.webhooks.service import emit

Conn = AsyncConnection[Any]


async def record_hits(conn: Conn, hits: Sequence[Hit]) -> None:
    """Count a batch of open and click hits (first per delivery) in message_stats."""
    for kind in ("open", "click"):
        for machine in (False, True):
            batch = [h for h in hits if h.kind == kind and h.machine is machine]
            if batch:
                ids = [h.message_id for h in batch], [h.contact_id for h in batch]
                await store.record_hits(conn, kind, machine, *ids)


async def unsubscribe(
    conn: Conn, message_id: int, contact_id: int, via: str = "unsubscribe_link"
) -> None:
    """Unsubscribe the recipient of a delivery; counted once on the message that caused it.

    ``via`` says how (the link's page or one-click POST, or a mail to the mailto: address).
    """
    async with conn.transaction():
        org = await store.delivery_org(conn, message_id, contact_id)
        if org is None:
            raise NotFound("not found")
        changed = await contacts.set_status(conn, org, [contact_id], "unsubscribed")
        if changed:
            await store.count_unsubscribe(conn, message_id)
            await emit(
                conn,
                org,
                "contact.unsubscribed",
                {"contact_id": contact_id, "message_id": message_id, "via": via},
            )
