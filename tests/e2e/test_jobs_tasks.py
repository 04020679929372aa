"""Tasks for the job engine's e2e tests, imported by real workers (``--tasks-module``).

Not a test module: it holds no tests, only tasks the ``surge worker`` subprocesses load.
"""

from __future__ import annotations

import asyncio
import os

from surge.jobs import JobContext, task


@task("test.e2e.record_and_sleep", queue="default", max_attempts=5)
async def record_and_sleep(ctx: JobContext) -> None:
    """Records this run (committed at once, so a killed run leaves its trace), then sleeps."""
    async with ctx.pool.connection() as conn:
        await conn.execute(
            "insert into e2e_runs (job_id, attempt, pid) values (%s, %s, %s)",
            [ctx.job.id, ctx.job.attempt, os.getpid()],
        )
    await asyncio.sleep(float(ctx.job.args["seconds"]))
