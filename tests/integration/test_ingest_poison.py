"""Poison events and rows: one bad event never fails others, nor stops a consumer.

Bad rows go straight to the writer or the events table, bypassing intake validation (which
may come to refuse them earlier): what is under test is what happens once they got that far.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from surge.db.group_commit import GroupCommitWriter, Rejected
from surge.db.pool import open_pool
from surge.ingest import consumers, store
from surge.ingest.consumers import Consumer
from surge.ingest.store import Conn, Event, Row
from tests.conftest import Process, create_org, surge_env

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
#: Past Python's int max str digits (4,300): json.loads and psycopg's jsonb loader refuse it.
HUGE = "9" * 5000
#: jsonb refuses these: a number past numeric's range, and text that is not JSON.
BAD_PAYLOADS = ['{"n": 1e-99999}', '{"n": ']
#: occurred_at at the edges of what intake accepts: year 0 and year 10000 in UTC.
EDGES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


@pytest.fixture(scope="module")
def orgs(database_url: str) -> list[int]:
    return [int(create_org(database_url, f"Poison Org {i}")["id"]) for i in range(2)]


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = await open_pool(database_url, max_size=10)
    async with pool.connection() as conn:
        await conn.execute(
            "truncate events, event_counts, consumer_positions, event_failures,"
            " webhook_events, webhook_endpoints cascade"
        )
    yield pool
    await pool.close()


def rows(org_id: int, n: int, type_: str = "app.good", payload: str = '{"ok": true}') -> list[Row]:
    return [(org_id, type_, None, None, None, payload, T0, None, None, None) for _ in range(n)]


async def scalar(pool: AsyncConnectionPool, query: str, *params: Any) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        assert row is not None
        return row[0]


# -- the group-commit writer: a bad row fails its own request only --------------------------


async def test_bad_rows_in_a_flush_fail_only_their_requests(
    pool: AsyncConnectionPool, orgs: list[int]
) -> None:
    # A long max_delay: every request below joins the same flush.
    writer: GroupCommitWriter[Row] = GroupCommitWriter(
        pool, store.copy_events, max_delay=0.2, name="poison", transaction=False
    )
    writer.start()
    try:
        good = [writer.write(rows(orgs[i % 2], 3)) for i in range(8)]
        bad = [
            writer.write(rows(orgs[0], 2) + rows(orgs[0], 1, "app.bad", payload))
            for payload in BAD_PAYLOADS
        ]
        results = await asyncio.gather(*good[:4], *bad, *good[4:], return_exceptions=True)
    finally:
        await writer.close()
    refused = results[4:6]
    assert [r for r in results if r not in refused] == [None] * 8
    for error in refused:
        assert isinstance(error, Rejected), error
        assert (error.row, error.column) == (2, "payload")
    assert "numeric" in str(refused[0]) and "json" in str(refused[1]).lower()
    assert await scalar(pool, "select count(*) from events where type = 'app.good'") == 24
    # A refused request stored nothing, not even its good rows.
    assert await scalar(pool, "select count(*) from events where type <> 'app.good'") == 0


async def test_a_writer_keeps_working_after_a_refused_flush(
    pool: AsyncConnectionPool, orgs: list[int]
) -> None:
    writer: GroupCommitWriter[Row] = GroupCommitWriter(
        pool, store.copy_events, max_delay=0.01, name="poison", transaction=False
    )
    writer.start()
    try:
        with pytest.raises(Rejected):
            await writer.write(rows(orgs[0], 1, "app.bad", BAD_PAYLOADS[0]))
        await writer.write(rows(orgs[0], 5))
    finally:
        await writer.close()
    assert await scalar(pool, "select count(*) from events") == 5


# -- consumers: extreme but valid events are processed ---------------------------------------


def test_minute_of_times_past_datetimes_range_is_its_edge() -> None:
    year_one = datetime.fromisoformat(EDGES[0])
    year_max = datetime.fromisoformat(EDGES[1])
    assert consumers._minute(year_one) == datetime(1, 1, 1, tzinfo=UTC)
    assert consumers._minute(year_max) == datetime(9999, 12, 31, 23, 59, tzinfo=UTC)


async def insert_events(pool: AsyncConnectionPool, values: list[tuple[int, str, str, str]]) -> None:
    """(organisation, type, payload, occurred_at) rows, straight into the table."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.executemany(
            "insert into events (organization_id, type, payload, occurred_at)"
            " values (%s, %s, %s::jsonb, %s::timestamptz)",
            values,
        )


