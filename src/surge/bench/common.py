"""What every benchmark scenario needs: its own database, worker processes, RSS peaks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import psutil
from psycopg import AsyncConnection, sql

from surge.db.migrate import migrate
from surge.db.pool import connect


async def fresh_database(url: str, name: str) -> str:
    """Drop and re-create database ``name`` on ``url``'s server, migrated; returns its URL."""
    admin = await connect(url)
    try:
        ident = sql.Identifier(name)
        await admin.execute(sql.SQL("drop database if exists {} with (force)").format(ident))
        await admin.execute(sql.SQL("create database {}").format(ident))
    finally:
        await admin.close()
    bench_url = urlunsplit(urlsplit(url)._replace(path="/" + name))
    conn = await connect(bench_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return bench_url


def surge_process(
    url: str, args: list[str], extra_env: dict[str, str] | None = None, module: str = "surge"
) -> subprocess.Popen[bytes]:
    """Start ``python -m <module> <args>`` against ``url`` with quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGE_")}
    env.update({"SURGE_DATABASE_URL": url, "SURGE_LOG_LEVEL": "WARNING"})
    env.update(extra_env or {})
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env)


def stop_all(procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def check_alive(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is not None:
            raise click.ClickException(f"process {p.pid} exited early with {p.returncode}")


class PeakRss:
    """Samples named processes: each one's peak resident memory and CPU time used."""

    def __init__(self, procs: dict[str, int]) -> None:
        self._procs = {name: psutil.Process(pid) for name, pid in procs.items()}
        self.peaks = dict.fromkeys(procs, 0)
        self.cpu = dict.fromkeys(procs, 0.0)

    def sample(self) -> None:
        for name, proc in self._procs.items():
            with contextlib.suppress(psutil.Error):  # it may have just exited
                self.peaks[name] = max(self.peaks[name], int(proc.memory_info().rss))
                times = proc.cpu_times()
                self.cpu[name] = times.user + times.system

    def megabytes(self) -> dict[str, float]:
        return {name: round(v / 2**20, 1) for name, v in self.peaks.items()}

    def cpu_seconds(self) -> dict[str, float]:
        return {name: round(v, 2) for name, v in self.cpu.items()}


async def scalar(conn: AsyncConnection[Any], query: str, params: Any = None) -> Any:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return row[0] if row else None
