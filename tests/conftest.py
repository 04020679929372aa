"""Test fixtures: one embedded PostgreSQL per session, a fresh database per test module.

Set SURGE_TEST_DATABASE_URL to run against an external server instead (its user must be
allowed to create databases).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from surge.db.embedded import EmbeddedPostgres, free_port
from surge.db.migrate import migrate
from surge.db.pool import connect

TEMPLATE = "surge_test_template"
SURGE = str(Path(sys.executable).parent / "surge")


def _with_db(url: str, name: str) -> str:
    """The same server URL with another database name."""
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of the server's maintenance database (``postgres``)."""
    external = os.environ.get("SURGE_TEST_DATABASE_URL")
    if external:
        yield _with_db(external, "postgres")
        return
    base = Path(tempfile.mkdtemp(prefix="surge-test-pg-"))
    server = EmbeddedPostgres(
        base / "pgdata",
        # Durability is not under test here; speed is welcome.
        settings={"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"},
    )
    server.start()
    try:
        yield _with_db(server.url, "postgres")
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(pg_admin_url: str) -> str:
    """A database with every migration applied, copied for each test module."""
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{TEMPLATE}" with (force)')
        conn.execute(f'create database "{TEMPLATE}"')
    url = _with_db(pg_admin_url, TEMPLATE)

    async def run() -> None:
        conn = await connect(url)
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(run())
    return url


def fresh_database(pg_admin_url: str, template_url: str, name: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", name.lower())[:50]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}" template "{TEMPLATE}"')
    return _with_db(pg_admin_url, name)


@pytest.fixture(scope="module")
def database_url(request: pytest.FixtureRequest, pg_admin_url: str, template_url: str) -> str:
    """A fresh, fully migrated database for this test module."""
    return fresh_database(pg_admin_url, template_url, "t_" + request.module.__name__.split(".")[-1])


def surge_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGE_")}
    env.update(
        {
            "SURGE_DATABASE_URL": database_url,
            "SURGE_LOG_LEVEL": "WARNING",
            "SURGE_WORKER_POLL_INTERVAL": "0.05",
        }
    )
    env.update(extra)
    return env


def run_cli(
    database_url: str, *args: str, check: bool = True, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Run the real ``surge`` CLI as a subprocess."""
    proc = subprocess.run(
        [SURGE, *args],
        env=surge_env(database_url, **extra_env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"surge {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
    return proc


class Process:
    """A ``surge`` sub-command running in the background."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [SURGE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def stop(self, timeout: float = 30) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out or ""

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_api(env: dict[str, str], port: int) -> Process:
    """A real ``surge api`` on ``port``, returned once /healthz answers."""
    server = Process(["api", "--port", str(port)], env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("surge api did not start:\n" + server.stop())
        time.sleep(0.1)


@pytest.fixture(scope="module")
def env(database_url: str) -> dict[str, str]:
    """The environment of the Surge processes a module starts; override it to set more."""
    return surge_env(database_url)


@pytest.fixture(scope="module")
def api_port() -> int:
    """The port of the module's API (known before it starts, e.g. for SURGE_PUBLIC_URL)."""
    return free_port()


@pytest.fixture(scope="module")
def api(env: dict[str, str], api_port: int) -> Iterator[str]:
    """Base URL of a real ``surge api`` process serving this module's database."""
    server = start_api(env, api_port)
    yield f"http://127.0.0.1:{api_port}"
    server.stop()


@pytest.fixture(scope="module")
def worker(env: dict[str, str]) -> Iterator[Process]:
    """A real ``surge worker`` serving every queue of this module's database."""
    proc = Process(["worker", "--queues", "critical,default,bulk"], env)
    yield proc
    proc.stop()


def create_org(database_url: str, name: str) -> dict[str, str]:
    """Create an organisation with the CLI; returns its id and both keys."""
    import json

    out = run_cli(database_url, "org", "create", name, "--json").stdout
    data: dict[str, str] = json.loads(out)
    return data