def hostile_events(org_id: int) -> list[tuple[int, str, str, str]]:
    good = (org_id, "app.good", '{"ok": true}', T0.isoformat())
    return [
        good,
        (org_id, "app.year_edge", "{}", EDGES[0]),
        (org_id, "app.year_edge", "{}", EDGES[1]),
        (org_id, "app.huge", f'{{"n": {HUGE}}}', T0.isoformat()),
        good,
    ]


async def subscribe_all(pool: AsyncConnectionPool, orgs: list[int]) -> None:
    async with pool.connection() as conn:
        for org_id in orgs:
            # Port 9 refuses connections: deliveries fail, which is not under test here.
            await conn.execute(
                "insert into webhook_endpoints (organization_id, url, event_types, secret)"
                " values (%s, 'http://127.0.0.1:9/hook', '{event.received}', 'whsec_x')",
                (org_id,),
            )


async def test_events_at_the_edges_of_time_and_number_are_processed_by_every_consumer(
    pool: AsyncConnectionPool, orgs: list[int]
) -> None:
    await subscribe_all(pool, orgs)
    await insert_events(pool, [e for org_id in orgs for e in hostile_events(org_id)])
    for consumer in consumers.CONSUMERS:
        assert await consumers.run(pool, consumer) == 10
    assert await scalar(pool, "select count(*) from event_failures") == 0
    async with pool.connection() as conn:
        for org_id in orgs:
            counts = await store.counts_since(conn, org_id, datetime(1, 1, 1, tzinfo=UTC))
            assert counts == [
                ("app.year_edge", datetime(1, 1, 1, tzinfo=UTC), 1),
                ("app.good", T0, 2),
                ("app.huge", T0, 1),
                ("app.year_edge", datetime(9999, 12, 31, 23, 59, tzinfo=UTC), 1),
            ]
    # The webhook carries the number as stored, every digit of it.
    digits = await scalar(
        pool,
        "select length((data->'properties'->'n')::text) from webhook_events"
        " where data->>'type' = 'app.huge' and organization_id = %s",
        orgs[1],
    )
    assert digits == len(HUGE)
    assert await scalar(pool, "select count(*) from webhook_events") == 10


# -- consumers: an event the handler fails on is set aside -----------------------------------


async def decode_then_count(conn: Conn, events: list[Event]) -> None:
    """A handler that reads properties the usual way: fails on a number Python can't hold."""
    for event in events:
        json.loads(event.payload)
    await consumers.count_events(conn, events)


DECODING = Consumer("decoding_counts", decode_then_count)


async def test_a_poison_event_is_set_aside_and_the_rest_of_its_batch_counted_once(
    pool: AsyncConnectionPool, orgs: list[int]
) -> None:
    await insert_events(pool, [e for org_id in orgs for e in hostile_events(org_id)] * 3)
    assert await consumers.run(pool, DECODING, limit=7) == 30
    async with pool.connection() as conn:
        failed = await store.failures(conn, "decoding_counts", 100)
        cur = await conn.execute("select max(id) from events where type = 'app.huge'")
        last_poison = (await cur.fetchone() or [None])[0]
    assert len(failed) == 6
    assert {f[3] for f in failed} == set(orgs)
    assert all("ValueError" in f[4] and "digits" in f[4] for f in failed)
    assert last_poison in {f[1] for f in failed}
    # Every other event counted exactly once, in both organisations.
    assert await scalar(pool, "select sum(count) from event_counts") == 24
    for org_id in orgs:
        assert (
            await scalar(
                pool, "select sum(count) from event_counts where organization_id = %s", org_id
            )
            == 12
        )
    # And the consumer goes on: new events after the poison are processed.
    await insert_events(pool, hostile_events(orgs[0])[:1])
    assert await consumers.run(pool, DECODING) == 1
    assert await scalar(pool, "select sum(count) from event_counts") == 25
    assert await scalar(pool, "select count(*) from event_failures") == 6


