"""``surge bench jobs``: enqueue N no-op jobs with COPY, drain them with real workers.

The scenario runs in a database of its own (``surge_bench_jobs``, dropped and re-created on
the server of ``SURGE_DATABASE_URL`` or the embedded one), so it never touches real jobs.
Workers are separate ``surge worker`` processes (``python -m surge.jobs worker``, the same
command without the other areas' imports). Drain time runs from the moment the first
worker has registered until every job is in ``job_history``.

Only the scenario's own jobs (kind ``surge.noop``) are counted: the worker that holds the
scheduler lease also enqueues and runs the periodic jobs (maintenance, rollups), which would
otherwise show up as negative ``lost`` and end the drain before the last no-op job.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import click
from psycopg import AsyncConnection

from surge.bench.common import (
    PeakRss,
    check_alive,
    fresh_database,
    report,
    scalar,
    stop_all,
    surge_process,
)
from surge.config import get_settings
from surge.db.pool import connect
from surge.db.runtime import database
from surge.jobs.enqueue import NewJob, enqueue_many

BENCH_DATABASE = "surge_bench_jobs"
#: The task the scenario enqueues; nothing else in the bench database runs it.
KIND = "surge.noop"


@dataclass
class Figures:
    enqueue_seconds: float = 0.0
    drain_seconds: float = 0.0
    finished: int = 0
    distinct: int = 0
    left_in_jobs: int = 0
    peak_rss: dict[str, float] = field(default_factory=dict)


@click.command("jobs")
@click.option("--jobs", "count", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs each worker runs at once, its largest claim batch (default: the setting).",
)
@click.option(
    "--timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Give up draining after this many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def jobs_command(
    count: int, workers: int, concurrency: int | None, timeout: float, as_json: bool
) -> None:
    """Enqueue N no-op jobs with COPY and drain them with worker processes."""
    started = time.monotonic()
    settings = get_settings()
    concurrency = concurrency or settings.worker_concurrency
    with database(settings) as url:
        figures = asyncio.run(run_scenario(url, count, workers, concurrency, timeout))
    params = {"jobs": count, "workers": workers, "concurrency": concurrency, "cpus": os.cpu_count()}
    result = _result(params, count, figures, time.monotonic() - started)
    report(result, as_json)


def _result(params: dict[str, Any], count: int, f: Figures, seconds: float) -> dict[str, Any]:
    return {
        "scenario": "jobs",
        "params": params,
        "enqueue_per_s": round(count / f.enqueue_seconds) if f.enqueue_seconds else None,
        "drain_per_s": round(f.finished / f.drain_seconds) if f.drain_seconds else None,
        "jobs": count,
        "lost": count - f.distinct,
        "duplicated": f.finished - f.distinct,
        "left_in_jobs": f.left_in_jobs,
        "peak_rss_mb": f.peak_rss,
        "seconds": round(seconds, 2),
    }


async def run_scenario(
    url: str, count: int, workers: int, concurrency: int, limit: float
) -> Figures:
    """Enqueue ``count`` no-op jobs in a fresh database and drain them with ``workers``."""
    bench_url = await fresh_database(url, BENCH_DATABASE)
    figures = Figures()
    conn = await connect(bench_url)
    try:
        t0 = time.perf_counter()
        async with conn.transaction():
            await enqueue_many(conn, (NewJob(KIND) for _ in range(count)))
        figures.enqueue_seconds = time.perf_counter() - t0
        procs = [_spawn_worker(bench_url, concurrency) for _ in range(workers)]
        try:
            await _drain(conn, procs, count, limit, figures)
        finally:
            stop_all(procs)
        cur = await conn.execute(
            "select count(*), count(distinct id) from job_history where kind = %s", [KIND]
        )
        figures.finished, figures.distinct = await cur.fetchone() or (0, 0)
        figures.left_in_jobs = await _left(conn)
    finally:
        await conn.close()
    return figures


def _spawn_worker(url: str, concurrency: int) -> subprocess.Popen[bytes]:
    args = ["worker", "--queues", "default", "--concurrency", str(concurrency)]
    return surge_process(url, args, module="surge.jobs")


async def _drain(
    conn: AsyncConnection[Any],
    procs: list[subprocess.Popen[bytes]],
    count: int,
    limit: float,
    figures: Figures,
) -> None:
    """Wait for every job to finish, sampling the workers' memory on the way."""
    rss = PeakRss({f"worker{i}": p.pid for i, p in enumerate(procs)})
    deadline = time.monotonic() + limit
    while await scalar(conn, "select count(*) from job_workers") == 0:
        check_alive(procs)
        await asyncio.sleep(0.005)
    t0 = time.perf_counter()
    while time.monotonic() < deadline:
        rss.sample()
        # The counters are cheap to poll but include periodic jobs, so reaching ``count``
        # is only a hint: the hot table, scanned then, says whether ours are all done.
        done = await scalar(
            conn, "select coalesce(sum(n), 0) from job_counters where outcome = 'completed'"
        )
        if done >= count and await _left(conn) == 0:
            break
        check_alive(procs)
        await asyncio.sleep(0.02)
    figures.drain_seconds = time.perf_counter() - t0
    figures.peak_rss = rss.megabytes()


async def _left(conn: AsyncConnection[Any]) -> int:
    """The scenario's jobs not yet finished."""
    return int(await scalar(conn, "select count(*) from jobs where kind = %s", [KIND]))
