"""``surge up``: the whole platform on one machine, stopped cleanly by Ctrl-C.

The parent process owns the embedded database and supervises one child process per
role: the API, a worker for ``critical,default``, a worker for ``bulk``, and the
development SMTP sink. Children run in their own process group so that Ctrl-C reaches
only the parent, which then stops them in order (API first, so no new work arrives;
workers drain; the database last). If any child dies, everything is stopped: a
half-running platform is worse than a stopped one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import click
import httpx

from surge.config import Settings, get_settings
from surge.db.migrate import migrate_url
from surge.db.runtime import database
from surge.observability.logging import configure_logging

log = logging.getLogger(__name__)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


def _spawn(name: str, args: list[str], env: dict[str, str]) -> Child:
    cmd = [sys.executable, "-m", "surge", *args]
    return Child(name, subprocess.Popen(cmd, env=env, start_new_session=True))


def _stop(children: list[Child], timeout: float) -> None:
    for child in children:
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("child did not stop in time; killing", extra={"child": child.name})
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()


def _wait_healthy(url: str, children: list[Child], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.proc.poll() is not None for c in children):
            raise click.ClickException("a process exited during start-up; see the log above")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise click.ClickException(f"the API did not become ready at {url} within {timeout:.0f}s")


def _supervise(settings: Settings, database_url: str) -> None:
    asyncio.run(migrate_url(database_url))
    env = dict(os.environ, SURGE_DATABASE_URL=database_url)
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    # Each worker its own metrics port: SURGE_WORKER_METRICS_PORT and the next, else the
    # two after the API's.
    metrics = settings.worker_metrics_port or settings.api_port + 1
    children = [
        _spawn("smtp-sink", ["smtp-sink"], env),
        _spawn("api", ["api"], env),
        # Charges and webhooks mostly wait on other servers: many at once.
        _spawn(
            "worker-critical-default",
            ["worker", "--queues", "critical,default", "--concurrency", "200"]
            + ["--metrics-port", str(metrics)],
            env,
        ),
        _spawn(
            "worker-bulk", ["worker", "--queues", "bulk", "--metrics-port", str(metrics + 1)], env
        ),
    ]
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        _wait_healthy(api_url, children)
        click.echo(
            f"Surge is up.\n"
            f"  console    {api_url}/console/  (first user: surge user create --org ID"
            f" --email ADDRESS --role owner)\n"
            f"  API        {api_url}  (OpenAPI {api_url}/openapi.json, metrics {api_url}/metrics)\n"
            f"  metrics    cluster {api_url}/metrics/cluster, workers"
            f" http://{settings.metrics_host}:{metrics}/metrics and :{metrics + 1}/metrics\n"
            f"  database   {database_url}\n"
            f"  SMTP sink  smtp://{settings.smtp_sink_host}:{settings.smtp_sink_port}"
            f"  (mail kept in {settings.data_dir / 'mail'})\n"
            f"Press Ctrl-C to stop."
        )
        while not stopping:
            dead = [c for c in children if c.proc.poll() is not None]
            if dead:
                log.error("a process exited; stopping", extra={"child": dead[0].name})
                break
            time.sleep(0.2)
    finally:
        click.echo("Stopping…")
        # API first (no new work), then workers (drain), then the sink.
        order = [children[1], children[2], children[3], children[0]]
        _stop(order, settings.worker_shutdown_timeout + 5)
    if not stopping:
        raise click.ClickException("a Surge process exited unexpectedly")


@click.command("up")
def up_command() -> None:
    """Run everything on this machine: database, API, workers and the SMTP sink."""
    settings = get_settings()
    configure_logging(settings, process="up")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with database(settings) as url:
        _supervise(settings, url)
    click.echo("Stopped.")
