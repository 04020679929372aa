"""Journey tasks: the triggers, the runner and archiving, all on the ``default`` queue.

The periodic ones overlap when a run outlasts its interval; they share the work through
``SKIP LOCKED`` (enrolments, trigger cursors, the consumer's position), never doubling it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from surge.ingest import consumers
from surge.jobs import JobContext, enqueue, task
from surge.journeys import runner, service, triggers


@task("journeys.run", queue="default", every=1, max_attempts=3)
async def run(ctx: JobContext) -> None:
    """Run due enrolments of every active journey, batch after batch."""
    await runner.run(ctx.pool, ctx.settings.dispatch_chunk_size)


@task("journeys.events", queue="default", every=1, max_attempts=3)
async def events(ctx: JobContext) -> None:
    """Enrol the contacts named by newly committed events (exactly once)."""
    await consumers.run(ctx.pool, triggers.JOURNEY_EVENTS)


@task("journeys.cursors", queue="default", every=2, max_attempts=3)
async def cursors(ctx: JobContext) -> None:
    """Enrol members who joined lists and donors whose donation succeeded."""
    await triggers.read_cursors(ctx.pool)


@task("journeys.dates", queue="default", every=10, max_attempts=5)
async def dates(ctx: JobContext) -> None:
    """Enrol, once a UTC day per journey, the contacts whose date comes round."""
    await triggers.enrol_dates(ctx.pool, datetime.now(UTC).date())


@task(service.ARCHIVE_TASK, queue="default", max_attempts=20)
async def archive(ctx: JobContext) -> None:
    """Take everyone out of an archived journey, a batch per transaction, then close its
    messages; a long archive continues in a follow-up job."""
    journey_id = int(ctx.job.args["journey_id"])
    org = ctx.job.organization_id
    assert org is not None
    for _ in range(20):
        async with ctx.pool.connection() as conn:
            if await service.finish_archive(conn, org, journey_id):
                return
    async with ctx.pool.connection() as conn, conn.transaction():
        await ctx.complete_in(conn)
        await enqueue(conn, service.ARCHIVE_TASK, {"journey_id": journey_id}, organization_id=org)
