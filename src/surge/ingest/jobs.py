"""Periodic ingest jobs on the ``default`` queue: the consumers, and partition upkeep.

Each consumer runs every second and keeps going while full batches come; its position row
lock makes a second run of the same consumer (a slow run overlapping the next slot) a no-op.
"""

from __future__ import annotations

import time

from surge.ingest import consumers, store
from surge.jobs import JobContext, task

#: Daily partitions created ahead of today.
PARTITION_DAYS_AHEAD = 2
#: messageIds deleted per statement (one short transaction each), and seconds one run
#: keeps deleting before it leaves the rest to the next.
PRUNE_BATCH = 10_000
PRUNE_BUDGET = 60.0


@task("ingest.event_counts", queue="default", every=1, max_attempts=3)
async def event_counts(ctx: JobContext) -> None:
    await consumers.run(ctx.pool, consumers.EVENT_COUNTS)


@task("ingest.webhooks", queue="default", every=1, max_attempts=3)
async def webhooks(ctx: JobContext) -> None:
    await consumers.run(ctx.pool, consumers.WEBHOOKS)


@task("ingest.profiles", queue="default", every=1, max_attempts=3)
async def profiles(ctx: JobContext) -> None:
    await consumers.run(ctx.pool, consumers.PROFILES)


@task("ingest.partitions", queue="default", every=3600, max_attempts=5)
async def partitions(ctx: JobContext) -> None:
    """Create the next days' partitions of ``events`` and drop those past retention."""
    async with ctx.pool.connection() as conn, conn.transaction():
        # Partition DDL locks the events table briefly; never queue behind a long lock.
        await conn.execute("set local lock_timeout = '5s'")
        await store.maintain_partitions(
            conn, PARTITION_DAYS_AHEAD, ctx.settings.events_retention_days
        )


@task("ingest.message_ids", queue="default", every=300, max_attempts=3)
async def message_ids(ctx: JobContext) -> None:
    """Forget messageIds accepted longer ago than the de-duplication window.

    The claim itself re-accepts a key past the window, so this only bounds the table's size;
    small batches keep each transaction and its lock footprint short.
    """
    window = ctx.settings.ingest_dedupe_window_seconds
    deadline = time.monotonic() + PRUNE_BUDGET
    while time.monotonic() < deadline:
        async with ctx.pool.connection() as conn:
            deleted = await store.prune_message_ids(conn, window, PRUNE_BATCH)
        if deleted < PRUNE_BATCH:
            return
