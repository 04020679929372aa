"""One export job's run: COPY in a thread, gzip pieces into ``export_chunks``, then completed.

Two connections work at once. A blocking one of its own (``stream.produce``) holds the
export's snapshot: the count, then the COPY, for as long as the rows take. Pieces are
written from the event loop on pool connections taken for one short transaction each, so
an export never holds a pool connection while it waits for another (no deadlock however
many run) and a worker runs at most ``PER_PROCESS`` exports at once (each is a full scan
on the database and a core in the worker).

The COPY reads from the replica (``SURGE_DATABASE_REPLICA_URL``) when it is up and has
replayed past the moment the run started, so it sees the export's request and everything
before it; else from the primary. A second run (a retry or a rescue) always reads from the
primary: a replica that cancelled the first one's long COPY (a recovery conflict) or died
under it must not fail every run.

Every write is fenced: it locks the export row and checks that this run is still the
export's latest (``store.still_ours``). A deleted export, or a run overtaken by a newer one
(a rescued job), stops at its next piece and writes nothing more.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable
from contextlib import aclosing

import msgspec
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from surge.db.replica import Replica
from surge.errors import NotFound
from surge.exports import queries, service, store
from surge.exports.schemas import Filters
from surge.exports.stream import Counted, Piece, produce
from surge.segments import service as segments
from surge.threads import in_thread
from surge.webhooks.service import emit

#: Exports one process runs at once; more wait their turn.
PER_PROCESS = 2
#: Seconds a run waits for a pool connection; it holds none while it waits.
CONNECTION_WAIT = 300.0

Complete = Callable[[store.Conn], Awaitable[None]]

_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _slot() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slot = _slots.get(loop)
    if slot is None:
        slot = _slots[loop] = asyncio.Semaphore(PER_PROCESS)
    return slot


class Overtaken(Exception):
    """The export was deleted, or a newer run of it started: this run stops quietly."""


async def run_export(
    pool: AsyncConnectionPool,
    org: int,
    export_id: int,
    *,
    keep_days: int,
    complete: Complete | None = None,
    replica: Replica | None = None,
) -> str | None:
    """Run one export to the end; its final status, or None if there was nothing to run.

    A re-run (after a crash) starts again from the first row in a new snapshot. Errors
    propagate so that the job is retried (``mark_failed`` once attempts run out).
    """
    async with _slot():
        async with pool.connection(timeout=CONNECTION_WAIT) as conn:
            run = await store.start_run(conn, org, export_id)
        if run is None:
            return None  # finished, deleted, or not this organisation's: a duplicate job
        try:
            source = await _source(replica, run)
            return await _run(pool, org, export_id, run, keep_days, complete, source)
        except Overtaken:
            return None


async def _run(
    pool: AsyncConnectionPool,
    org: int,
    export_id: int,
    run: store.Run,
    keep_days: int,
    complete: Complete | None,
    source: str | None = None,
) -> str:
    filters = msgspec.convert(run.filters, Filters)
    async with pool.connection(timeout=CONNECTION_WAIT) as conn:
        try:
            segment = await _segment(conn, org, filters)
        except NotFound as exc:
            await _finish(conn, org, export_id, run, "failed", exc.message, complete)
            return "failed"
    select = queries.select(run.kind, org, filters, safe=run.spreadsheet_safe, segment=segment)
    count = queries.count(run.kind, org, filters, segment)
    await _write(pool, org, export_id, run, count, queries.copy(select), source)
    async with pool.connection(timeout=CONNECTION_WAIT) as conn:
        await _finish(conn, org, export_id, run, "completed", None, complete, keep_days)
    return "completed"


async def _source(replica: Replica | None, run: store.Run) -> str | None:
    """Where the COPY reads: the replica's conninfo, or None for the primary."""
    if replica is None or not replica.enabled or run.attempt > 1:
        return None
    await replica.start()
    return await replica.conninfo_after(await replica.primary_position())


async def _segment(conn: store.Conn, org: int, filters: Filters) -> sql.Composable | None:
    if filters.segment_id is None:
        return None
    try:
        return await segments.predicate(conn, org, filters.segment_id)
    except NotFound:
        raise NotFound(f"segment {filters.segment_id} no longer exists") from None


async def _write(
    pool: AsyncConnectionPool,
    org: int,
    export_id: int,
    run: store.Run,
    count: sql.Composed,
    copy: sql.Composed,
    source: str | None = None,
) -> None:
    # The worker's pool is made from a URL (db/pool.py); the COPY gets a connection of its own.
    conninfo = source or pool.conninfo
    assert isinstance(conninfo, str), "pools are opened with a URL"
    stop = threading.Event()
    compressed = 0
    items = produce(conninfo, count, copy, stop)
    async with aclosing(in_thread(items, stop)) as produced:
        async for item in produced:
            async with pool.connection(timeout=CONNECTION_WAIT) as conn, conn.transaction():
                if not await store.still_ours(conn, org, export_id, run.attempt):
                    raise Overtaken()
                if isinstance(item, Counted):
                    await store.set_total(conn, org, export_id, item.rows)
                    continue
                assert isinstance(item, Piece)
                if not item.data:
                    await store.set_progress(conn, org, export_id, item.rows, item.size)
                    continue
                compressed += len(item.data)
                await store.add_piece(
                    conn, org, export_id, item.seq, item.data, item.rows, item.size, compressed
                )


async def _finish(
    conn: store.Conn,
    org: int,
    export_id: int,
    run: store.Run,
    status: str,
    error: str | None,
    complete: Complete | None,
    keep_days: int = 0,
) -> None:
    """The final status, its webhook (into the outbox) and the job's completion: one
    transaction, so subscribers hear of every finished export, and only of those."""
    async with conn.transaction():
        if not await store.still_ours(conn, org, export_id, run.attempt):
            raise Overtaken()
        if status == "completed":
            await store.complete(conn, org, export_id, keep_days)
        else:
            await store.fail(conn, org, export_id, error or "failed")
        await _announce(conn, org, export_id, status)
        if complete is not None:
            await complete(conn)


async def _announce(conn: store.Conn, org: int, export_id: int, status: str) -> None:
    final = await service.get_export(conn, org, export_id)
    await emit(conn, org, f"export.{status}", msgspec.to_builtins(final))


async def mark_failed(pool: AsyncConnectionPool, org: int, export_id: int, reason: str) -> None:
    """Give up on an export (its job ran out of attempts); announces ``export.failed``."""
    async with pool.connection(timeout=CONNECTION_WAIT) as conn, conn.transaction():
        if await store.fail(conn, org, export_id, reason):
            await _announce(conn, org, export_id, "failed")
