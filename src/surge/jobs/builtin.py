"""Built-in tasks, for benchmarks, smoke tests and operators' checks."""

from __future__ import annotations

import asyncio

from surge.jobs.registry import JobContext, task
from surge.retry import Backoff


class DeliberateFailure(RuntimeError):
    """Raised by ``surge.fail``: a job that is meant to fail."""


@task("surge.noop", queue="default")
async def noop(ctx: JobContext) -> None:
    """Does nothing: measures the engine's own overhead."""


@task("surge.sleep", queue="default")
async def sleep(ctx: JobContext) -> None:
    """Sleeps ``args["seconds"]`` (default 1): a stand-in for a slow job."""
    await asyncio.sleep(float(ctx.job.args.get("seconds", 1)))


@task("surge.fail", queue="default", max_attempts=3, backoff=Backoff(base=0.0, cap=0.0))
async def fail(ctx: JobContext) -> None:
    """Always fails (retried at once, discarded after 3 attempts unless told otherwise)."""
    raise DeliberateFailure(str(ctx.job.args.get("message", "deliberate failure")))
