"""The page side of ``surge bench giving-day``: page views, live viewers, the ASGI ceiling.

- **Ceiling**: a trivial ASGI app (``asgi_ceiling``) answering a body as long as the
  campaign page, served by the same uvicorn settings on the same machine, then the cached
  campaign page itself, each hammered closed-loop by the same client with the same number of
  keep-alive connections for the same time. Cached-page throughput ÷ ceiling is the goal.
- **Page views during the ramp**: 20 full GETs of the campaign page per donation, open-loop
  on a pool of keep-alive connections; a view that finds every connection busy is counted as
  not served (the bench's client cannot send it) rather than queued without bound.
- **Live viewers**: browsers holding the page's Server-Sent Events stream open; each counts
  the totals events it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import click
import httpx
import psutil

from surge.bench.common import (
    HttpConnection,
    close_connections,
    open_connections,
    stop_all,
    surge_process,
)
from surge.db.embedded import free_port


def get_request(path: str, etag: str | None = None) -> bytes:
    extra = f"If-None-Match: {etag}\r\n" if etag else ""
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode()


async def closed_loop(
    port: int, request: bytes, connections: int, seconds: float, pid: int | None = None
) -> dict[str, Any]:
    """Requests answered per second by ``connections`` clients each sending the next request
    as soon as the last is answered; with the server's ``pid``, also the CPU time it spent
    per request (steadier than throughput on a machine others share)."""
    server = psutil.Process(pid) if pid is not None else None
    cpu_before = sum(server.cpu_times()[:2]) if server is not None else 0.0
    conns = await open_connections(port, connections)
    done, errors, latencies = 0, 0, []
    stop = time.perf_counter() + seconds

    async def client(conn: HttpConnection) -> None:
        nonlocal done, errors
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                status = await conn.request(request)
            except ConnectionError:
                errors += 1
                return
            if status in (200, 304):
                done += 1
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in conns))
    elapsed = time.perf_counter() - start
    close_connections(conns)
    cpu = sum(server.cpu_times()[:2]) - cpu_before if server is not None else None
    return {
        "requests_per_s": round(done / elapsed, 1),
        "server_cpu_us_per_request": round(cpu / done * 1e6, 1)
        if cpu is not None and done
        else None,
        "requests": done,
        "errors": errors,
        "p99_ms": round(statistics.quantiles(latencies, n=100)[98] * 1000, 2)
        if len(latencies) > 1
        else None,
    }


async def ceiling(
    db_url: str,
    api_port: int,
    api_pid: int,
    page_path: str,
    connections: int,
    seconds: float,
    rounds: int = 5,
) -> dict[str, Any]:
    """The cached page's throughput and the bare-ASGI ceiling for a body of its size.

    The two are measured in alternation, ``rounds`` times ``seconds`` each, so that the
    load of anything else on the machine falls on both alike; the best round of each is
    its figure (noise only ever lowers throughput), and the median of the paired rounds'
    ratios is reported beside it.
    """
    async with httpx.AsyncClient() as client:
        page = await client.get(f"http://127.0.0.1:{api_port}{page_path}")
    if page.status_code != 200:
        raise click.ClickException(f"campaign page answered {page.status_code}")
    size = len(page.content)
    port = free_port()
    bare = surge_process(db_url, [str(port), str(size)], module="surge.bench.asgi_ceiling")
    bare_rounds: list[dict[str, Any]] = []
    page_rounds: list[dict[str, Any]] = []
    try:
        await _wait_port(port, bare)
        await closed_loop(port, get_request("/"), connections, 1.0)  # warm up both
        await closed_loop(api_port, get_request(page_path), connections, 1.0)
        for _ in range(rounds):
            bare_rounds.append(
                await closed_loop(port, get_request("/"), connections, seconds, bare.pid)
            )
            page_rounds.append(
                await closed_loop(api_port, get_request(page_path), connections, seconds, api_pid)
            )
    finally:
        stop_all([bare])
    revalidated = await closed_loop(
        api_port, get_request(page_path, page.headers["etag"]), connections, seconds
    )
    best_bare = max(r["requests_per_s"] for r in bare_rounds)
    best_page = max(r["requests_per_s"] for r in page_rounds)
    paired = [
        p["requests_per_s"] / b["requests_per_s"]
        for b, p in zip(bare_rounds, page_rounds, strict=True)
        if b["requests_per_s"]
    ]
    return {
        "page_bytes": size,
        "connections": connections,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "bare_asgi_per_s": best_bare,
        "cached_page_per_s": best_page,
        "bare_asgi_rounds": [r["requests_per_s"] for r in bare_rounds],
        "cached_page_rounds": [r["requests_per_s"] for r in page_rounds],
        "cached_page_p99_ms": max((r["p99_ms"] or 0) for r in page_rounds),
        "errors": sum(r["errors"] for r in (*bare_rounds, *page_rounds)),
        # If-None-Match with the current ETag: 304s without a body.
        "revalidated_304_per_s": revalidated["requests_per_s"],
        "ratio": round(best_page / best_bare, 3) if best_bare else None,
        # Server CPU per request (median of rounds): bare ÷ page is the ratio CPU-wise.
        "bare_asgi_cpu_us": _median(bare_rounds, "server_cpu_us_per_request"),
        "cached_page_cpu_us": _median(page_rounds, "server_cpu_us_per_request"),
        "median_paired_ratio": round(statistics.median(paired), 3) if paired else None,
    }


def _median(rounds: list[dict[str, Any]], name: str) -> float | None:
    values = [r[name] for r in rounds if r.get(name) is not None]
    return round(statistics.median(values), 1) if values else None


async def _wait_port(port: int, proc: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException("the bare ASGI server exited")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise click.ClickException("the bare ASGI server did not start")


@dataclass
class PageViews:
    """What the page viewers saw during one ramp step."""

    served: int = 0
    not_sent: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


class Viewers:
    """Keep-alive connections for page views; a view finding none idle is not sent."""

    def __init__(self, port: int, conns: list[HttpConnection]) -> None:
        self.port = port
        self.idle = list(conns)
        self.all = list(conns)

    @classmethod
    async def open(cls, port: int, count: int) -> Viewers:
        return cls(port, await open_connections(port, count))

    async def view(self, request: bytes, seen: PageViews) -> None:
        if not self.idle:
            seen.not_sent += 1
            return
        conn = self.idle.pop()
        t0 = time.perf_counter()
        try:
            status = await conn.request(request)
        except ConnectionError:
            seen.errors += 1
            (conn,) = await open_connections(self.port, 1)
            self.all.append(conn)
        else:
            if status in (200, 304):
                seen.served += 1
                seen.latencies.append(time.perf_counter() - t0)
            else:
                seen.errors += 1
        self.idle.append(conn)

    def close(self) -> None:
        close_connections(self.all)


async def page_views(viewers: Viewers, path: str, rate: float, seconds: float) -> dict[str, Any]:
    """Open-loop page views at ``rate`` per second for ``seconds``."""
    seen = PageViews()
    request = get_request(path)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(viewers.view(request, seen)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {
        "views_target_per_s": rate,
        "views_per_s": round(seen.served / elapsed, 1),
        "views_not_sent": seen.not_sent,
        "views_errors": seen.errors,
        "views_p99_ms": round(statistics.quantiles(seen.latencies, n=100)[98] * 1000, 2)
        if len(seen.latencies) > 1
        else None,
    }


class LiveViewers:
    """Browsers holding the page's SSE stream open, counting the totals events received."""

    def __init__(self) -> None:
        self.events = 0
        self.connected = 0
        self.failed = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, port: int, path: str, count: int) -> None:
        self._tasks = [asyncio.create_task(self._watch(port, path)) for _ in range(count)]

    async def _watch(self, port: int, path: str) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            self.failed += 1
            return
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            status = await reader.readline()
            if b" 200 " not in status:
                self.failed += 1
                return
            self.connected += 1
            while line := await reader.readline():
                if line.startswith(b"event: totals"):
                    self.events += 1
        except (OSError, asyncio.IncompleteReadError):
            self.failed += 1
        finally:
            writer.close()

    async def stop(self) -> dict[str, int]:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return {
            "viewers": len(self._tasks),
            "connected": self.connected,
            "failed": self.failed,
            "events": self.events,
        }
