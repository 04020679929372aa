"""``surge bench jobs``: enqueue N no-op jobs with COPY, drain them with real workers.

The scenario runs in a database of its own (``surge_bench_jobs``, dropped and re-created on
the server of ``SURGE_DATABASE_URL`` or the embedded one), so it never touches real jobs.
Workers are separate ``surge worker`` processes (``python -m surge.jobs worker``, the same
command without the other areas' imports). Drain time runs from the moment the first
worker has registered until every job is in ``job_history``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import psutil
from psycopg import AsyncConnection, sql

from surge.config import get_settings
from surge.db.migrate import migrate
from surge.db.pool import connect
from surge.db.runtime import database
from surge.jobs.enqueue import NewJob, enqueue_many

BENCH_DATABASE = "surge_bench_jobs"


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
        figures = asyncio.run(_run(url, count, workers, concurrency, timeout))
    params = {"jobs": count, "workers": workers, "concurrency": concurrency, "cpus": os.cpu_count()}
    result = _result(params, count, figures, time.monotonic() - started)
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, val in result.items():
            click.echo(f"{key}: {val}")


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


async def _run(url: str, count: int, workers: int, concurrency: int, limit: float) -> Figures:
    bench_url = await _fresh_database(url)
    figures = Figures()
    conn = await connect(bench_url)
    try:
        t0 = time.perf_counter()
        async with conn.transaction():
            await enqueue_many(conn, (NewJob("surge.noop") for _ in range(count)))
        figures.enqueue_seconds = time.perf_counter() - t0
        procs = [_spawn_worker(bench_url, concurrency) for _ in range(workers)]
        try:
            await _drain(conn, procs, count, limit, figures)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
        cur = await conn.execute("select count(*), count(distinct id) from job_history")
        figures.finished, figures.distinct = await cur.fetchone() or (0, 0)
        cur = await conn.execute("select count(*) from jobs")
        figures.left_in_jobs = ((await cur.fetchone()) or (0,))[0]
    finally:
        await conn.close()
    return figures


async def _fresh_database(url: str) -> str:
    """Drop and re-create the bench database on ``url``'s server, migrated."""
    admin = await connect(url)
    try:
        name = sql.Identifier(BENCH_DATABASE)
        await admin.execute(sql.SQL("drop database if exists {} with (force)").format(name))
        await admin.execute(sql.SQL("create database {}").format(name))
    finally:
        await admin.close()
    bench_url = urlunsplit(urlsplit(url)._replace(path="/" + BENCH_DATABASE))
    conn = await connect(bench_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return bench_url


def _spawn_worker(url: str, concurrency: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGE_")}
    env.update({"SURGE_DATABASE_URL": url, "SURGE_LOG_LEVEL": "WARNING"})
    cmd = [
        sys.executable,
        "-m",
        "surge.jobs",
        "worker",
        "--queues",
        "default",
        "--concurrency",
        str(concurrency),
    ]
    return subprocess.Popen(cmd, env=env)


async def _drain(
    conn: AsyncConnection[Any],
    procs: list[subprocess.Popen[bytes]],
    count: int,
    limit: float,
    figures: Figures,
) -> None:
    """Wait for every job to finish, sampling the workers' memory on the way."""
    watched = [psutil.Process(p.pid) for p in procs]
    peaks = dict.fromkeys(range(len(procs)), 0)
    deadline = time.monotonic() + limit
    while await _scalar(conn, "select count(*) from job_workers") == 0:
        _check_alive(procs)
        await asyncio.sleep(0.005)
    t0 = time.perf_counter()
    while time.monotonic() < deadline:
        for i, proc in enumerate(watched):
            peaks[i] = max(peaks[i], _rss(proc))
        done = await _scalar(
            conn, "select coalesce(sum(n), 0) from job_counters where outcome = 'completed'"
        )
        if done >= count:
            break
        _check_alive(procs)
        await asyncio.sleep(0.02)
    figures.drain_seconds = time.perf_counter() - t0
    figures.peak_rss = {f"worker{i}": round(v / 2**20, 1) for i, v in peaks.items()}


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0


def _check_alive(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is not None:
            raise click.ClickException(f"worker {p.pid} exited early with {p.returncode}")


async def _scalar(conn: AsyncConnection[Any], query: str) -> int:
    cur = await conn.execute(query)
    row = await cur.fetchone()
    return int(row[0]) if row else 0
