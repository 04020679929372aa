"""The real ``surge worker``: killed with -9 mid-job, or stopped with SIGTERM mid-job."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.conftest import Process, surge_env

ROOT = Path(__file__).resolve().parents[2]
TASKS = "tests.e2e.test_jobs_tasks"


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("truncate jobs, job_history, job_workers, job_leader")
        conn.execute(
            "create table if not exists e2e_runs (job_id bigint, attempt int, pid int,"
            " at timestamptz default clock_timestamp())"
        )
        conn.execute("truncate e2e_runs")
        yield conn


def start_worker(database_url: str, *args: str, **env: str) -> Process:
    return Process(
        ["worker", "--tasks-module", TASKS, *args],
        surge_env(
            database_url,
            PYTHONPATH=str(ROOT),  # so that the worker can import the tests' task module
            SURGE_WORKER_HEARTBEAT_INTERVAL="0.5",
            SURGE_WORKER_HEARTBEAT_TIMEOUT="2",
            **env,
        ),
    )


def enqueue_sleep(conn: psycopg.Connection[Any], seconds: float, queue: str = "default") -> int:
    row = conn.execute(
        "insert into jobs (queue, kind, args) values (%s, 'test.e2e.record_and_sleep', %s)"
        " returning id",
        [queue, Jsonb({"seconds": seconds})],
    ).fetchone()
    assert row is not None
    return int(row[0])


def wait_for(check: Callable[[], bool], timeout: float, worker: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if worker is not None and worker.proc.poll() is not None:
            raise AssertionError("worker exited:\n" + worker.stop())
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def scalar(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_job_of_a_killed_worker_is_rescued_and_completed_exactly_once(
    db: psycopg.Connection[Any], database_url: str
) -> None:
    first = start_worker(database_url, "--queues", "default")
    job_id = enqueue_sleep(db, 1.0)
    wait_for(lambda: scalar(db, "select count(*) from e2e_runs") == 1, 15, first)
    first.kill()  # SIGKILL mid-job: no hand-back, its row and its running job stay behind
    assert scalar(db, "select state from jobs where id = %s", job_id) == "running"

    second = start_worker(database_url, "--queues", "default")
    try:
        wait_for(
            lambda: scalar(db, "select count(*) from job_history where id = %s", job_id) == 1,
            20,
            second,
        )
    finally:
        out = second.stop()
    assert second.proc.returncode == 0, out
    runs = db.execute("select attempt, pid from e2e_runs order by at").fetchall()
    assert [r[0] for r in runs] == [1, 2]
    assert runs[0][1] == first.proc.pid
    assert runs[1][1] == second.proc.pid
    history = db.execute(
        "select state, attempt, errors from job_history where id = %s", [job_id]
    ).fetchall()
    assert len(history) == 1
    state, attempt, errors = history[0]
    assert (state, attempt) == ("completed", 2)
    assert "stopped heart-beating" in errors[0]["error"]
    assert scalar(db, "select count(*) from jobs where id = %s", job_id) == 0
    assert scalar(db, "select count(*) from job_workers") == 0


def test_sigterm_drains_short_jobs_hands_back_long_ones_and_exits_zero(
    db: psycopg.Connection[Any], database_url: str
) -> None:
    worker = start_worker(
        database_url, "--queues", "critical,default", SURGE_WORKER_SHUTDOWN_TIMEOUT="1.5"
    )
    short = enqueue_sleep(db, 0.5)
    long = enqueue_sleep(db, 60, queue="critical")
    bulk = enqueue_sleep(db, 0, queue="bulk")
    wait_for(lambda: scalar(db, "select count(*) from e2e_runs") == 2, 15, worker)
    started = time.monotonic()
    out = worker.stop()  # SIGTERM
    assert worker.proc.returncode == 0, out
    assert time.monotonic() - started < 10
    # This test's own jobs only: the leader also enqueues the built-in periodic tasks.
    mine = "kind = 'test.e2e.record_and_sleep'"
    assert scalar(db, f"select array_agg(id) from job_history where {mine}") == [short]
    rows = db.execute(
        f"select id, state, attempt, attempted_by from jobs where {mine} order by id"
    ).fetchall()
    assert rows == [(long, "available", 0, None), (bulk, "available", 0, None)]
    assert scalar(db, "select count(*) from job_workers") == 0
    assert scalar(db, "select count(*) from job_leader") == 0
