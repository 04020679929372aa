"""Dispatch: the three tiers of jobs that send one message to its whole audience.

1. ``dispatch.plan`` snapshots the audience into ``deliveries`` with one INSERT … SELECT
   and enqueues one ``dispatch.send_chunk`` job per chunk (COPY), in one transaction.
2. ``dispatch.send_chunk`` owns its chunk (``dispatch_chunks``), sends to the recipients
   still ``queued`` and records outcomes in batches; the last chunk to finish enqueues
3. ``dispatch.finalise``, which marks the message sent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from surge.dispatch import store
from surge.errors import Conflict, NotFound
from surge.jobs import NewJob, enqueue, enqueue_many

Conn = AsyncConnection[Any]
QUEUE = "bulk"

#: What staff may do to a message: action → (allowed from, to). Besides these, only the
#: tiers move a message: ``plan`` scheduled → sending, ``finalise`` sending → sent.
TRANSITIONS = {
    "pause": ({"scheduled", "sending"}, "paused"),
    "resume": ({"paused"}, "sending"),
    "cancel": ({"draft", "scheduled", "sending", "paused"}, "cancelled"),
}


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


async def act(conn: Conn, org: int, message_id: int, action: str) -> None:
    """Pause, resume or cancel a message of ``org``, in the caller's transaction.

    Takes effect at the next chunk boundary: running chunks finish the recipient they are
    on and stop. A message in a state the action does not apply to is a Conflict.
    """
    allowed, target = TRANSITIONS[action]
    message = await store.lock_message(conn, message_id)
    if message is None or message.organization_id != org:
        raise NotFound(f"message {message_id} not found")
    if message.status not in allowed:
        raise Conflict(f"cannot {action} a message that is {message.status}")
    if action == "resume" and message.started_at is None:
        # Paused before planning: plan it afresh (a plan job still waiting is harmless:
        # whichever runs second finds the message already planned and stops).
        await store.set_status(conn, message_id, "scheduled")
        await schedule(conn, org, message_id, message.send_at)
        return
    await store.set_status(conn, message_id, target, finished=target == "cancelled")
    if action == "resume":
        await resume(conn, org, message_id)


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


# -- open-ended messages: a journey's send step appends recipients as they reach it --------


async def open_message(conn: Conn, message_id: int) -> None:
    """Make a new draft message open-ended: sending, with recipients appended by ``append``
    and never finalised (marked sent) until ``close_message``."""
    await store.open_message(conn, message_id)


async def append(
    conn: Conn, org: int, message_id: int, contact_ids: list[int], chunk_size: int
) -> int:
    """Queue ``contact_ids`` (those not yet recipients) in new chunks of an open-ended
    message and enqueue their send_chunk jobs, in the caller's transaction; returns how many
    were queued. Count them with ``add_to_total`` as the transaction's last write."""
    chunks = await store.append_deliveries(conn, org, message_id, contact_ids, chunk_size)
    if chunks:
        await enqueue_chunks(conn, org, message_id, sorted(chunks))
    return sum(chunks.values())


async def add_to_total(conn: Conn, message_id: int, n: int) -> None:
    """Add ``n`` appended recipients to the message's progress (message_stats.total)."""
    if n:
        await store.add_to_total(conn, message_id, n)


async def close_message(conn: Conn, org: int, message_id: int) -> None:
    """No more recipients: the message is marked sent once its last chunk is done (now, if
    none is left), as any other message."""
    await store.close_message(conn, message_id)
    # The same serialisation as send_chunk's last-chunk check: exactly one finalise.
    await store.lock_stats(conn, message_id)
    if await store.unfinished_chunks(conn, message_id) == 0:
        await enqueue(
            conn,
            "dispatch.finalise",
            {"message_id": message_id},
            queue=QUEUE,
            organization_id=org,
            unique_key=f"dispatch.finalise:{message_id}",
        )
