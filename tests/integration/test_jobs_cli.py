"""``surge jobs failed|retry|cancel|stats`` as an operator runs them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.conftest import run_cli


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("truncate jobs, job_history")
        yield conn


def add_job(conn: psycopg.Connection[Any], state: str, queue: str = "default", **cols: Any) -> int:
    row = conn.execute(
        "insert into jobs (queue, kind, state, attempt, max_attempts, last_error, run_at)"
        " values (%s, %s, %s, %s, 3, %s, coalesce(%s, now())) returning id",
        [
            queue,
            cols.get("kind", "mail.send"),
            state,
            cols.get("attempt", 0),
            cols.get("last_error"),
            cols.get("run_at"),
        ],
    ).fetchone()
    assert row is not None
    return int(row[0])


def discarded(conn: psycopg.Connection[Any], queue: str = "default", error: str = "boom") -> int:
    return add_job(conn, "discarded", queue, attempt=3, last_error=error)


def test_failed_lists_discarded_jobs_with_their_last_error(
    db: psycopg.Connection[Any], database_url: str
) -> None:
    bulk = discarded(db, "bulk", "Traceback...\nSMTPError: 554 rejected")
    critical = discarded(db, "critical", "KeyError: 'amount'")
    add_job(db, "available")
    out = run_cli(database_url, "jobs", "failed").stdout.splitlines()
    assert out[0].split("\t") == ["id", "kind", "queue", "attempts", "last_error"]
    assert out[1:] == [
        f"{critical}\tmail.send\tcritical\t3/3\tKeyError: 'amount'",
        f"{bulk}\tmail.send\tbulk\t3/3\tSMTPError: 554 rejected",
    ]
    only_bulk = run_cli(database_url, "jobs", "failed", "--queue", "bulk").stdout.splitlines()
    assert [line.split("\t")[0] for line in only_bulk[1:]] == [str(bulk)]
    limited = run_cli(database_url, "jobs", "failed", "--limit", "1").stdout.splitlines()
    assert len(limited) == 2


def test_retry_makes_discarded_jobs_available_with_attempts_reset(
    db: psycopg.Connection[Any],
    database_url: str,
) -> None:
    a, b = discarded(db), discarded(db)
    out = run_cli(database_url, "jobs", "retry", str(a), str(b)).stdout
    assert "retried 2" in out
    rows = db.execute("select state, attempt, run_at <= now() from jobs order by id").fetchall()
    assert rows == [("available", 0, True), ("available", 0, True)]
    assert run_cli(database_url, "jobs", "failed").stdout.count("\n") == 1


def test_retry_of_unknown_id_is_a_one_line_error_and_changes_nothing(
    db: psycopg.Connection[Any],
    database_url: str,
) -> None:
    known = discarded(db)
    proc = run_cli(database_url, "jobs", "retry", str(known), "987654", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "Error: no such job: 987654"
    assert db.execute("select state from jobs").fetchone() == ("discarded",)


def test_retry_of_a_running_job_is_refused(db: psycopg.Connection[Any], database_url: str) -> None:
    running = add_job(db, "running", attempt=1)
    proc = run_cli(database_url, "jobs", "retry", str(running), check=False)
    assert proc.returncode != 0
    assert f"{running} (running)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cancel_moves_waiting_jobs_to_history_as_cancelled(
    db: psycopg.Connection[Any], database_url: str
) -> None:
    available = add_job(db, "available")
    scheduled = add_job(db, "available", run_at="2099-01-01T00:00:00Z")
    retryable = add_job(db, "retryable", attempt=1)
    out = run_cli(database_url, "jobs", "cancel", str(available), str(scheduled), str(retryable))
    assert "cancelled 3" in out.stdout
    assert db.execute("select count(*) from jobs").fetchone() == (0,)
    rows = db.execute("select id, state from job_history order by id").fetchall()
    assert rows == [(available, "cancelled"), (scheduled, "cancelled"), (retryable, "cancelled")]


def test_cancel_refuses_running_and_unknown_jobs(
    db: psycopg.Connection[Any], database_url: str
) -> None:
    running = add_job(db, "running", attempt=1)
    proc = run_cli(database_url, "jobs", "cancel", str(running), check=False)
    assert proc.returncode != 0
    assert "cannot be cancelled" in proc.stderr
    proc = run_cli(database_url, "jobs", "cancel", "424242", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "Error: no such job: 424242"
    assert db.execute("select state from jobs").fetchone() == ("running",)


def test_stats_counts_jobs_per_queue_and_state(
    db: psycopg.Connection[Any], database_url: str
) -> None:
    add_job(db, "available", "critical")
    add_job(db, "available", "critical")
    discarded(db, "bulk")
    lines = run_cli(database_url, "jobs", "stats").stdout.splitlines()
    header = lines[0].split("\t")
    rows = {
        line.split("\t")[0]: dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]
    }
    assert rows["critical"]["available"] == "2"
    assert rows["bulk"]["discarded"] == "1"
    assert rows["default"]["running"] == "0"


def test_worker_rejects_unknown_queues(db: psycopg.Connection[Any], database_url: str) -> None:
    proc = run_cli(database_url, "worker", "--queues", "critical,urgent", check=False)
    assert proc.returncode != 0
    assert "critical, default, bulk" in proc.stderr
