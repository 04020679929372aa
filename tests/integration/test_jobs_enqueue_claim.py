"""Putting jobs in and claiming them, on the real database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection

from surge.db.pool import connect
from surge.jobs import NewJob, enqueue, enqueue_many, task
from surge.jobs.fetch import claim
from surge.jobs.registry import JobContext, UnknownTask


@task("test.claim.bulk_thing", queue="bulk", max_attempts=7)
async def bulk_thing(ctx: JobContext) -> None:
    """Registered only so that enqueue can default its queue and attempts."""


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConnection[Any]]:
    c = await connect(database_url)
    await c.execute("truncate jobs, job_history, job_counters")
    yield c
    await c.close()


async def states(conn: AsyncConnection[Any]) -> dict[int, tuple[str, str | None]]:
    cur = await conn.execute("select id, state, attempted_by from jobs")
    return {r[0]: (r[1], r[2]) for r in await cur.fetchall()}


async def test_enqueue_defaults_queue_and_attempts_from_the_task(
    conn: AsyncConnection[Any],
) -> None:
    job_id = await enqueue(conn, "test.claim.bulk_thing", {"n": 1}, organization_id=None)
    cur = await conn.execute(
        "select queue, max_attempts, args, state from jobs where id = %s", [job_id]
    )
    assert await cur.fetchone() == ("bulk", 7, {"n": 1}, "available")


async def test_enqueue_of_unregistered_kind_needs_a_queue(conn: AsyncConnection[Any]) -> None:
    with pytest.raises(UnknownTask):
        await enqueue(conn, "test.claim.nobody")
    assert await enqueue(conn, "test.claim.nobody", queue="critical") is not None


async def test_rolled_back_transactional_enqueue_leaves_no_job(conn: AsyncConnection[Any]) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with conn.transaction():
            await conn.execute("create temporary table business (x int)")
            await enqueue(conn, "surge.noop")
            raise Abort
    assert await states(conn) == {}
    async with conn.transaction():
        job_id = await enqueue(conn, "surge.noop")
    assert job_id in await states(conn)


async def test_unique_key_enqueues_once(conn: AsyncConnection[Any]) -> None:
    first = await enqueue(conn, "surge.noop", unique_key="receipt:42")
    second = await enqueue(conn, "surge.noop", unique_key="receipt:42")
    assert first is not None
    assert second is None
    assert list(await states(conn)) == [first]


async def test_enqueue_many_copies_every_job(conn: AsyncConnection[Any]) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    jobs = [NewJob("surge.noop", {"i": i}) for i in range(1000)]
    jobs.append(NewJob("test.claim.bulk_thing", {"big": "x" * 100}, run_at=later, priority=3))
    jobs.append(NewJob("surge.noop", queue="critical", organization_id=5, max_attempts=2))
    assert await enqueue_many(conn, jobs) == 1002
    cur = await conn.execute(
        "select queue, count(*), sum((args->>'i')::int), max(priority), max(run_at) > now()"
        " from jobs group by queue order by queue"
    )
    assert await cur.fetchall() == [
        ("bulk", 1, None, 3, True),
        ("critical", 1, None, 0, False),
        ("default", 1000, sum(range(1000)), 0, False),
    ]


async def test_claim_serves_only_given_queues_in_order(conn: AsyncConnection[Any]) -> None:
    bulk = await enqueue(conn, "surge.noop", queue="bulk")
    default = await enqueue(conn, "surge.noop", queue="default")
    critical = await enqueue(conn, "surge.noop", queue="critical")
    got = await claim(conn, ["critical", "default"], 10, "w1")
    assert [j.id for j in got] == [critical, default]
    assert all(j.attempt == 1 for j in got)
    found = await states(conn)
    assert found == {
        critical: ("running", "w1"),
        default: ("running", "w1"),
        bulk: ("available", None),
    }


async def test_claim_takes_due_jobs_by_priority_and_never_future_ones(
    conn: AsyncConnection[Any],
) -> None:
    future = await enqueue(conn, "surge.noop", run_at=datetime.now(UTC) + timedelta(minutes=5))
    low = await enqueue(conn, "surge.noop", priority=5)
    high = await enqueue(conn, "surge.noop", priority=-1)
    got = await claim(conn, ["default"], 10, "w1")
    assert [j.id for j in got] == [high, low]
    assert future not in [j.id for j in got]
    assert await claim(conn, ["default"], 10, "w1") == []


async def test_claim_batch_is_limited_to_free_slots(conn: AsyncConnection[Any]) -> None:
    await enqueue_many(conn, [NewJob("surge.noop") for _ in range(25)])
    assert len(await claim(conn, ["default"], 10, "w1")) == 10
    assert len(await claim(conn, ["default"], 100, "w1")) == 15


async def test_concurrent_claimers_never_get_the_same_job(
    conn: AsyncConnection[Any], database_url: str
) -> None:
    await enqueue_many(conn, [NewJob("surge.noop") for _ in range(3000)])
    claimers = [await connect(database_url) for _ in range(4)]

    async def drain(c: AsyncConnection[Any], name: str) -> list[int]:
        ids: list[int] = []
        while batch := await claim(c, ["default"], 37, name):
            ids.extend(j.id for j in batch)
            await asyncio.sleep(0)
        return ids

    try:
        results = await asyncio.gather(*(drain(c, f"w{i}") for i, c in enumerate(claimers)))
    finally:
        for c in claimers:
            await c.close()
    every = [i for ids in results for i in ids]
    assert len(every) == 3000
    assert len(set(every)) == 3000
    assert all(results), "every claimer got some jobs"
    cur = await conn.execute("select attempted_by, count(*) from jobs group by 1")
    by_worker = dict(await cur.fetchall())
    assert by_worker == {f"w{i}": len(r) for i, r in enumerate(results)}
