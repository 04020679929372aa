"""Consumers: read committed events in batches, route them, write results exactly once.

Each consumer has a row in ``consumer_positions``. One batch is one transaction:
lock that row (``FOR UPDATE SKIP LOCKED``: a second runner gets nothing and leaves), read the
next events after the position in (xid, id) order, write the consumer's results, move the
position. Results and position commit together, so a crash replays the batch and never loses
or double-counts it.

Why (xid, id) and not id: identity values are taken at insert, but transactions commit in
any order, so a row with a lower id can become visible after a higher one was processed.
Every row carries its transaction's id, and a batch only reads rows of transactions older
than the oldest one still running (``pg_snapshot_xmin``), which can no longer be overtaken.
A long-running transaction anywhere on the server therefore delays consumers (not intake)
until it ends.

A poison event (one the handler fails on, whatever the reason) must not stop the consumer
for every organisation: when a batch's handler raises, the batch is retried in halves under
savepoints until the failing events stand alone; those are recorded in ``event_failures``
(logged, counted) and skipped, the others are processed once, and the position moves on.
Errors of the connection or of concurrency (the database going away, a deadlock, a lock or
statement timeout) are not the event's fault: they fail the batch, which is replayed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import prometheus_client
import psycopg
from psycopg_pool import AsyncConnectionPool

from surge.ingest import profiles, service, store
from surge.ingest.store import Conn, Event
from surge.observability.metrics import REGISTRY
from surge.webhooks.service import emit

log = logging.getLogger(__name__)

Handler = Callable[[Conn, list[Event]], Awaitable[None]]

#: Events per batch (one transaction).
BATCH_SIZE = 500
#: Seconds one job run keeps taking batches before it leaves the rest to the next run.
RUN_BUDGET = 20.0
WEBHOOK_EVENT_TYPE = "event.received"
#: Not the event's fault: the batch fails and is replayed (OperationalError covers lost
#: connections, deadlocks and serialization failures, lock and statement timeouts).
TRANSIENT_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, OSError)
#: Longest error text kept per failed event.
MAX_ERROR_CHARS = 2000

events_set_aside = prometheus_client.Counter(
    "surge_consumer_events_set_aside",
    "Events a consumer could not process, recorded in event_failures and skipped.",
    ["consumer"],
    registry=REGISTRY,
)


@dataclass(frozen=True, slots=True)
class Consumer:
    name: str
    handle: Handler
    #: Route families (service.route) this consumer wants; None means every event.
    routes: frozenset[str] | None = None
    #: Which events' ``payload`` the handler reads (None in the others): a key of
    #: ``store.PAYLOADS`` (``all``, ``none``, ``identity``); True is ``all``, False ``none``.
    payload: bool | str = True

    def wants(self, event: Event) -> bool:
        return self.routes is None or service.route(event.type) in self.routes


async def consume_batch(pool: AsyncConnectionPool, consumer: Consumer, limit: int) -> int | None:
    """Process the next batch; the number of events read, or None if another runner has it."""
    async with pool.connection() as conn, conn.transaction():
        position = await store.lock_position(conn, consumer.name)
        if position is None:
            return None
        batch = await store.read_batch(conn, position, limit, payload=consumer.payload)
        if not batch:
            return 0
        mine = [event for event in batch if consumer.wants(event)]
        if mine:
            await _handle(conn, consumer, mine)
        await store.save_position(conn, consumer.name, store.Position(batch[-1].xid, batch[-1].id))
        return len(batch)


async def _handle(conn: Conn, consumer: Consumer, events: list[Event]) -> None:
    """Run the handler on ``events``; set aside the ones it fails on (see the module doc)."""
    try:
        # A savepoint: a failed handler's writes go, the batch's transaction stays usable.
        async with conn.transaction():
            await consumer.handle(conn, events)
        return
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:
        failed = await _isolate(conn, consumer, events, exc)
    for event, error in failed:
        log.error(
            "event set aside: the consumer failed on it",
            extra={
                "consumer": consumer.name,
                "event_id": event.id,
                "xid": event.xid,
                "organization_id": event.organization_id,
                "error": error,
            },
        )
    events_set_aside.labels(consumer.name).inc(len(failed))
    await store.record_failures(conn, consumer.name, failed)


async def _isolate(
    conn: Conn, consumer: Consumer, events: list[Event], exc: Exception
) -> list[tuple[Event, str]]:
    """The events of a failed handler call that fail alone; the others are handled once.

    Halves are retried under savepoints, so k poison events among n cost about
    2·k·log2(n) handler calls, and a half that succeeds keeps its writes.
    """
    if len(events) == 1:
        return [(events[0], f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])]
    middle = len(events) // 2
    failed: list[tuple[Event, str]] = []
    for half in (events[:middle], events[middle:]):
        try:
            async with conn.transaction():
                await consumer.handle(conn, half)
        except TRANSIENT_ERRORS:
            raise
        except Exception as again:
            failed += await _isolate(conn, consumer, half, again)
    return failed


async def run(
    pool: AsyncConnectionPool,
    consumer: Consumer,
    *,
    limit: int = BATCH_SIZE,
    budget: float = RUN_BUDGET,
) -> int:
    """Take batches while they come full (or until ``budget`` seconds); events processed."""
    async with pool.connection() as conn:
        await store.ensure_position(conn, consumer.name)
    deadline = time.monotonic() + budget
    total = 0
    while True:
        read = await consume_batch(pool, consumer, limit)
        total += read or 0
        if read is None or read < limit or time.monotonic() > deadline:
            return total


def _minute(stamp: datetime) -> datetime:
    """The UTC minute of ``stamp``; past datetime's range (year 1 at +14:00), its edge."""
    try:
        utc = stamp.astimezone(UTC)
    except OverflowError:
        utc = (datetime.min if stamp.year == 1 else datetime.max).replace(tzinfo=UTC)
    return utc.replace(second=0, microsecond=0)


async def count_events(conn: Conn, events: list[Event]) -> None:
    """The live-dashboard rollup: events per (organisation, type, minute), one upsert."""
    counts = Counter((e.organization_id, e.type, _minute(e.occurred_at)) for e in events)
    await store.add_counts(conn, dict(counts))


def _webhook_data(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "received_at": event.received_at,
        "contact_id": event.contact_id,
        "contact_email": event.contact_email,
        "campaign_id": event.campaign_id,
        # The stored JSON as is: no decode and re-encode, and no number it cannot hold.
        "properties": msgspec.Raw(event.payload),
        "message_id": event.message_id,
        "user_id": event.user_id,
        "anonymous_id": event.anonymous_id,
    }


async def emit_webhooks(conn: Conn, events: list[Event]) -> None:
    """Custom events → the webhook outbox (``event.received``), in the batch's transaction."""
    # emit is one INSERT per event; the pipeline sends the batch's in one round trip.
    async with conn.pipeline():
        for event in events:
            await emit(conn, event.organization_id, WEBHOOK_EVENT_TYPE, _webhook_data(event))


EVENT_COUNTS = Consumer("event_counts", count_events, payload=False)
WEBHOOKS = Consumer("webhooks", emit_webhooks, frozenset({"custom"}))
PROFILES = Consumer("profiles", profiles.handle, payload="identity")
CONSUMERS = (EVENT_COUNTS, WEBHOOKS, PROFILES)
