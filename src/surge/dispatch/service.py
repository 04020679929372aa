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
