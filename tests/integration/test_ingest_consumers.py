"""Consumers on the real database: exactly-once rollups, crash replay, out-of-order commits."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from surge.db.pool import open_pool
from surge.ingest import consumers, service, store
from surge.ingest.consumers import Consumer
from surge.ingest.store import Conn, Event, Row
from tests.conftest import create_org

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def org_id(database_url: str) -> int:
    return int(create_org(database_url, "Consumers Org")["id"])


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url, max_size=20)
    # Each test starts from an empty table and fresh positions.
    async with pool.connection() as conn:
        await conn.execute(
            "truncate events, event_counts, consumer_positions, webhook_events cascade"
        )
    yield pool
    await pool.close()


def rows(org_id: int, n: int, type_: str = "app.click") -> list[Row]:
    return [
        (org_id, type_, None, None, None, f'{{"n": {i}}}', T0, None, None, None) for i in range(n)
    ]


async def write(pool: AsyncConnectionPool, batch: list[Row]) -> None:
    async with pool.connection() as conn, conn.transaction():
        await store.copy_events(conn, batch)


async def total_counted(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("select coalesce(sum(count), 0) from event_counts")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def test_counts_each_event_once_per_org_type_and_minute(
    pool: AsyncConnectionPool, org_id: int
) -> None:
    await write(pool, rows(org_id, 1200) + rows(org_id, 30, "app.view"))
    assert await consumers.run(pool, consumers.EVENT_COUNTS) == 1230
    assert await consumers.run(pool, consumers.EVENT_COUNTS) == 0
    async with pool.connection() as conn:
        counts = await service.counts_since(conn, org_id, T0 - timedelta(hours=1))
    assert counts == [("app.click", T0, 1200), ("app.view", T0, 30)]


async def test_a_crash_mid_batch_replays_it_without_double_counting(
    pool: AsyncConnectionPool, org_id: int
) -> None:
    await write(pool, rows(org_id, 300))

    async def count_then_crash(conn: Conn, events: list[Event]) -> None:
        await consumers.count_events(conn, events)
        # What a dying worker looks like from here: its connection goes. (Any other error
        # is the events' fault, and sets them aside: see test_ingest_poison.py.)
        raise psycopg.OperationalError("worker died after writing its results")

    crashing = Consumer("event_counts", count_then_crash)
    with pytest.raises(psycopg.OperationalError):
        await consumers.run(pool, crashing, limit=100)
    assert await total_counted(pool) == 0
    assert await consumers.run(pool, consumers.EVENT_COUNTS, limit=100) == 300
    assert await total_counted(pool) == 300


async def test_an_event_committing_late_with_a_lower_id_is_not_skipped(
    pool: AsyncConnectionPool, database_url: str, org_id: int
) -> None:
    slow = await psycopg.AsyncConnection.connect(database_url)
    try:
        # The slow transaction takes its id (and its xid) first but commits last.
        await store.copy_events(slow, rows(org_id, 1, "slow"))
        await write(pool, rows(org_id, 1, "fast"))
        assert await consumers.run(pool, consumers.EVENT_COUNTS) == 0
        await slow.commit()
    finally:
        await slow.close()
    assert await consumers.run(pool, consumers.EVENT_COUNTS) == 2
    async with pool.connection() as conn:
        cur = await conn.execute("select type, id from events order by id")
        assert [r[0] for r in await cur.fetchall()] == ["slow", "fast"]
    assert await total_counted(pool) == 2


async def test_concurrent_writers_committing_out_of_order_lose_nothing(
    pool: AsyncConnectionPool, org_id: int
) -> None:
    written = 0

    async def writer() -> None:
        nonlocal written
        for _ in range(15):
            async with pool.connection() as conn, conn.transaction():
                n = random.randint(1, 40)
                await store.copy_events(conn, rows(org_id, n))
                await asyncio.sleep(random.uniform(0, 0.02))
            written += n

    async def consume_until(done: asyncio.Event) -> None:
        while not done.is_set():
            await consumers.run(pool, consumers.EVENT_COUNTS, limit=50)
            await asyncio.sleep(0.002)

    done = asyncio.Event()
    reader = asyncio.create_task(consume_until(done))
    await asyncio.gather(*(writer() for _ in range(8)))
    done.set()
    await reader
    await consumers.run(pool, consumers.EVENT_COUNTS)
    assert await total_counted(pool) == written


async def test_a_second_runner_of_the_same_consumer_gets_nothing(
    pool: AsyncConnectionPool, org_id: int
) -> None:
    await write(pool, rows(org_id, 10))
    async with pool.connection() as conn:
        await store.ensure_position(conn, "event_counts")
        async with conn.transaction():
            assert await store.lock_position(conn, "event_counts") == (0, 0)
            assert await consumers.consume_batch(pool, consumers.EVENT_COUNTS, 100) is None
    assert await consumers.consume_batch(pool, consumers.EVENT_COUNTS, 100) == 10


async def test_custom_events_become_webhook_events(pool: AsyncConnectionPool, org_id: int) -> None:
    async with pool.connection() as conn:
        await conn.execute(
            "insert into webhook_endpoints (organization_id, url, event_types, secret)"
            " values (%s, 'https://example.org/hook', '{event.received}', 'whsec_x')",
            (org_id,),
        )
    await write(pool, rows(org_id, 3, "app.custom") + rows(org_id, 2, "donation.succeeded"))
    assert await consumers.run(pool, consumers.WEBHOOKS) == 5
    async with pool.connection() as conn:
        cur = await conn.execute("select type, data from webhook_events order by id")
        found: list[Any] = await cur.fetchall()
    assert [t for t, _ in found] == ["event.received"] * 3
    assert [d["type"] for _, d in found] == ["app.custom"] * 3
    assert [d["properties"]["n"] for _, d in found] == [0, 1, 2]


async def test_partition_maintenance_creates_ahead_and_drops_expired(
    pool: AsyncConnectionPool,
) -> None:
    today = datetime.now(UTC).date()
    async with pool.connection() as conn:
        await conn.execute(
            "create table events_p20200101 partition of events"
            " for values from ('2020-01-01 00:00+00') to ('2020-01-02 00:00+00')"
        )
        created, dropped = await store.maintain_partitions(conn, 3, 30)
        cur = await conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'events'::regclass order by 1"
        )
        names = [r[0] for r in await cur.fetchall()]
    assert dropped == ["events_p20200101"]
    ahead = [f"events_p{(today + timedelta(days=d)):%Y%m%d}" for d in range(4)]
    assert set(ahead) <= set(names) and "events_default" in names
    assert f"events_p{(today + timedelta(days=3)):%Y%m%d}" in created
    assert "events_p20200101" not in names