def failures_cli(database_url: str, *args: str) -> list[dict[str, Any]]:
    """``surge events failures --json``, as a subprocess (the command module on its own)."""
    code = "from surge.ingest.cli import events_group; events_group.main(prog_name='surge events')"
    proc = subprocess.run(
        [sys.executable, "-c", code, "failures", "--json", *args],
        env=surge_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


async def test_set_aside_events_are_listed_by_the_cli_newest_first(
    pool: AsyncConnectionPool, orgs: list[int], database_url: str
) -> None:
    await insert_events(pool, hostile_events(orgs[0]) + hostile_events(orgs[1]))
    await consumers.run(pool, DECODING)
    listed = await asyncio.to_thread(failures_cli, database_url, "--consumer", "decoding_counts")
    assert [f["organization_id"] for f in listed] == [orgs[1], orgs[0]]
    assert all(f["consumer"] == "decoding_counts" and "digits" in f["error"] for f in listed)
    assert await asyncio.to_thread(failures_cli, database_url, "--consumer", "webhooks") == []


async def test_a_handler_failing_on_every_event_sets_each_aside_without_writing_any(
    pool: AsyncConnectionPool, orgs: list[int]
) -> None:
    async def count_then_fail(conn: Conn, events: list[Event]) -> None:
        await consumers.count_events(conn, events)
        raise KeyError("missing")

    await insert_events(pool, [(orgs[0], "app.x", "{}", T0.isoformat())] * 4)
    assert await consumers.run(pool, Consumer("always_failing", count_then_fail)) == 4
    assert await scalar(pool, "select count(*) from event_failures") == 4
    # Each failed call's writes were rolled back with its savepoint.
    assert await scalar(pool, "select count(*) from event_counts") == 0


# -- the real worker: every consumer advances past the poison, for every organisation --------


@pytest.fixture(scope="module")
def poisoned(database_url: str, orgs: list[int]) -> Iterator[None]:
    """Hostile events for both organisations, committed before the worker starts."""

    async def setup() -> None:
        pool = await open_pool(database_url, max_size=2)
        try:
            async with pool.connection() as conn:
                await conn.execute(
                    "truncate events, event_counts, consumer_positions, event_failures,"
                    " webhook_events, webhook_endpoints cascade"
                )
            await subscribe_all(pool, orgs)
            await insert_events(pool, [e for org_id in orgs for e in hostile_events(org_id)])
        finally:
            await pool.close()

    asyncio.run(setup())
    yield


def eventually(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_the_worker_moves_every_consumer_past_hostile_events(
    database_url: str, orgs: list[int], poisoned: None, worker: Process
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:

        def query(sql: str) -> Any:
            row = conn.execute(sql).fetchone()
            assert row is not None
            return row[0]

        last = query("select max(id) from events")

        def caught_up() -> bool:
            names = [c.name for c in consumers.CONSUMERS]
            done = query(
                f"select count(*) from consumer_positions where last_id = {int(last)}"
                f" and name = any(array{names!r})"
            )
            return bool(done == len(names))

        eventually(caught_up)
        # Good events after the hostile ones: processed, and once.
        assert query("select sum(count) from event_counts") == 10
        assert query("select count(*) from webhook_events") == 10
        assert query("select count(*) from event_failures") == 0
        for org_id in orgs:
            assert (
                query(
                    f"select sum(count) from event_counts where organization_id = {org_id}"
                    " and type = 'app.good'"
                )
                == 2
            )
