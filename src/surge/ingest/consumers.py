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
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from surge.ingest import service, store
from surge.ingest.store import Conn, Event
from surge.webhooks.service import emit

Handler = Callable[[Conn, list[Event]], Awaitable[None]]

#: Events per batch (one transaction).
BATCH_SIZE = 500
#: Seconds one job run keeps taking batches before it leaves the rest to the next run.
RUN_BUDGET = 20.0
WEBHOOK_EVENT_TYPE = "event.received"


@dataclass(frozen=True, slots=True)
class Consumer:
    name: str
    handle: Handler
    #: Route families (service.route) this consumer wants; None means every event.
    routes: frozenset[str] | None = None
    #: Whether the handler reads ``payload`` (None in its events otherwise).
    payload: bool = True

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
            await consumer.handle(conn, mine)
        await store.save_position(conn, consumer.name, (batch[-1].xid, batch[-1].id))
        return len(batch)


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
    return stamp.astimezone(UTC).replace(second=0, microsecond=0)


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
        "properties": event.payload,
    }


async def emit_webhooks(conn: Conn, events: list[Event]) -> None:
    """Custom events → the webhook outbox (``event.received``), in the batch's transaction."""
    # emit is one INSERT per event; the pipeline sends the batch's in one round trip.
    async with conn.pipeline():
        for event in events:
            await emit(conn, event.organization_id, WEBHOOK_EVENT_TYPE, _webhook_data(event))


EVENT_COUNTS = Consumer("event_counts", count_events, payload=False)
WEBHOOKS = Consumer("webhooks", emit_webhooks, frozenset({"custom"}))
CONSUMERS = (EVENT_COUNTS, WEBHOOKS)
