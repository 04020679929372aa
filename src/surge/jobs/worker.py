"""The worker: claim in batches, run concurrently, complete in batches, stop cleanly.

Three loops share one asyncio event loop:
- fetch: claims as many jobs as there are free slots; after a full batch it claims again at
  once, otherwise it sleeps ``worker_poll_interval`` (polling works behind PgBouncer);
- flush: every ``FLUSH_INTERVAL`` (or sooner when the buffer is big) completes all the jobs
  that finished since the last flush with one statement;
- heartbeat: refreshes this worker's row, takes or renews the maintenance lease and, while
  it holds it, runs maintenance (rescue, periodic jobs, history partitions).
On stop (SIGTERM/SIGINT) the worker stops claiming, waits up to ``worker_shutdown_timeout``
for its running jobs, flushes, hands back what is unfinished and removes its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from psycopg import Error as DatabaseError
from psycopg_pool import AsyncConnectionPool

from surge.config import Settings
from surge.jobs.complete import complete_jobs, fail_job, hand_back
from surge.jobs.fetch import claim
from surge.jobs.maintenance import Maintenance, release_lease, take_lease
from surge.jobs.registry import (
    DEFAULT_BACKOFF,
    Job,
    JobContext,
    Registry,
    UnknownTask,
    registry,
)
from surge.jobs.rescue import heartbeat, identity, unregister
from surge.observability.metrics import job_ran
from surge.observability.tracing import job_span

if TYPE_CHECKING:
    from surge.resources import Resources

log = logging.getLogger(__name__)

#: Seconds between completion flushes, and the buffer size that flushes at once.
FLUSH_INTERVAL = 0.05
FLUSH_SIZE = 2000
#: Seconds a worker with less than half its slots free waits before claiming more.
FETCH_COOLDOWN = 0.01


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """One worker process's engine; ``run()`` until ``stop()``.

    Tasks get ``pool`` as ``ctx.pool``; the engine uses ``engine_pool`` (default: ``pool``).
    """

    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: Settings,
        *,
        queues: Sequence[str],
        concurrency: int | None = None,
        tasks: Registry = registry,
        worker_id: str | None = None,
        engine_pool: AsyncConnectionPool | None = None,
        resources: Resources | None = None,
    ) -> None:
        self.pool = pool
        #: What tasks share (surge.resources); the caller owns and closes it. Without one,
        #: the worker makes its own from ``settings`` and ``pool`` and closes it on exit.
        self.resources = resources
        self._own_resources = resources is None
        # The engine's own statements (claim, flush, heartbeat) get their own connections
        # when possible: tasks holding every connection of `pool` must not delay the
        # heartbeat, or a busy worker would be taken for dead.
        self.engine_pool = engine_pool or pool
        self.settings = settings
        self.queues = list(queues)
        self.concurrency = concurrency or settings.worker_concurrency
        self.tasks = tasks
        self.id = worker_id or new_worker_id()
        self.maintenance = Maintenance(tasks, settings.worker_heartbeat_timeout)
        self._who = identity(self.queues, self.id)
        self._running: dict[int, asyncio.Task[None]] = {}
        self._done: list[int] = []
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._flush_soon = asyncio.Event()
        self._fetching = True

    def stop(self) -> None:
        """Stop claiming and shut down gracefully (safe to call from a signal handler)."""
        self._stopping.set()

    async def run(self) -> None:
        """Serve the queues until ``stop()``, then drain and hand back."""
        if self.resources is None:
            from surge.resources import Resources  # the app's, made here only when not given

            self.resources = Resources(self.settings, self.pool)
        try:
            await self._serve()
        finally:
            if self._own_resources:
                await self.resources.aclose()

    async def _serve(self) -> None:
        async with self.engine_pool.connection() as conn:
            await heartbeat(conn, self._who)
        log.info("worker started", extra={"worker": self.id, "queues": self.queues})
        beat = asyncio.create_task(self._heartbeat_loop())
        flush = asyncio.create_task(self._flush_loop())
        try:
            await self._fetch_loop()
            await self._drain()
        finally:
            self._fetching = False
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self._flush_soon.set()
            await flush
            await self._leave()
        log.info("worker stopped", extra={"worker": self.id})

    # -- fetch ---------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        poll = self.settings.worker_poll_interval
        errors = 0
        while not self._stopping.is_set():
            free = self.concurrency - len(self._running)
            if free == 0:
                self._slot_freed.clear()
                await self._sleep(None, self._slot_freed)
                continue
            if free < self.concurrency // 2:
                # A short cool-down lets more slots free up: claiming one job per freed
                # slot would cost a round trip per job.
                await self._sleep(FETCH_COOLDOWN)
                if self._stopping.is_set():
                    break
                free = self.concurrency - len(self._running)
            try:
                async with self.engine_pool.connection() as conn:
                    jobs = await claim(conn, self.queues, free, self.id)
            except DatabaseError:
                log.exception("claim failed", extra={"worker": self.id})
                errors += 1
                # Back off while the database is unreachable, up to 30 polls.
                await self._sleep(poll * min(2**errors, 30))
                continue
            errors = 0
            for job in jobs:
                self._start(job)
            if len(jobs) < free:
                await self._sleep(poll)

    async def _sleep(self, seconds: float | None, wake: asyncio.Event | None = None) -> None:
        """Sleep ``seconds`` (None: forever) unless stopping, or ``wake``, happens first."""
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    # -- run -----------------------------------------------------------------------------

    def _start(self, job: Job) -> None:
        self._running[job.id] = asyncio.create_task(self._execute(job))

    async def _execute(self, job: Job) -> None:
        assert self.resources is not None, "run() provides the resources"
        ctx = JobContext(job, self.pool, self.settings, self.id, self.resources)
        started = time.perf_counter()
        try:
            with job_span(job):  # a child of the span that enqueued it, if traced
                await self.tasks.get(job.kind)(ctx)
        except asyncio.CancelledError as exc:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # cancelled by the shutdown: the job is handed back
            await self._fail(job, exc)  # a stray CancelledError from inside the task
        except Exception as exc:  # a task's failure is data, never the worker's
            job_ran(job.kind, time.perf_counter() - started, failed=True)
            await self._fail(job, exc)
        else:
            job_ran(job.kind, time.perf_counter() - started)
            # Also after ctx.complete_in(): if the caller's transaction rolled back, this
            # completes the job; if it committed, the guarded statement matches nothing.
            self._done.append(job.id)
            if len(self._done) >= FLUSH_SIZE:
                self._flush_soon.set()
        finally:
            del self._running[job.id]
            self._slot_freed.set()

    async def _fail(self, job: Job, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        try:
            backoff = self.tasks.get(job.kind).retry_delays(self.settings)
        except UnknownTask:
            backoff = DEFAULT_BACKOFF
        try:
            async with self.engine_pool.connection() as conn:
                outcome = await fail_job(conn, job.id, self.id, error, backoff(job.attempt))
        except DatabaseError:
            log.exception("recording a failure failed", extra={"job": job.id})
            return
        log.warning(
            "job failed",
            exc_info=exc,
            extra={"job": job.id, "kind": job.kind, "attempt": job.attempt, "outcome": outcome},
        )

    # -- complete ------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while self._fetching or self._running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_soon.wait(), FLUSH_INTERVAL)
            self._flush_soon.clear()
            await self._flush()
        await self._flush()

    async def _flush(self) -> None:
        if not self._done:
            return
        ids, self._done = self._done, []
        try:
            async with self.engine_pool.connection() as conn:
                await complete_jobs(conn, ids, self.id)
        except DatabaseError:
            log.exception("completing jobs failed; will retry", extra={"jobs": len(ids)})
            self._done.extend(ids)

    # -- heartbeat and maintenance ----------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                async with self.engine_pool.connection() as conn:
                    await heartbeat(conn, self._who)
                    ttl = self.settings.worker_heartbeat_timeout
                    if await take_lease(conn, self.id, ttl):
                        await self.maintenance.tick(conn)
            except Exception:  # whatever went wrong, keep beating: silence means death
                log.exception("heartbeat or maintenance failed", extra={"worker": self.id})
            await asyncio.sleep(self.settings.worker_heartbeat_interval)

    # -- stop ----------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Wait for running jobs up to the shutdown timeout, then cancel the rest."""
        running = list(self._running.values())
        if not running:
            return
        log.info("waiting for running jobs", extra={"jobs": len(running)})
        _, pending = await asyncio.wait(running, timeout=self.settings.worker_shutdown_timeout)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _leave(self) -> None:
        """Hand back unfinished jobs, remove this worker's row and give up the lease."""
        async with self.engine_pool.connection() as conn:
            handed = await hand_back(conn, self.id)
            await unregister(conn, self.id)
            await release_lease(conn, self.id)
        if handed:
            log.warning("handed back unfinished jobs", extra={"jobs": handed})
