"""Group commit: many concurrent requests' rows written by one statement, then answered.

An API process receives hits and events from hundreds of concurrent requests. Writing
each with its own transaction costs a round trip and a commit apiece; instead each
request hands its rows to the writer and awaits the commit of the batch that carried
them. The writer flushes when ``max_delay`` has passed since the first waiting row or
``max_batch`` rows are waiting (then at once), whichever is first, so a request waits a few
milliseconds at most and its answer still means "durable". When ``max_backlog`` rows are
already waiting the writer refuses more (``Backlogged``): the API turns that into 503 with
Retry-After instead of queueing without bound in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

T = TypeVar("T")
Flush = Callable[[Any, Sequence[T]], Awaitable[None]]


class Backlogged(Exception):
    """The writer already holds ``max_backlog`` rows; try again shortly."""


class GroupCommitWriter(Generic[T]):
    def __init__(
        self,
        pool: AsyncConnectionPool,
        flush: Flush[T],
        *,
        max_delay: float = 0.005,
        max_batch: int = 5000,
        max_backlog: int = 100_000,
        name: str = "writer",
        transaction: bool = True,
    ) -> None:
        self.pool = pool
        self._flush = flush
        self.max_delay = max_delay
        self.max_batch = max_batch
        self.max_backlog = max_backlog
        self.name = name
        #: False for a flush that is one statement (a COPY): it is atomic on its own, and
        #: BEGIN and COMMIT would be two more round trips per flush.
        self.transaction = transaction
        self._rows: list[T] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def backlog(self) -> int:
        return len(self._rows)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"group-commit-{self.name}")

    async def write(self, rows: Sequence[T]) -> None:
        """Return once ``rows`` are committed; raise if their batch failed or on backlog."""
        if self._closed:
            raise RuntimeError("writer is closed")
        if len(self._rows) + len(rows) > self.max_backlog:
            raise Backlogged(f"{self.name} backlog is full")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rows.extend(rows)
        self._waiters.append(done)
        self._wakeup.set()
        await done

    async def _run(self) -> None:
        while not (self._closed and not self._rows):
            await self._wakeup.wait()
            if len(self._rows) < self.max_batch and not self._closed:
                await asyncio.sleep(self.max_delay)
            # Everything waiting goes in one batch: waiters can't be split by row, and the
            # batch is bounded by max_backlog anyway.
            rows, waiters = self._rows, self._waiters
            self._rows, self._waiters = [], []
            self._wakeup.clear()
            if rows:
                await self._commit(rows, waiters)

    async def _commit(self, rows: list[T], waiters: list[asyncio.Future[None]]) -> None:
        try:
            async with self.pool.connection() as conn:
                if self.transaction:
                    async with conn.transaction():
                        await self._flush(conn, rows)
                else:
                    await self._flush(conn, rows)
        except Exception as exc:
            log.exception("group commit failed", extra={"writer": self.name, "rows": len(rows)})
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def close(self) -> None:
        """Flush what is waiting, then stop."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
