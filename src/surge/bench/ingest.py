"""``surge bench ingest``: event intake over real HTTP against a real ``surge api`` process.

Runs in a database of its own (``surge_bench_ingest``). The load generator lives in this
process: asyncio (uvloop) with raw keep-alive HTTP/1.1 connections, several times faster per
core than an httpx client, so the client is not what is measured. Phases, each after a
short warm-up:

- ``ceiling``: a bare ASGI app that only answers 202, served by uvicorn with the options of
  ``surge api``, in a process of its own: the most any endpoint could do on this machine;
- ``single``: one event per request, closed loop, as fast as the server answers;
- ``batch``: ``--batch`` events per request, closed loop;
- ``open_loop``: single events at 70 % of the single-event rate measured above, at fixed
  send times; latency counts from the planned send time, so queueing is not hidden.

``lost`` compares the events acknowledged (202) with the rows in ``events``: must be 0.

``--tracing-sample R`` then compares two fresh APIs, one with tracing on at ratio R, in the
same run (``ingest_tracing.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import click
import httpx
import psutil

from surge.bench.common import (
    HttpConnection,
    PeakRss,
    check_alive,
    close_connections,
    fresh_database,
    open_connections,
    report,
    scalar,
    stop_all,
    surge_process,
)
from surge.config import get_settings
from surge.db.embedded import free_port
from surge.db.pool import connect
from surge.db.runtime import database
from surge.orgs.service import create_organization

BENCH_DATABASE = "surge_bench_ingest"


def http_request(path: str, key: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Phase:
    requests: int = 0
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    #: CPU seconds the server process spent during the phase.
    server_cpu: float = 0.0

    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def closed_loop(port: int, data: bytes, connections: int, seconds: float) -> Phase:
    """Every connection sends its next request as soon as the previous one is answered."""
    conns = await open_connections(port, connections)
    phase = Phase()
    stop = time.perf_counter() + seconds
    start = time.perf_counter()

    async def drive(conn: HttpConnection) -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                return
            status = await conn.request(data)
            phase.latencies.append(time.perf_counter() - t0)
            phase.statuses[status] = phase.statuses.get(status, 0) + 1

    try:
        await asyncio.gather(*(drive(c) for c in conns))
    finally:
        close_connections(conns)
    phase.seconds = time.perf_counter() - start
    phase.requests = len(phase.latencies)
    return phase


async def open_loop(port: int, data: bytes, connections: int, rate: float, seconds: float) -> Phase:
    """Requests planned at ``rate`` per second; latency runs from each one's planned time."""
    conns = await open_connections(port, connections)
    phase = Phase()
    total = int(rate * seconds)
    start = time.perf_counter()
    next_index = 0

    async def drive(conn: HttpConnection) -> None:
        nonlocal next_index
        while next_index < total:
            planned = start + next_index / rate
            next_index += 1
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = await conn.request(data)
            phase.latencies.append(time.perf_counter() - planned)
            phase.statuses[status] = phase.statuses.get(status, 0) + 1

    try:
        await asyncio.gather(*(drive(c) for c in conns))
    finally:
        close_connections(conns)
    phase.seconds = time.perf_counter() - start
    phase.requests = len(phase.latencies)
    return phase


