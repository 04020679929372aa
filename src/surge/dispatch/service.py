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
from fractions import Fraction
from typing import Any

from psycopg import AsyncConnection, sql

from surge.dispatch import sends_store, store, windows
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


# -- sends: A/B subject tests and send windows (docs/dispatch.md, "Sends") ------------------


def window_of(stored: dict[str, Any]) -> sends_store.Window:
    """A message's send window as stored (checked at creation: campaigns/service.py)."""
    return sends_store.Window(
        windows.parse_clock("send_window.start", stored["start"]),
        windows.parse_clock("send_window.end", stored["end"]),
        str(stored["timezone_attribute"]),
        str(stored["default_timezone"]),
    )


async def known_timezone(conn: Conn, name: str) -> str | None:
    """The IANA zone called ``name`` (any case) as PostgreSQL spells it, or None."""
    return await sends_store.known_timezone(conn, name)


async def plan_shaped(
    conn: Conn, message: store.MessageToPlan, chunk_size: int, narrow: sql.Composable
) -> int:
    """Plan a message with an A/B test or a send window, in the caller's transaction.

    One statement snapshots the audience into chunks of one variant or one time zone. Test
    and windowed chunks get their send_chunk job (a windowed one at its zone's opening);
    the A/B remainder is held, and the winner's pick is scheduled ``wait_minutes`` from now.
    Returns the number of recipients.
    """
    org, message_id = message.organization_id, message.id
    ab = window = None
    if message.ab_test is not None:
        ab = sends_store.AbSplit(
            len(message.ab_test["subjects"]), int(message.ab_test["test_percent"])
        )
    if message.send_window is not None:
        window = window_of(message.send_window)
    chunks = await sends_store.snapshot_shaped(
        conn, org, message_id, message.list_ids, chunk_size, narrow, ab=ab, window=window
    )
    total = sum(c.recipients for c in chunks)
    await store.mark_sending(conn, message_id, total, len(chunks))
    if ab is not None:
        per_variant = [0] * ab.variants
        for c in chunks:
            if c.variant is not None:
                per_variant[c.variant] += c.recipients
        await sends_store.set_variant_recipients(conn, org, message_id, per_variant)
    if not chunks:
        await store.finish_message(conn, message_id)
        return 0
    await enqueue_many(
        conn,
        (
            NewJob(
                "dispatch.send_chunk",
                {"message_id": message_id, "chunk": c.chunk},
                queue=QUEUE,
                run_at=c.not_before,
                organization_id=org,
            )
            for c in chunks
            if c.status == "pending"
        ),
    )
    if message.ab_test is not None:
        wait = int(message.ab_test["wait_minutes"])
        decides_at = await sends_store.schedule_decision(conn, message_id, wait)
        await enqueue(
            conn,
            "dispatch.pick_winner",
            {"message_id": message_id},
            queue=QUEUE,
            run_at=decides_at,
            organization_id=org,
            unique_key=f"dispatch.pick_winner:{message_id}",
        )
    return total


def pick(metric: str, variants: int, figures: Sequence[sends_store.VariantFigures]) -> int:
    """The winning variant: the highest rate of people who opened (or clicked, by
    ``metric``) among its sent deliveries; a variant with none sent rates 0; ties go to
    the first variant. Rates are compared exactly (fractions), not as floats."""
    rates = [Fraction(0)] * variants
    for f in figures:
        hits = f.clicked if metric == "clicks" else f.opened
        if f.sent and 0 <= f.variant < variants:
            rates[f.variant] = Fraction(hits, f.sent)
    best = max(rates)
    return rates.index(best)


async def decide(conn: Conn, message_id: int) -> int | None:
    """Pick and record an A/B test's winner and release the held-back remainder to go with
    its subject, in the caller's transaction; returns the winner, or None if there is
    nothing to decide (no test, or decided already: a re-run changes nothing).

    Paused: the remainder's chunks wait as pending, for resume. Cancelled: the winner is
    still recorded, and the remainder is cancelled.
    """
    message = await store.lock_message(conn, message_id)
    if message is None or message.ab_test is None or message.ab_winner is not None:
        return None
    figures = await sends_store.variant_figures(conn, message_id)
    variants = len(message.ab_test["subjects"])
    winner = pick(str(message.ab_test["metric"]), variants, figures)
    await sends_store.set_winner(conn, message_id, winner)
    if message.status == "cancelled":
        await sends_store.cancel_held(conn, message_id)
        return winner
    chunks = await sends_store.release_held(conn, message_id)
    if chunks and message.status == "sending":
        await enqueue_chunks(conn, message.organization_id, message_id, chunks)
    return winner


async def defer_chunk(
    conn: Conn, org: int | None, message_id: int, chunk: int, opens_at: datetime
) -> None:
    """Outside its send window: the chunk waits, pending, for a job at ``opens_at``."""
    await sends_store.defer_chunk(conn, message_id, chunk, opens_at)
    await enqueue(
        conn,
        "dispatch.send_chunk",
        {"message_id": message_id, "chunk": chunk},
        queue=QUEUE,
        run_at=opens_at,
        organization_id=org,
        unique_key=f"dispatch.send_chunk:{message_id}:{chunk}:{int(opens_at.timestamp())}",
    )


async def window_schedule(conn: Conn, message_id: int) -> sends_store.WindowSchedule:
    """When a windowed message's unfinished chunks open: the next and the last opening."""
    return await sends_store.window_schedule(conn, message_id)
