"""Putting jobs in: one at a time inside the caller's transaction, or many with COPY."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection

from surge.jobs.registry import DEFAULT_MAX_ATTEMPTS, QUEUES, UnknownTask, registry
from surge.observability import tracing

INSERT = """
insert into jobs (queue, kind, args, run_at, unique_key, organization_id, max_attempts, priority,
    traceparent)
values (%s, %s, %s::jsonb, coalesce(%s, now()), %s, %s, %s, %s, %s)
on conflict (unique_key) where unique_key is not null do nothing
returning id
"""

COPY = """
copy jobs (queue, kind, args, run_at, organization_id, max_attempts, priority) from stdin
"""
# With tracing on: each job also stores the traceparent its run continues.
COPY_TRACED = """
copy jobs (queue, kind, args, run_at, organization_id, max_attempts, priority, traceparent)
from stdin
"""

_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class NewJob:
    """One job for ``enqueue_many``."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    run_at: datetime | None = None
    organization_id: int | None = None
    max_attempts: int | None = None
    priority: int = 0
    #: The trace its run continues; None: the current span's (the webhook relay gives each
    #: delivery the trace of the change that emitted its event).
    traceparent: str | None = None


def resolve(kind: str, queue: str | None, max_attempts: int | None) -> tuple[str, int]:
    """The queue and attempt budget of a new job: given values win over the task's."""
    task = registry.tasks.get(kind)
    if queue is None:
        if task is None:
            raise UnknownTask(f"no task registered as {kind!r}; pass queue= to enqueue anyway")
        queue = task.queue
    if queue not in QUEUES:
        raise ValueError(f"queue must be one of {QUEUES}, not {queue!r}")
    if max_attempts is None:
        max_attempts = task.max_attempts if task else DEFAULT_MAX_ATTEMPTS
    return queue, max_attempts


async def enqueue(
    conn: AsyncConnection[Any],
    kind: str,
    args: dict[str, Any] | None = None,
    *,
    queue: str | None = None,
    run_at: datetime | None = None,
    unique_key: str | None = None,
    organization_id: int | None = None,
    max_attempts: int | None = None,
    priority: int = 0,
) -> int | None:
    """Insert one job; returns its id, or None if ``unique_key`` is already held.

    Runs on ``conn`` as it is: inside the caller's open transaction the job exists only if
    that transaction commits (transactional enqueue). ``kind`` must be registered unless
    ``queue`` is given. A unique key is held while its job is in the hot table, i.e. until
    the job completes or is cancelled (discarded jobs keep holding it).
    """
    queue, attempts = resolve(kind, queue, max_attempts)
    with tracing.enqueuing(kind, queue) as (traceparent, span):
        cur = await conn.execute(
            INSERT,
            [
                queue,
                kind,
                _encode(args or {}).decode(),
                run_at,
                unique_key,
                organization_id,
                attempts,
                priority,
                traceparent,
            ],
        )
        row = await cur.fetchone()
        if row is not None:
            span.set_attribute("messaging.message.id", str(row[0]))
    return None if row is None else int(row[0])


async def enqueue_many(conn: AsyncConnection[Any], jobs: Iterable[NewJob]) -> int:
    """Insert many jobs with one COPY; returns how many. Joins the caller's transaction."""
    if tracing.active:
        return await _enqueue_many_traced(conn, jobs)
    count = 0
    cur = conn.cursor()
    async with cur.copy(COPY) as copy:
        for job in jobs:
            queue, attempts = resolve(job.kind, job.queue, job.max_attempts)
            # COPY does not apply column defaults for listed columns: now() is filled here.
            await copy.write_row(
                (
                    queue,
                    job.kind,
                    _encode(job.args).decode(),
                    job.run_at or _NOW,
                    job.organization_id,
                    attempts,
                    job.priority,
                )
            )
            count += 1
    return count


_NOW = "now"  # PostgreSQL's timestamp input 'now' = the transaction's start time


async def _enqueue_many_traced(conn: AsyncConnection[Any], jobs: Iterable[NewJob]) -> int:
    """``enqueue_many`` with a traceparent per job: one enqueue span for the batch, named
    after the first job's kind (a batch is nearly always of one kind)."""
    pending = iter(jobs)
    first = next(pending, None)
    if first is None:
        return 0
    count = 0
    with tracing.enqueuing(first.kind, first.queue) as (traceparent, span):
        cur = conn.cursor()
        async with cur.copy(COPY_TRACED) as copy:
            for job in itertools.chain((first,), pending):
                queue, attempts = resolve(job.kind, job.queue, job.max_attempts)
                await copy.write_row(
                    (
                        queue,
                        job.kind,
                        _encode(job.args).decode(),
                        job.run_at or _NOW,
                        job.organization_id,
                        attempts,
                        job.priority,
                        job.traceparent or traceparent,
                    )
                )
                count += 1
        span.set_attribute("messaging.batch.message_count", count)
    return count
