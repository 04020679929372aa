"""The dispatch tiers as jobs on the ``bulk`` queue: plan → send_chunk × N → finalise."""

from __future__ import annotations

import logging
from dataclasses import asdict

from surge.dispatch import sends_store, service, store
from surge.dispatch.sending import send_chunk_recipients
from surge.jobs import JobContext, enqueue, task
from surge.segments import service as segments
from surge.webhooks.service import emit

log = logging.getLogger(__name__)


@task("dispatch.plan", queue="bulk", max_attempts=10)
async def plan(ctx: JobContext) -> None:
    """Tier 1: snapshot the audience and fan out one send_chunk job per chunk, atomically."""
    message_id = int(ctx.job.args["message_id"])
    size = ctx.settings.dispatch_chunk_size
    async with ctx.pool.connection() as conn, conn.transaction():
        message = await store.lock_message(conn, message_id)
        # Paused, cancelled, or already planned by an earlier (duplicate) plan job.
        if message is None or message.status != "scheduled" or message.started_at:
            await ctx.complete_in(conn)
            return
        org = message.organization_id
        segment = None
        if message.segment_id is not None:
            segment = await segments.predicate(conn, org, message.segment_id)
        family = None
        if message.send_to_new_of is not None:
            family = await store.lock_family(conn, org, message.send_to_new_of)
        narrow = store.audience_filter(org, segment, resend_of=message.resend_of, family=family)
        if message.ab_test is not None or message.send_window is not None:
            total = await service.plan_shaped(conn, message, size, narrow)
        else:
            total = await store.snapshot_audience(
                conn, org, message_id, message.list_ids, size, narrow
            )
            chunks = await store.create_chunks(conn, message_id, total, size)
            if chunks == 0:
                await store.finish_message(conn, message_id)
            else:
                await service.enqueue_chunks(conn, org, message_id, list(range(chunks)))
        await ctx.complete_in(conn)
    log.info("message planned", extra={"message_id": message_id, "recipients": total})


@task("dispatch.send_chunk", queue="bulk", max_attempts=25)
async def send_chunk(ctx: JobContext) -> None:
    """Tier 2: send one chunk to its recipients still queued; see dispatch/sending.py."""
    message_id = int(ctx.job.args["message_id"])
    chunk = int(ctx.job.args["chunk"])
    async with ctx.pool.connection() as conn:
        if not await store.claim_chunk(conn, message_id, chunk, ctx.job.id):
            return  # done already, or another job owns it
        gate = await sends_store.chunk_gate(conn, message_id, chunk)
    status = gate.status if gate is not None else None
    if status == "paused":
        async with ctx.pool.connection() as conn:
            await store.release_chunk(conn, message_id, chunk, done=False)
        return
    if status == "cancelled":
        async with ctx.pool.connection() as conn, conn.transaction():
            await store.cancel_queued(conn, message_id, chunk)
            await store.release_chunk(conn, message_id, chunk, done=True)
        return
    org = ctx.job.organization_id
    if gate is not None and gate.opens_at is not None:
        # Its zone's clock is outside the send window (a retry, a resume, a late start):
        # the chunk waits for the next opening. A chunk that started inside finishes.
        async with ctx.pool.connection() as conn, conn.transaction():
            await service.defer_chunk(conn, org, message_id, chunk, gate.opens_at)
        return
    result = await send_chunk_recipients(ctx, message_id, chunk)
    async with ctx.pool.connection() as conn, conn.transaction():
        if result.stopped_by == "cancelled":
            await store.cancel_queued(conn, message_id, chunk)
            await store.release_chunk(conn, message_id, chunk, done=True)
        elif result.stopped_by == "paused":
            # Left pending: resume re-enqueues it, and only its queued rows are sent.
            await store.release_chunk(conn, message_id, chunk, done=False)
        elif result.retry_after is not None:
            # Temporary failures left: the chunk goes back to pending and a later job retries
            # only those recipients (sent rows are never sent again).
            await store.release_chunk(conn, message_id, chunk, done=False)
            await service.retry_chunk(conn, org, message_id, chunk, max(result.retry_after, 1.0))
        else:
            await store.release_chunk(conn, message_id, chunk, done=True)
            await _finalise_if_last(conn, org, message_id)


async def _finalise_if_last(conn: store.Conn, org: int | None, message_id: int) -> None:
    # Serialise the "am I last?" check on the message_stats row: a concurrent chunk's count
    # then runs after our commit and sees our chunk done, so exactly one of us enqueues.
    await conn.execute("select 1 from message_stats where message_id = %s for update", [message_id])
    if await store.unfinished_chunks(conn, message_id) == 0:
        await enqueue(
            conn,
            "dispatch.finalise",
            {"message_id": message_id},
            queue="bulk",
            organization_id=org,
            unique_key=f"dispatch.finalise:{message_id}",
        )


@task("dispatch.pick_winner", queue="bulk", max_attempts=10)
async def pick_winner(ctx: JobContext) -> None:
    """An A/B test's wait is over: record the winner and send the remainder with its
    subject. One transaction, completed in it: a crash re-runs it whole, a re-run of a
    decided test changes nothing."""
    message_id = int(ctx.job.args["message_id"])
    async with ctx.pool.connection() as conn, conn.transaction():
        winner = await service.decide(conn, message_id)
        await ctx.complete_in(conn)
    if winner is not None:
        log.info("a/b winner picked", extra={"message_id": message_id, "variant": winner})


@task("dispatch.finalise", queue="bulk", max_attempts=10)
async def finalise(ctx: JobContext) -> None:
    """Tier 3: the last chunk is done; the message is sent."""
    message_id = int(ctx.job.args["message_id"])
    async with ctx.pool.connection() as conn, conn.transaction():
        if await store.finish_message(conn, message_id):
            stats = await store.final_stats(conn, message_id)
            await emit(conn, stats.organization_id, "message.completed", asdict(stats))
            log.info("message sent", extra={"message_id": message_id})
        await ctx.complete_in(conn)
