"""Periodic segment jobs: the activity rollup's consumer, and its daily pruning."""

from __future__ import annotations

from surge.ingest import consumers
from surge.jobs import JobContext, task
from surge.segments import activity, service


@task("segments.activity", queue="default", every=1, max_attempts=3)
async def contact_activity(ctx: JobContext) -> None:
    await consumers.run(ctx.pool, activity.CONTACT_ACTIVITY, limit=activity.BATCH)


@task("segments.prune_activity", queue="default", every=86_400, max_attempts=5)
async def prune_activity(ctx: JobContext) -> None:
    async with ctx.pool.connection() as conn:
        await activity.prune(conn, service.today())