async def ceiling_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The bare ASGI app: read the body, answer 202."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    body = b'{"accepted":1}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"14")]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve_ceiling(port: int) -> None:
    """Serve ``ceiling_app`` with the uvicorn options of ``surge api``."""
    import uvicorn

    uvicorn.run(
        ceiling_app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


def _wait_ready(base: str, procs: list[subprocess.Popen[bytes]], path: str = "/healthz") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        check_alive(procs)
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(base + path, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise click.ClickException(f"{base} did not start")


@dataclass(frozen=True)
class Options:
    seconds: float
    connections: int
    batch: int
    warmup: float
    #: With tracing at this ratio, a second API is compared with the first.
    tracing_sample: float | None = None


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _measured(pid: int, run: Awaitable[Phase]) -> Phase:
    before = _cpu(pid)
    phase = await run
    phase.server_cpu = _cpu(pid) - before
    return phase


def requests(key: str, batch_size: int) -> tuple[bytes, bytes]:
    """The single-event request and the batch request every phase sends."""
    single = http_request(
        "/v1/events",
        key,
        b'{"type":"bench.click","contact_email":"ada@example.org","properties":{"link":7}}',
    )
    events = b",".join(
        b'{"type":"bench.view","contact_id":%d,"properties":{"page":"/p/%d"}}' % (i + 1, i)
        for i in range(batch_size)
    )
    return single, http_request("/v1/events", key, b'{"events":[' + events + b"]}")


async def _phases(
    api_port: int, ceiling_port: int, key: str, opts: Options, pids: tuple[int, int], rss: PeakRss
) -> dict[str, Phase]:
    single, batch = requests(key, opts.batch)
    c = opts.connections
    phases: dict[str, Phase] = {}
    await closed_loop(ceiling_port, single, c, opts.warmup)
    api_pid, ceiling_pid = pids
    phases["ceiling"] = await _measured(
        ceiling_pid, closed_loop(ceiling_port, single, c, opts.seconds)
    )
    phases["warmup"] = await closed_loop(api_port, single, c, opts.warmup)
    sampler = asyncio.create_task(_sample(rss))
    phases["single"] = await _measured(api_pid, closed_loop(api_port, single, c, opts.seconds))
    # Before the batch phase: its million rows would have autovacuum running meanwhile.
    rate = 0.7 * phases["single"].rate()
    phases["open_loop"] = await open_loop(api_port, single, c, rate, opts.seconds)
    phases["batch"] = await _measured(api_pid, closed_loop(api_port, batch, c, opts.seconds))
    sampler.cancel()
    return phases


def _accepted(phases: dict[str, Phase], batch: int) -> int:
    per_request = {"warmup": 1, "single": 1, "batch": batch, "open_loop": 1}
    return sum(p.statuses.get(202, 0) * per_request[n] for n, p in phases.items() if n != "ceiling")


async def _prepare(url: str) -> tuple[str, str]:
    """A fresh database and an organisation in it: (database URL, publishable key)."""
    bench_url = await fresh_database(url, BENCH_DATABASE)
    conn = await connect(bench_url)
    try:
        org = await create_organization(conn, "bench")
    finally:
        await conn.close()
    return bench_url, org.publishable_key


async def _stored(url: str) -> int:
    conn = await connect(url)
    try:
        return int(await scalar(conn, "select count(*) from events"))
    finally:
        await conn.close()


def _api_env() -> dict[str, str]:
    # No rate limit unless asked for; SURGE_INGEST_* of this process tune the API's writer.
    env = {"SURGE_INGEST_RATE": "0"}
    env.update({k: v for k, v in os.environ.items() if k.startswith("SURGE_INGEST_")})
    return env


def _run(url: str, opts: Options) -> dict[str, Any]:
    bench_url, key = asyncio.run(_prepare(url))
    api_port, ceiling_port = free_port(), free_port()
    procs = [
        surge_process(bench_url, ["api", "--port", str(api_port)], _api_env()),
        subprocess.Popen([sys.executable, "-m", "surge.bench.ingest", str(ceiling_port)]),
    ]
    traced = None
    if opts.tracing_sample is not None:
        from surge.bench import ingest_tracing

        traced = ingest_tracing.start(bench_url, opts.tracing_sample, _api_env())
        procs.append(traced.sink)
    try:
        _wait_ready(f"http://127.0.0.1:{api_port}", procs)
        _wait_ready(f"http://127.0.0.1:{ceiling_port}", procs, "/")
        rss = PeakRss({"api": procs[0].pid})
        pids = (procs[0].pid, procs[1].pid)
        phases = asyncio.run(_phases(api_port, ceiling_port, key, opts, pids, rss))
        if traced is not None:
            single, batch = requests(key, opts.batch)
            runs, extra = ingest_tracing.compare(traced, single, batch, opts, _wait_ready)
            spans = ingest_tracing.exported_spans(traced.sink_port)
            cost = ingest_tracing.middleware_cost(traced.sample, traced.sink_port)
    finally:
        stop_all(procs)
    result = _result(opts, phases, asyncio.run(_stored(bench_url)), rss.megabytes())
    if traced is not None:
        result["accepted"] += extra
        result["lost"] = max(0, result["accepted"] - result["stored"])
        result["tracing"] = ingest_tracing.figures(runs, traced.sample, opts.batch, spans)
        result["tracing"].update(cost)
    return result


async def _sample(rss: PeakRss) -> None:
    while True:
        rss.sample()
        await asyncio.sleep(0.2)


def _result(
    opts: Options, phases: dict[str, Phase], stored: int, rss: dict[str, float]
) -> dict[str, Any]:
    ceiling, single, batch, open_ = (phases[k] for k in ("ceiling", "single", "batch", "open_loop"))
    accepted = _accepted(phases, opts.batch)
    errors = {
        name: {str(s): n for s, n in p.statuses.items() if s != 202} for name, p in phases.items()
    }
    return {
        "scenario": "ingest",
        "params": {
            "seconds": opts.seconds,
            "connections": opts.connections,
            "batch": opts.batch,
            "cpus": os.cpu_count(),
            "client": "asyncio raw HTTP/1.1 keep-alive",
        },
        "ceiling_req_per_s": round(ceiling.rate()),
        "single_req_per_s": round(single.rate()),
        "single_ratio_to_ceiling": round(single.rate() / ceiling.rate(), 3),
        "single_p50_ms": single.percentile(0.5),
        "single_p99_ms": single.percentile(0.99),
        "batch_events_per_s": round(batch.rate() * opts.batch),
        "batch_req_per_s": round(batch.rate()),
        "batch_p50_ms": batch.percentile(0.5),
        "batch_p99_ms": batch.percentile(0.99),
        # Server CPU per request: comparable between runs on a busy machine, unlike rates.
        "ceiling_cpu_us_per_req": _per_request(ceiling),
        "single_cpu_us_per_req": _per_request(single),
        "batch_cpu_us_per_event": round(_per_request(batch) / opts.batch, 2),
        "open_loop_rate": round(0.7 * single.rate()),
        "open_loop_achieved_per_s": round(open_.rate()),
        "open_loop_p50_ms": open_.percentile(0.5),
        "open_loop_p99_ms": open_.percentile(0.99),
        "accepted": accepted,
        "stored": stored,
        "lost": max(0, accepted - stored),
        "errors": {k: v for k, v in errors.items() if v},
        "peak_rss_mb": rss,
    }


def _per_request(phase: Phase) -> float:
    return round(phase.server_cpu / phase.requests * 1e6, 1) if phase.requests else 0.0


@click.command("ingest")
@click.option("--seconds", type=float, default=5.0, show_default=True, help="Per phase.")
@click.option("--connections", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--warmup", type=float, default=1.0, show_default=True)
@click.option(
    "--tracing-sample",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Then compare two fresh APIs, one tracing at this ratio (e.g. 0.01), in this run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def ingest_command(
    seconds: float,
    connections: int,
    batch: int,
    warmup: float,
    tracing_sample: float | None,
    as_json: bool,
) -> None:
    """Event intake: single events, batches, the bare-ASGI ceiling, p99 at 70 % load."""
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    settings = get_settings()
    opts = Options(seconds, connections, batch, warmup, tracing_sample)
    with database(settings) as url:
        result = _run(url, opts)
    report(result, as_json)


if __name__ == "__main__":
    serve_ceiling(int(sys.argv[1]))
