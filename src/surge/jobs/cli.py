"""``surge worker`` and ``surge jobs failed|retry|cancel|stats``."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import uvloop
from psycopg import AsyncConnection

from surge.config import ConfigError, Settings, get_settings
from surge.db.pool import connect, open_pool
from surge.db.runtime import database
from surge.errors import SurgeError
from surge.jobs.admin import cancel_jobs, failed_jobs, retry_jobs
from surge.jobs.metrics import queue_metrics
from surge.jobs.registry import QUEUES, Registry, tasks_in
from surge.jobs.worker import Worker
from surge.observability.exporter import MetricsListener
from surge.observability.logging import configure_logging
from surge.observability.metrics import watch_pool
from surge.observability.tracing import configure as configure_tracing

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _queues(value: str) -> list[str]:
    queues = [q.strip() for q in value.split(",") if q.strip()]
    unknown = [q for q in queues if q not in QUEUES]
    if unknown or not queues:
        raise click.BadParameter(f"queues are a comma-separated subset of {', '.join(QUEUES)}")
    return queues


@click.command("worker")
@click.option(
    "--queues",
    default=",".join(QUEUES),
    show_default=True,
    help="Comma-separated queues to serve, in the order they are claimed from.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs run at once (default: SURGE_WORKER_CONCURRENCY).",
)
@click.option(
    "--tasks-module",
    "tasks_modules",
    multiple=True,
    envvar="SURGE_EXTRA_TASK_MODULES",
    help="Extra module(s) defining tasks, besides Surge's own (surge.app.DOMAINS) "
    "(repeatable or comma-separated; env SURGE_EXTRA_TASK_MODULES).",
)
@click.option(
    "--nice",
    type=click.IntRange(min=0, max=19),
    default=None,
    help="CPU niceness of this worker (default: 10 when it serves only bulk, else 0).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of this worker's GET /metrics (default SURGE_WORKER_METRICS_PORT; 0: none).",
)
def worker_command(
    queues: str,
    concurrency: int | None,
    tasks_modules: tuple[str, ...],
    nice: int | None,
    metrics_port: int | None,
) -> None:
    """Run jobs from the given queues until SIGTERM or Ctrl-C."""
    settings = _settings()
    configure_logging(settings, process="worker")
    configure_tracing("worker")  # OTEL_*: off unless an exporter is named; flushed at exit
    served = _queues(queues)
    # Bulk work is huge and patient: on a shared machine it yields the CPU to the API and
    # to critical jobs (donations, receipts) instead of competing with them as an equal.
    os.nice(nice if nice is not None else (10 if served == ["bulk"] else 0))
    from surge.app import tasks  # the composition root: every domain's tasks

    extra = tasks_in(m.strip() for value in tasks_modules for m in value.split(",") if m.strip())
    registry = tasks(extra)
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    # uvloop, as uvicorn gives the API: a job is mostly waits on sockets (the database,
    # SMTP, HTTP), and uvloop's are cheaper than asyncio's selector loop.
    with database(settings) as url, asyncio.Runner(loop_factory=uvloop.new_event_loop) as run:
        run.run(_serve(url, settings, served, concurrency, registry, port))


async def _serve(
    url: str,
    settings: Settings,
    queues: list[str],
    concurrency: int | None,
    registry: Registry,
    metrics_port: int = 0,
) -> None:
    metrics = MetricsListener()
    if metrics_port:  # first: a port in use stops the worker before it takes any job
        await metrics.start(settings.metrics_host, metrics_port)
    pool = await open_pool(url, min_size=1, max_size=settings.db_pool_size)
    # claim, flush and heartbeat each hold one at times, failures a fourth.
    engine_pool = await open_pool(url, min_size=3, max_size=4)
    watch_pool("main", pool)
    watch_pool("engine", engine_pool)
    from surge.resources import Resources  # the app's shared objects, closed on exit

    resources = Resources(settings, pool)
    try:
        worker = Worker(
            pool,
            settings,
            queues=queues,
            concurrency=concurrency,
            engine_pool=engine_pool,
            tasks=registry,
            resources=resources,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()
    finally:
        # SMTP connections say QUIT rather than vanish when the worker stops.
        await resources.aclose()
        await engine_pool.close()
        await pool.close()
        await metrics.close()


@click.group("jobs")
def jobs_group() -> None:
    """Inspect and manage jobs: dead letters, retries, cancellations, queue figures."""


def _run(action: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
    """Run ``action`` on one connection; a domain error is a one-line error and exit 1."""
    settings = _settings()

    async def go(url: str) -> T:
        conn = await connect(url)
        try:
            return await action(conn)
        finally:
            await conn.close()

    with database(settings) as url:
        try:
            return asyncio.run(go(url))
        except SurgeError as exc:
            raise click.ClickException(exc.message) from None


@jobs_group.command("failed")
@click.option("--queue", type=click.Choice(QUEUES), default=None)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def failed_command(queue: str | None, limit: int) -> None:
    """List discarded jobs (dead letters), newest first."""
    jobs = _run(lambda conn: failed_jobs(conn, queue, limit))
    click.echo("id\tkind\tqueue\tattempts\tlast_error")
    for j in jobs:
        error = (j.last_error or "").splitlines()[-1:] or [""]
        click.echo(f"{j.id}\t{j.kind}\t{j.queue}\t{j.attempts}/{j.max_attempts}\t{error[0]}")


@jobs_group.command("retry")
@click.argument("ids", nargs=-1, required=True, type=int)
def retry_command(ids: tuple[int, ...]) -> None:
    """Put discarded (or retryable) jobs back to available, attempts reset."""
    _run(lambda conn: retry_jobs(conn, ids))
    click.echo(f"retried {len(ids)} job(s)")


@jobs_group.command("cancel")
@click.argument("ids", nargs=-1, required=True, type=int)
def cancel_command(ids: tuple[int, ...]) -> None:
    """Cancel available, scheduled or retryable jobs."""
    _run(lambda conn: cancel_jobs(conn, ids))
    click.echo(f"cancelled {len(ids)} job(s)")


@jobs_group.command("stats")
def stats_command() -> None:
    """Jobs per queue and state, and outcome totals."""
    stats = _run(queue_metrics)
    click.echo(
        "queue\tavailable\trunning\tscheduled\tretryable\tdiscarded"
        "\tcompleted_total\tfailed_total\tretried_total\tdiscarded_total"
    )
    for s in stats:
        figures = [*s.states.values(), *s.counters.values()]
        click.echo("\t".join([s.queue, *map(str, figures)]))
