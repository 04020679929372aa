"""A job's life after it is claimed: completion, failure, retry, discard, rescue, hand-back.

The worker runs in-process here (the e2e tests run the real ``surge worker``), against the
real database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from surge.config import Settings
from surge.db.pool import connect, open_pool
from surge.jobs import NewJob, enqueue, enqueue_many, task
from surge.jobs.complete import complete_jobs
from surge.jobs.fetch import claim
from surge.jobs.maintenance import maintain_history, take_lease
from surge.jobs.metrics import queue_metrics
from surge.jobs.registry import JobContext, Registry, Task, registry
from surge.jobs.rescue import rescue
from surge.jobs.schedule import enqueue_due
from surge.jobs.worker import Worker

SETTINGS = Settings(
    worker_poll_interval=0.02,
    worker_heartbeat_interval=0.1,
    worker_heartbeat_timeout=1.0,
    worker_shutdown_timeout=0.5,
)
release = asyncio.Event()


@task("test.life.flaky", max_attempts=5)
async def flaky(ctx: JobContext) -> None:
    """Fails its first attempt (default backoff), succeeds afterwards."""
    if ctx.job.attempt == 1:
        raise ValueError("first attempt always fails")


@task("test.life.atomic", max_attempts=1)
async def atomic(ctx: JobContext) -> None:
    """Writes business data and completes the job in one transaction."""
    async with ctx.pool.connection() as conn, conn.transaction():
        await conn.execute("insert into life_business (job_id) values (%s)", [ctx.job.id])
        await ctx.complete_in(conn)
        if ctx.job.args.get("fail"):
            raise RuntimeError("rolled back after complete_in")


@task("test.life.block", queue="critical")
async def block(ctx: JobContext) -> None:
    """Runs until the test releases it."""
    await release.wait()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConnection[Any]]:
    c = await connect(database_url)
    await c.execute("truncate jobs, job_history, job_counters, job_workers, job_leader, job_cron")
    await c.execute("create table if not exists life_business (job_id bigint)")
    yield c
    await c.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    p = await open_pool(database_url, max_size=8)
    yield p
    await p.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def value(conn: AsyncConnection[Any], sql: str, *params: Any) -> Any:
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


def own_tasks() -> Registry:
    """The registry without periodic tasks of Surge's domains that other test modules
    imported (webhook relay, event consumers): these tests count the jobs they make."""
    return Registry(
        {k: t for k, t in registry.tasks.items() if not t.periodic or k.startswith("test.")}
    )


def start(pool: AsyncConnectionPool, **kw: Any) -> tuple[Worker, asyncio.Task[None]]:
    kw.setdefault("queues", ["critical", "default", "bulk"])
    kw.setdefault("tasks", own_tasks())
    worker = Worker(pool, SETTINGS, **kw)
    return worker, asyncio.create_task(worker.run())


async def test_worker_completes_jobs_into_history_and_counts_them(
    conn: AsyncConnection[Any], pool: AsyncConnectionPool
) -> None:
    await enqueue_many(conn, [NewJob("surge.noop") for _ in range(500)])
    worker, running = start(pool, concurrency=20)
    await eventually(lambda: value(conn, "select count(*) = 500 from job_history"))
    worker.stop()
    await running
    assert await value(conn, "select count(*) from jobs") == 0
    assert await value(conn, "select count(distinct id) from job_history") == 500
    assert await value(conn, "select count(*) from job_workers") == 0
    stats = {s.queue: s for s in await queue_metrics(conn)}
    assert stats["default"].completed_total == 500
    assert stats["default"].counters["failed"] == 0


async def test_completed_jobs_land_in_todays_partition(
    conn: AsyncConnection[Any], pool: AsyncConnectionPool
) -> None:
    await enqueue(conn, "surge.noop")
    worker, running = start(pool)
    await eventually(lambda: value(conn, "select count(*) = 1 from job_history"))
    worker.stop()
    await running
    today = datetime.now(UTC).strftime("%Y%m%d")
    assert await value(conn, "select tableoid::regclass::text from job_history") == (
        f"job_history_p{today}"
    )


async def test_failing_job_is_retried_then_discarded_with_its_errors(
    conn: AsyncConnection[Any], pool: AsyncConnectionPool
) -> None:
    job_id = await enqueue(conn, "surge.fail", {"message": "smtp down"})
    worker, running = start(pool)
    await eventually(lambda: value(conn, "select count(*) = 1 from jobs where state = 'discarded'"))
    worker.stop()
    await running
    cur = await conn.execute("select attempt, last_error, errors from jobs where id = %s", [job_id])
    row = await cur.fetchone()
    assert row is not None
    attempt, last_error, errors = row
    assert attempt == 3
    assert last_error == "DeliberateFailure: smtp down"
    assert [e["attempt"] for e in errors] == [1, 2, 3]
    stats = {s.queue: s for s in await queue_metrics(conn)}["default"]
    assert (stats.failed_total, stats.retried_total, stats.discarded_total) == (3, 2, 1)
    assert stats.discarded == 1


async def test_failed_attempt_waits_for_exponential_backoff_with_jitter(
    conn: AsyncConnection[Any], pool: AsyncConnectionPool
) -> None:
    job_id = await enqueue(conn, "test.life.flaky")
    worker, running = start(pool)
    await eventually(lambda: value(conn, "select count(*) = 1 from jobs where state = 'retryable'"))
    worker.stop()
    await running
    delay = await value(
        conn, "select extract(epoch from run_at - now()) from jobs where id = %s", job_id
    )
    assert 0.5 < delay <= 3.0  # 2**1 s times a 0.5-1.5 jitter, minus the time elapsed
    await conn.execute("update jobs set run_at = now() where id = %s", [job_id])
    worker, running = start(pool)
    await eventually(lambda: value(conn, "select count(*) = 1 from job_history"))
    worker.stop()
    await running
    assert await value(conn, "select attempt from job_history where id = %s", job_id) == 2


async def test_complete_in_is_atomic_with_the_business_transaction(
    conn: AsyncConnection[Any], pool: AsyncConnectionPool
) -> None:
    ok = await enqueue(conn, "test.life.atomic", {"fail": False})
    bad = await enqueue(conn, "test.life.atomic", {"fail": True})
    worker, running = start(pool)
    await eventually(lambda: value(conn, "select count(*) = 1 from job_history"))
    await eventually(lambda: value(conn, "select count(*) = 1 from jobs where state = 'discarded'"))
    worker.stop()
    await running
    assert await value(conn, "select array_agg(job_id) from life_business") == [ok]
    assert await value(conn, "select id from job_history") == ok
    assert await value(conn, "select id from jobs") == bad
    stats = {s.queue: s for s in await queue_metrics(conn)}["default"]
    assert stats.completed_total == 1  # complete_in counted it; the worker's flush did not


async def test_completion_only_applies_to_the_worker_holding_the_job(
    conn: AsyncConnection[Any],
) -> None:
    job_id = await enqueue(conn, "surge.noop")
    assert job_id is not None
    await claim(conn, ["default"], 1, "first")
    # Rescued from "first" and re-claimed by "second" meanwhile:
    await conn.execute("update jobs set attempted_by = 'second' where id = %s", [job_id])
    await complete_jobs(conn, [job_id], "first")
    assert await value(conn, "select state from jobs where id = %s", job_id) == "running"
    await complete_jobs(conn, [job_id], "second")
    await complete_jobs(conn, [job_id], "second")
    assert await value(conn, "select count(*) from job_history where id = %s", job_id) == 1


async def test_rescue_returns_jobs_of_silent_workers_and_spares_slow_live_ones(
    conn: AsyncConnection[Any],
) -> None:
    await conn.execute(
        "insert into job_workers (id, queues, pid, host, heartbeat_at) values"
        " ('dead', '{default}', 1, 'h', now() - interval '1 minute'),"
        " ('live', '{default}', 2, 'h', now())"
    )
    dead_job = await enqueue(conn, "surge.noop")
    last_try = await enqueue(conn, "surge.noop", max_attempts=1)
    await claim(conn, ["default"], 2, "dead")
    live_job = await enqueue(conn, "surge.noop")
    await claim(conn, ["default"], 1, "live")
    await conn.execute(
        "update jobs set attempted_at = now() - interval '1 day' where id = %s", [live_job]
    )
    orphan = await enqueue(conn, "surge.noop")
    await claim(conn, ["default"], 1, "never-registered")

    assert await rescue(conn, 15) == (1, 3)

    cur = await conn.execute("select id, state, attempt, attempted_by, last_error from jobs")
    rows = {r[0]: r[1:] for r in await cur.fetchall()}
    assert rows[dead_job][:3] == ("retryable", 1, None)
    assert "stopped heart-beating" in rows[dead_job][3]
    assert rows[last_try][0] == "discarded"
    assert rows[orphan][0] == "retryable"
    assert rows[live_job][:3] == ("running", 1, "live")
    assert await value(conn, "select array_agg(id) from job_workers") == ["live"]


async def test_stopping_worker_finishes_short_jobs_and_hands_back_the_rest(
    conn: AsyncConnection[Any], pool: AsyncConnectionPool
) -> None:
    release.clear()
    blocked = await enqueue(conn, "test.life.block")
    short = await enqueue(conn, "surge.sleep", {"seconds": 0.2}, queue="critical")
    worker, running = start(pool, queues=["critical"])
    await eventually(lambda: value(conn, "select count(*) = 2 from jobs where state = 'running'"))
    worker.stop()
    await running  # waits shutdown_timeout (0.5 s) for `blocked`, then hands it back
    assert await value(conn, "select array_agg(id) from job_history") == [short]
    cur = await conn.execute(
        "select state, attempt, attempted_by from jobs where id = %s", [blocked]
    )
    assert await cur.fetchone() == ("available", 0, None)
    assert await value(conn, "select count(*) from job_workers") == 0


async def test_worker_serves_only_its_queues(
    conn: AsyncConnection[Any], pool: AsyncConnectionPool
) -> None:
    bulk = await enqueue(conn, "surge.noop", queue="bulk")
    critical = await enqueue(conn, "surge.noop", queue="critical")
    worker, running = start(pool, queues=["critical", "default"])
    await eventually(lambda: value(conn, "select count(*) = 1 from job_history"))
    await asyncio.sleep(0.2)
    worker.stop()
    await running
    assert await value(conn, "select array_agg(id) from job_history") == [critical]
    assert await value(conn, "select array_agg(id) from jobs") == [bulk]


async def test_one_leader_at_a_time_and_takeover_after_expiry(conn: AsyncConnection[Any]) -> None:
    assert await take_lease(conn, "w1", 60)
    assert not await take_lease(conn, "w2", 60)
    assert await take_lease(conn, "w1", 60)  # renewal
    await conn.execute("update job_leader set expires_at = now() - interval '1 second'")
    assert await take_lease(conn, "w2", 60)
    assert not await take_lease(conn, "w1", 60)


async def test_cron_slot_is_enqueued_once_with_two_leaders_racing(
    conn: AsyncConnection[Any], database_url: str
) -> None:
    async def nothing(ctx: JobContext) -> None:
        """Never run here."""

    every_minute = Task("test.life.cron", nothing, queue="bulk", cron="* * * * *")
    leaders = [await connect(database_url) for _ in range(2)]
    try:
        for minute in range(5):
            now = datetime(2026, 1, 1, 12, minute, 30, tzinfo=UTC)
            for _ in range(3):  # several ticks within the same slot
                await asyncio.gather(*(enqueue_due(c, [every_minute], now) for c in leaders))
    finally:
        for c in leaders:
            await c.close()
    cur = await conn.execute("select run_at, queue from jobs order by run_at")
    slots = await cur.fetchall()
    assert [r[0].minute for r in slots] == [0, 1, 2, 3, 4]
    assert {r[1] for r in slots} == {"bulk"}


async def test_interval_task_runs_once_per_interval_slot(conn: AsyncConnection[Any]) -> None:
    async def nothing(ctx: JobContext) -> None:
        """Never run here."""

    every_10s = Task("test.life.every", nothing, every=10)
    base = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    for second in (0, 3, 9.9, 10, 15, 21):
        await enqueue_due(conn, [every_10s], datetime.fromtimestamp(base + second, UTC))
    assert await value(conn, "select count(*) from jobs") == 3


async def test_leader_worker_enqueues_registered_periodic_tasks(
    conn: AsyncConnection[Any], pool: AsyncConnectionPool
) -> None:
    @task("test.life.periodic", every=3600)
    async def hourly(ctx: JobContext) -> None:
        """Runs once an hour."""

    worker, running = start(pool)
    try:
        await eventually(lambda: value(conn, "select count(*) = 1 from job_history"))
    finally:
        worker.stop()
        await running
        del registry.tasks[hourly.kind]  # the other tests' workers must not schedule it
    assert await value(conn, "select kind from job_history") == "test.life.periodic"
    assert await value(conn, "select count(*) from job_cron") == 1


async def test_queue_metrics_reports_depths_per_queue(conn: AsyncConnection[Any]) -> None:
    await enqueue(conn, "surge.noop", queue="critical")
    await enqueue(conn, "surge.noop", queue="critical", run_at=datetime(2099, 1, 1, tzinfo=UTC))
    await enqueue(conn, "surge.noop", queue="bulk")
    await claim(conn, ["bulk"], 1, "w")
    stats = {s.queue: s for s in await queue_metrics(conn)}
    assert stats["critical"].states == {
        "available": 1,
        "running": 0,
        "scheduled": 1,
        "retryable": 0,
        "discarded": 0,
    }
    assert stats["bulk"].running == 1
    assert stats["default"].states["available"] == 0


async def test_history_maintenance_creates_days_ahead_and_drops_expired_days(
    conn: AsyncConnection[Any],
) -> None:
    await conn.execute(
        "create table job_history_p20000101 partition of job_history"
        " for values from ('2000-01-01 00:00Z') to ('2000-01-02 00:00Z')"
    )
    await maintain_history(conn, keep_days=7)
    cur = await conn.execute(
        "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
        " where i.inhparent = 'job_history'::regclass order by 1"
    )
    names = [r[0] for r in await cur.fetchall()]
    today = datetime.now(UTC).date()
    ahead = [f"job_history_p{(today + timedelta(days=d)):%Y%m%d}" for d in range(3)]
    assert set(ahead) <= set(names)
    assert "job_history_default" in names
    assert "job_history_p20000101" not in names


@task("test.life.hog")
async def hog(ctx: JobContext) -> None:
    """Holds one of the task pool's connections for a while."""
    async with ctx.pool.connection():
        await asyncio.sleep(float(ctx.job.args["seconds"]))


async def test_tasks_holding_every_connection_do_not_delay_the_heartbeat(
    conn: AsyncConnection[Any], database_url: str
) -> None:
    task_pool = await open_pool(database_url, max_size=2)
    engine_pool = await open_pool(database_url, max_size=4)
    try:
        await enqueue_many(conn, [NewJob("test.life.hog", {"seconds": 2}) for _ in range(3)])
        worker = Worker(
            task_pool,
            SETTINGS,
            queues=["default"],
            concurrency=3,
            engine_pool=engine_pool,
            tasks=own_tasks(),
        )
        running = asyncio.create_task(worker.run())
        await eventually(
            lambda: value(conn, "select count(*) = 3 from jobs where state = 'running'")
        )
        beat = "select heartbeat_at from job_workers"
        first = await value(conn, beat)
        await asyncio.sleep(0.5)  # five heartbeat intervals, all connections taken by tasks
        assert await value(conn, beat) > first
        worker.stop()
        await running
    finally:
        await task_pool.close()
        await engine_pool.close()
