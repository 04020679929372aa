"""``surge bench ingest --tracing-sample R``: what tracing at ratio R costs event intake.

In the same run as the usual phases, ``ROUNDS`` times, two fresh ``surge api`` processes
serve the same database, one with tracing on (``parentbased_traceidratio`` at R, OTLP/HTTP
to a local sink in a process of its own, ``otlp_sink``), the traced one in alternate process
slots; single-event and batch phases drive both at once, half the connections each,
interleaved: whatever else the machine is doing
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.routing import Route

from surge.api.middleware import RequestContext
from surge.bench.common import (
    HttpConnection,
    close_connections,
    open_connections,
    stop_all,
    surge_process,
)
from surge.bench.ingest import Phase, _cpu
from surge.db.embedded import free_port
from surge.observability import tracing

#: Even: each of the two process slots is the traced one in half of the rounds.
ROUNDS = 4
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
    """What the comparison runs on: the scenario's database and API environment, and the
    traced APIs' sink, up for the whole comparison."""

    sample: float
    bench_url: str
    env: dict[str, str]
    sink_port: int
    sink: subprocess.Popen[bytes]


@dataclass(frozen=True)
class Side:
    port: int
    pid: int


def start(bench_url: str, sample: float, env: dict[str, str]) -> Traced:
    sink_port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "surge.bench.otlp_sink", str(sink_port)])
    return Traced(sample, bench_url, env, sink_port, sink)


Ready = Callable[[str, list[subprocess.Popen[bytes]]], None]


def compare(
    traced: Traced, single: bytes, batch: bytes, opts: Any, ready: Ready
) -> tuple[dict[str, dict[str, list[Phase]]], int]:
    """``ROUNDS`` rounds, each on two fresh APIs, the traced one in alternate process slots
    (started first or second, first or second in the interleaving): a slot's own advantage,
    10 % in an A/A run, then cancels out. Returns the phases by side and kind, and the
    events accepted in them (for the scenario's lost count)."""
    runs: dict[str, dict[str, list[Phase]]] = {s: {"single": [], "batch": []} for s in SIDES}
    accepted = 0
    traced_env_ = {**traced.env, **traced_env(traced.sample, traced.sink_port)}
    for round_ in range(ROUNDS):
        names = ("traced", "untraced") if round_ % 2 == 0 else ("untraced", "traced")
        ports = [free_port() for _ in names]
        procs = [
            surge_process(
                traced.bench_url,
                ["api", "--port", str(port)],
                traced_env_ if name == "traced" else traced.env,
            )
            for name, port in zip(names, ports, strict=True)
        ]
        try:
            for port in ports:
                ready(f"http://127.0.0.1:{port}", procs)
            sides = {
                name: Side(port, proc.pid)
                for name, port, proc in zip(names, ports, procs, strict=True)
            }
            phases, events = asyncio.run(_round(sides, single, batch, opts))
        finally:
            # The traced one first: it exports what it still holds as it exits.
            stop_all(sorted(procs, key=lambda p: names[procs.index(p)] != "traced"))
        accepted += events
        for name in SIDES:
            for kind in ("single", "batch"):
                runs[name][kind].append(phases[kind][name])
    return runs, accepted


async def _round(
    sides: dict[str, Side], single: bytes, batch: bytes, opts: Any
) -> tuple[dict[str, dict[str, Phase]], int]:
    half = max(1, opts.connections // 2)
    warm = await _together(sides, single, half, opts.warmup)
    accepted = sum(p.statuses.get(202, 0) for p in warm.values())
    phases = {}
    for kind, data, events in (("single", single, 1), ("batch", batch, opts.batch)):
        phases[kind] = await _together(sides, data, half, opts.seconds)
        accepted += sum(p.statuses.get(202, 0) for p in phases[kind].values()) * events
    return phases, accepted


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
