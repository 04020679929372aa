"""Group commit: many concurrent requests' rows written by one statement, then answered.

An API process receives hits and events from hundreds of concurrent requests. Writing
each with its own transaction costs a round trip and a commit apiece; instead each
request hands its rows to the writer and awaits the commit of the batch that carried
them. The writer flushes when ``max_delay`` has passed since the first waiting row or
``max_batch`` rows are waiting (then at once), whichever is first, so a request waits a few
milliseconds at most and its answer still means "durable". When ``max_backlog`` rows are
already waiting the writer refuses more (``Backlogged``): the API turns that into 503 with
Retry-After instead of queueing without bound in memory.

Failures stay with the requests that caused them:

- A flush the database refuses for the content of a row (a data or constraint error) is
  retried in halves, split by request, until each failing request is alone: it gets
  ``Rejected``; every other request's rows are committed as if nothing happened.
- A database that cannot be reached (pool timeout, lost connection) or a write that takes
  longer than ``write_timeout`` fails the request with ``Unavailable`` within that time,
  never after the pool's own (much longer) timeouts. The next flush simply tries again, so
  the writer recovers by itself when the database comes back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from surge.observability.metrics import WriterMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")
Flush = Callable[[Any, Sequence[T]], Awaitable[None]]

#: SQLSTATE classes that blame the data, not the server: 22 data exception, 23 integrity
#: constraint violation, 54 program limit exceeded (a value too big for its type).
ROW_ERROR_CLASSES = frozenset({"22", "23", "54"})
_COPY_CONTEXT = re.compile(r"COPY \S+, line (\d+)(?:, column (\w+))?")


class Unavailable(Exception):
    """The rows could not be written in time; try again shortly.

    ``maybe_stored`` is True when the rows had already gone to the database when the write
    failed (the connection died or the timeout struck mid-flush): they may have committed.
    """

    def __init__(self, message: str, *, maybe_stored: bool = False) -> None:
        super().__init__(message)
        self.maybe_stored = maybe_stored


class Backlogged(Unavailable):
    """The writer already holds ``max_backlog`` rows; try again shortly."""


class Rejected(Exception):
    """The database refused these rows (this write's alone) for what they contain."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error

    @property
    def reason(self) -> str:
        """The database's one-line reason, without the offending value."""
        if isinstance(self.error, psycopg.Error) and self.error.diag.message_primary:
            return self.error.diag.message_primary
        return str(self.error).partition("\n")[0]

    @property
    def row(self) -> int | None:
        """Index of the refused row among the write's rows, when a COPY's error names it."""
        found = self._copy_context()
        return int(found.group(1)) - 1 if found else None

    @property
    def column(self) -> str | None:
        """The refused column, when a COPY's error names it."""
        found = self._copy_context()
        return found.group(2) if found else None

    def _copy_context(self) -> re.Match[str] | None:
        if not isinstance(self.error, psycopg.Error):
            return None
        return _COPY_CONTEXT.search(self.error.diag.context or "")


def is_row_error(exc: BaseException) -> bool:
    """Whether ``exc`` blames the rows written (retrying without them can succeed)."""
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return True  # also psycopg's own refusals while encoding, e.g. NUL in text
    if isinstance(exc, psycopg.Error):
        return (exc.sqlstate or "")[:2] in ROW_ERROR_CLASSES
    # Raised while encoding a value on our side, before the server saw it. Not TypeError: a
    # row of the wrong shape is our bug, and a 400 would make clients drop their events.
    return isinstance(exc, ValueError | OverflowError)


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` is about reaching the database rather than about the rows."""
    return isinstance(exc, psycopg.OperationalError | TimeoutError | OSError)


@dataclass(eq=False, slots=True)
class _Write(Generic[T]):
    """One ``write()`` call: its rows, always flushed together, and its answer."""

    rows: Sequence[T]
    done: asyncio.Future[None]

    def settle(self, error: BaseException | None = None) -> None:
        if self.done.done():  # timed out or cancelled: nobody is listening any more
            return
        if error is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(error)


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
        write_timeout: float | None = None,
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
        #: Seconds a write() may take in all (waiting for its flush, a connection and the
        #: commit) before it fails with Unavailable; None waits as long as the pool does.
        self.write_timeout = write_timeout
        self._pending: list[_Write[T]] = []
        self._count = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._metrics = WriterMetrics(self)  # batch sizes, flush times, backlog gauges

    @property
    def backlog(self) -> int:
        return self._count

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"group-commit-{self.name}")

    async def write(self, rows: Sequence[T]) -> None:
        """Return once ``rows`` are committed.

        Raises ``Backlogged`` (nothing stored), ``Unavailable`` (not stored, or with
        ``maybe_stored`` unknown), ``Rejected`` (these rows refused, nothing of them stored),
        or the flush's own error for anything else (a bug).
        """
        if self._closed:
            raise RuntimeError("writer is closed")
        if self._count + len(rows) > self.max_backlog:
            raise Backlogged(f"{self.name} backlog is full")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A failure set after the caller gave up must not be logged as "never retrieved".
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        entry = _Write(rows, done)
        self._pending.append(entry)
        self._count += len(rows)
        self._wakeup.set()
        try:
            # Awaiting the future itself: a timeout (or the caller's cancellation) cancels
            # it, and the writer then skips these rows if it has not sent them yet.
            async with asyncio.timeout(self.write_timeout):
                await done
        except TimeoutError:
            if entry in self._pending:
                self._pending.remove(entry)
                self._count -= len(rows)
                raise Unavailable(f"{self.name}: the database did not answer in time") from None
            raise Unavailable(
                f"{self.name}: the database did not confirm the write in time", maybe_stored=True
            ) from None

    async def _run(self) -> None:
        while not (self._closed and not self._pending):
            await self._wakeup.wait()
            if self._count < self.max_batch and not self._closed:
                await asyncio.sleep(self.max_delay)
            # Everything waiting goes in one batch: the batch is bounded by max_backlog.
            batch = self._pending
            self._pending, self._count = [], 0
            self._wakeup.clear()
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Write[T]]) -> None:
        """Write ``batch`` and settle each write; a bad write fails alone."""
        batch = [w for w in batch if not w.done.done()]
        if not batch:
            return
        sent, started = False, time.perf_counter()
        try:
            async with asyncio.timeout(self.write_timeout):
                async with self.pool.connection(timeout=self.write_timeout) as conn:
                    sent = True
                    rows = [row for w in batch for row in w.rows]
                    if self.transaction:
                        async with conn.transaction():
                            await self._flush(conn, rows)
                    else:
                        await self._flush(conn, rows)
        except Exception as exc:
            await self._failed(batch, exc, sent)
            return
        self._metrics.flushed(len(rows), time.perf_counter() - started)
        for w in batch:
            w.settle()

    async def _failed(self, batch: list[_Write[T]], exc: Exception, sent: bool) -> None:
        if is_row_error(exc):
            if len(batch) == 1:
                log.warning(
                    "group commit refused a write's rows",
                    extra={"writer": self.name, "rows": len(batch[0].rows), "error": str(exc)},
                )
                batch[0].settle(Rejected(exc))
                return
            # Halves until each refused write is alone: ~2·log2(writes) flushes per bad write.
            middle = len(batch) // 2
            await self._commit(batch[:middle])
            await self._commit(batch[middle:])
            return
        if is_connection_error(exc):
            log.warning(
                "group commit could not reach the database",
                extra={"writer": self.name, "writes": len(batch), "error": repr(exc)},
            )
            for w in batch:
                w.settle(Unavailable(f"{self.name}: database unavailable", maybe_stored=sent))
            return
        log.exception("group commit failed", extra={"writer": self.name, "writes": len(batch)})
        for w in batch:
            w.settle(exc)

    async def close(self) -> None:
        """Flush what is waiting, then stop."""
        self._closed = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
