"""``surge bench ingest --tracing-sample R``: what tracing at ratio R costs event intake.

In the same run as the usual phases, a second ``surge api`` serves the same database with
tracing on (``parentbased_traceidratio`` at R, OTLP/HTTP to a local sink in a process of
its own, ``otlp_sink``). Then, ``ROUNDS`` times, single-event and batch phases drive both
APIs at once, half the connections each, interleaved: whatever else the machine is doing
(other people's tests and benchmarks, here) weighs on both sides alike at every moment,
where phases one after the other saw the load swing twofold between them. Reported: both
throughputs and server CPU per request, traced over untraced, per round and overall, and
the spans the sink received (about R times the traced requests: proof that tracing was on).

On a busy machine those ratios still wander by ±20 % from round to round, so the cost is
also measured where load cannot hide it: the request plumbing (``RequestContext``) driven in
this process, tracing off and on, its CPU time per request the least of several repeats
(``middleware_cost``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.routing import Route

from surge.api.middleware import RequestContext
from surge.bench.common import (
    HttpConnection,
    close_connections,
    open_connections,
    surge_process,
)
from surge.bench.ingest import Phase, _cpu
from surge.db.embedded import free_port
from surge.observability import tracing

ROUNDS = 3
SIDES = ("untraced", "traced")


def traced_env(sample: float, sink_port: int) -> dict[str, str]:
    """The OTEL_* variables of the traced API: only standard ones, as an operator sets them."""
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": repr(sample),
        "OTEL_SERVICE_NAME": "surge-api-bench",
    }


@dataclass
class Traced:
    """Two fresh APIs on the scenario's database, one traced, and the traced one's sink.

    Fresh, both: the scenario's own API has served a million events by then, and a process
    with that history ran 10-20 % apart from a new one with the same code (measured with
    tracing off on both sides)."""

    sample: float
    sink_port: int
    ports: dict[str, int]
    #: The traced API first: it is stopped first, so that it exports what it holds.
    procs: list[subprocess.Popen[bytes]]

    def sides(self) -> dict[str, Side]:
        pids = {"traced": self.procs[0].pid, "untraced": self.procs[1].pid}
        return {name: Side(self.ports[name], pids[name]) for name in SIDES}


@dataclass(frozen=True)
class Side:
    port: int
    pid: int


def start(bench_url: str, sample: float, env: dict[str, str]) -> Traced:
    sink_port = free_port()
    ports = {name: free_port() for name in SIDES}
    sink = subprocess.Popen([sys.executable, "-m", "surge.bench.otlp_sink", str(sink_port)])
    traced = {**env, **traced_env(sample, sink_port)}
    return Traced(
        sample,
        sink_port,
        ports,
        [
            surge_process(bench_url, ["api", "--port", str(ports["traced"])], traced),
            surge_process(bench_url, ["api", "--port", str(ports["untraced"])], env),
            sink,
        ],
    )


async def compare(
    sides: dict[str, Side], single: bytes, batch: bytes, batch_size: int, opts: Any
) -> tuple[dict[str, dict[str, list[Phase]]], int]:
    """Drive both sides at once, ``ROUNDS`` times per kind; (phases by side and kind,
    events accepted in them, for the scenario's lost count)."""
    half = max(1, opts.connections // 2)
    warm = await _together(sides, single, half, opts.warmup)
    accepted = sum(p.statuses.get(202, 0) for p in warm.values())
    runs: dict[str, dict[str, list[Phase]]] = {s: {"single": [], "batch": []} for s in SIDES}
    for _ in range(ROUNDS):
        for kind, data, events in (("single", single, 1), ("batch", batch, batch_size)):
            for name, phase in (await _together(sides, data, half, opts.seconds)).items():
                runs[name][kind].append(phase)
                accepted += phase.statuses.get(202, 0) * events
    return runs, accepted


async def _together(
    sides: dict[str, Side], data: bytes, connections: int, seconds: float
) -> dict[str, Phase]:
    """One closed-loop phase on every side at the same time, with each server's CPU.

    The sides' connections are interleaved in one event loop (u, t, u, t …): when the load
    generator is itself short of CPU, which it is on a busy machine, it serves both sides in
    turn rather than the one whose connections came first.
    """
    conns = {name: await open_connections(side.port, connections) for name, side in sides.items()}
    phases = {name: Phase() for name in sides}
    before = {name: _cpu(side.pid) for name, side in sides.items()}
    start = time.perf_counter()
    stop = start + seconds

    async def drive(conn: HttpConnection, phase: Phase) -> None:
        while (t0 := time.perf_counter()) < stop:
            status = await conn.request(data)
            phase.latencies.append(time.perf_counter() - t0)
            phase.statuses[status] = phase.statuses.get(status, 0) + 1

    per_side = [[(conn, phases[name]) for conn in conns[name]] for name in sides]
    interleaved = [pair for pairs in zip(*per_side, strict=True) for pair in pairs]
    try:
        await asyncio.gather(*(drive(conn, phase) for conn, phase in interleaved))
    finally:
        for opened in conns.values():
            close_connections(opened)
    for name, side in sides.items():
        phases[name].server_cpu = _cpu(side.pid) - before[name]
        phases[name].seconds = time.perf_counter() - start
        phases[name].requests = len(phases[name].latencies)
    return phases


def figures(
    runs: dict[str, dict[str, list[Phase]]], sample: float, batch_size: int, spans: int | None
) -> dict[str, Any]:
    """The comparison as the scenario's ``tracing`` object."""
    result: dict[str, Any] = {"sample": sample, "rounds": ROUNDS}
    for kind, per in (("single", 1), ("batch", batch_size)):
        rate, cpu = {}, {}
        for side in SIDES:
            phases = runs[side][kind]
            requests = sum(p.requests for p in phases)
            seconds = sum(p.seconds for p in phases)
            rate[side] = requests * per / seconds if seconds else 0.0
            cpu[side] = sum(p.server_cpu for p in phases) / requests * 1e6 if requests else 0.0
            unit = "req" if per == 1 else "event"
            result[f"{kind}_{side}_{'req' if per == 1 else 'events'}_per_s"] = round(rate[side])
            result[f"{kind}_{side}_cpu_us_per_{unit}"] = round(cpu[side] / per, 2)
            result[f"{kind}_{side}_per_round"] = [round(p.rate() * per) for p in phases]
        result[f"{kind}_ratio_per_round"] = [
            round(t.rate() / u.rate(), 3) if u.rate() else None
            for u, t in zip(runs["untraced"][kind], runs["traced"][kind], strict=True)
        ]
        result[f"{kind}_throughput_ratio"] = (
            round(rate["traced"] / rate["untraced"], 3) if rate["untraced"] else None
        )
        result[f"{kind}_cpu_ratio"] = (
            round(cpu["traced"] / cpu["untraced"], 3) if cpu["untraced"] else None
        )
    result["spans_exported"] = spans
    return result


def exported_spans(sink_port: int) -> int | None:
    """The spans the sink has received (None: it cannot be asked)."""
    try:
        counted = httpx.get(f"http://127.0.0.1:{sink_port}/count", timeout=5).json()
    except httpx.HTTPError:
        return None
    return int(counted["spans"])


# -- the same cost measured in process, where the machine's load cannot hide it -------------

REQUESTS_PER_REPEAT = 20_000
REPEATS = 5


def middleware_cost(sample: float, sink_port: int) -> dict[str, float]:
    """Process CPU µs per request of the API's request plumbing (``RequestContext`` around
    an app that answers 202 at once), tracing off and on at ``sample`` (exporting to the
    sink, flushed within each repeat, so the exporter thread's work counts): the least of
    ``REPEATS`` alternating repeats each. CPU time, unlike rates, does not grow when other
    processes take turns on the cores; the least repeat is the one they disturbed least."""
    saved = dict(os.environ)
    os.environ.update(traced_env(sample, sink_port))
    try:
        return asyncio.run(_middleware_cost())
    finally:
        tracing.shutdown()
        os.environ.clear()
        os.environ.update(saved)


async def _middleware_cost() -> dict[str, float]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    route = Route("/v1/events", app, methods=["POST"])
    headers = [(b"host", b"bench"), (b"authorization", b"Bearer k"), (b"content-length", b"80")]
    scope = {"type": "http", "method": "POST", "path": "/v1/events", "headers": headers}
    plumbing = RequestContext(app)
    best = {"off": float("inf"), "on": float("inf")}
    for _ in range(REPEATS):
        for side in ("off", "on"):
            if side == "on":
                tracing.configure("bench")
            started = time.process_time()
            for _ in range(REQUESTS_PER_REPEAT):
                await plumbing({**scope, "route": route}, receive, send)
            if side == "on":
                tracing.flush()
                tracing.shutdown()
            spent = (time.process_time() - started) / REQUESTS_PER_REPEAT * 1e6
            best[side] = min(best[side], spent)
    return {
        "plumbing_cpu_us_per_req_untraced": round(best["off"], 2),
        "plumbing_cpu_us_per_req_traced": round(best["on"], 2),
        "tracing_cpu_us_per_req": round(best["on"] - best["off"], 2),
    }
