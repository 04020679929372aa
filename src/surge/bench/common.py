"""What every benchmark scenario needs: its own database, worker processes, RSS peaks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import click
import httpx
import psutil
from psycopg import AsyncConnection, sql

from surge.db.migrate import migrate
from surge.db.pool import connect


async def fresh_database(url: str, name: str, *, keep: bool = False) -> str:
    """Drop and re-create database ``name`` on ``url``'s server, migrated; returns its URL.
    With ``keep``, a database of that name already there is kept (and migrated)."""
    admin = await connect(url)
    try:
        cur = await admin.execute("select 1 from pg_database where datname = %s", [name])
        if not (keep and await cur.fetchone()):
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


async def roll_up_activity(conn: AsyncConnection[Any], org: int) -> None:
    """Build the segments' rollups (``contact_activity``, ``contact_last_activity``) of
    ``org``'s events in one go, as the consumer would have kept them."""
    await conn.execute(
        "insert into contact_activity (organization_id, type, day, contact_id, events)"
        " select organization_id, type, (occurred_at at time zone 'UTC')::date, contact_id,"
        " count(*) from events where organization_id = %s group by 1, 2, 3, 4",
        [org],
    )
    await conn.execute(
        "insert into contact_last_activity (organization_id, type, contact_id, last_day)"
        " select organization_id, type, contact_id, max(day) from contact_activity"
        " where organization_id = %s group by 1, 2, 3",
        [org],
    )


async def wait_ready(
    base: str,
    procs: list[subprocess.Popen[bytes]],
    path: str = "/healthz",
    seconds: float = 60,
) -> None:
    """Return once ``surge api`` at ``base`` answers ``path`` with 200; fail if one of
    ``procs`` exits meanwhile, or after ``seconds``."""
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(int(seconds * 10)):
            check_alive(procs)
            try:
                if (await client.get(path)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise click.ClickException(f"surge api did not answer {path} within {seconds:g} s")


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


def report(result: dict[str, Any], as_json: bool) -> None:
    """Print a scenario's figures: one JSON object, or one ``key: value`` line each."""
    if as_json:
        click.echo(json.dumps(result))
        return
    for key, value in result.items():
        click.echo(f"{key}: {value}")


async def scalar(conn: AsyncConnection[Any], query: str, params: Any = None) -> Any:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return row[0] if row else None


# A load generator as light as the servers it measures: httpx spent more CPU per request
# than the API it was timing.
_LENGTH = re.compile(rb"(?i)\r\ncontent-length: *(\d+)")


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: send a request, await its status code."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        match = _LENGTH.search(self.buffer, 0, end + 2)
        total = end + 4 + (int(match[1]) if match else 0)
        if len(self.buffer) < total:
            return
        status = int(self.buffer[9:12])
        del self.buffer[:total]
        waiter, self.waiter = self.waiter, None
        waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("server closed the connection"))

    async def request(self, data: bytes) -> int:
        if self.transport is None or self.transport.is_closing():
            # Servers close idle keep-alive connections (uvicorn after 5 s).
            raise ConnectionError("connection closed while idle")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def open_connections(port: int, count: int) -> list[HttpConnection]:
    loop = asyncio.get_running_loop()
    conns: list[HttpConnection] = []
    for _ in range(count):
        _, proto = await loop.create_connection(HttpConnection, "127.0.0.1", port)
        conns.append(proto)
    return conns


def close_connections(conns: list[HttpConnection]) -> None:
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
