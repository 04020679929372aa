"""Dispatch: the three tiers of jobs that send one message to its whole audience.

1. ``dispatch.plan`` snapshots the audience into ``deliveries`` with one INSERT … SELECT
   and enqueues one ``dispatch.send_chunk`` job per chunk (COPY), in one transaction.
2. ``dispatch.send_chunk`` owns its chunk (``dispatch_chunks``), sends to the recipients
   still ``queued`` and records outcomes in batches; the last chunk to finish enqueues
3. ``dispatch.finalise``, which marks the message sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from surge.contacts import service as contacts
from surge.dispatch import store
from surge.errors import NotFound
from surge.jobs import NewJob, enqueue, enqueue_many
from surge.tracking.tokens import Hit
from surge.webhooks.service import emit

Conn = AsyncConnection[Any]
QUEUE = "bulk"


async def schedule(conn: Conn, org: int, message_id: int, send_at: datetime | None) -> None:
    """Enqueue the plan job to run at ``send_at`` (now if None), in the caller's transaction."""
    await enqueue(
        conn,
        "dispatch.plan",
        {"message_id": message_id},
        queue=QUEUE,
        run_at=send_at,
        organization_id=org,
    )


async def enqueue_chunks(conn: Conn, org: int, message_id: int, chunks: list[int]) -> int:
    """One send_chunk job per chunk, with COPY."""
    return await enqueue_many(
        conn,
        (
            NewJob(
                "dispatch.send_chunk",
                {"message_id": message_id, "chunk": chunk},
                queue=QUEUE,
                organization_id=org,
            )
            for chunk in chunks
        ),
    )


async def resume(conn: Conn, org: int, message_id: int) -> None:
    """Re-enqueue every chunk a pause left pending (jobs for running chunks are still alive)."""
    await enqueue_chunks(conn, org, message_id, await store.pending_chunks(conn, message_id))


async def record_hits(conn: Conn, hits: Sequence[Hit]) -> None:
    """Count a batch of open and click hits (first per delivery) in message_stats."""
    for kind in ("open", "click"):
        batch = [h for h in hits if h.kind == kind]
        if batch:
            await store.record_hits(
                conn, kind, [h.message_id for h in batch], [h.contact_id for h in batch]
            )


async def unsubscribe(conn: Conn, message_id: int, contact_id: int) -> None:
    """Unsubscribe the recipient of a delivery; counted once on the message that caused it."""
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
                {"contact_id": contact_id, "message_id": message_id, "via": "unsubscribe_link"},
            )


async def retry_chunk(
    conn: Conn, org: int | None, message_id: int, chunk: int, delay: float
) -> None:
    """A later send_chunk job for the chunk's recipients that failed temporarily."""
    await enqueue(
        conn,
        "dispatch.send_chunk",
        {"message_id": message_id, "chunk": chunk},
        queue=QUEUE,
        run_at=datetime.now(UTC) + timedelta(seconds=delay),
        organization_id=org,
    )
