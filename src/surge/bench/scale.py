"""``surge bench scale``: what each added API process and worker buys on this machine.

For each count in ``--processes`` (default 1, 2 and 4), in a fresh database of its own:

- **API**: that many ``surge api`` processes, each on its own port; the load generator spreads
  its keep-alive connections evenly over them (what a load balancer does) and sends single
  events to ``POST /v1/events`` in a closed loop, then batches of ``--batch`` events;
- **workers**: ``--jobs`` no-op jobs enqueued with COPY, drained by that many ``surge worker``
  processes (the ``surge bench jobs`` scenario).

Figures per count: requests and events per second, job drain rate, and for each step the
gain per added process and the efficiency against perfect scaling (rate / (n x rate at 1)).
The load generator, PostgreSQL and the processes share the machine's cores: past the number
of cores, an added process mostly competes with the others, which is what the figures show;
``docs/scaling.md`` reads them.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import click
import psutil

from surge.bench.common import PeakRss, fresh_database, report, scalar, stop_all, surge_process
from surge.bench.ingest import Phase, _wait_ready, closed_loop, http_request
from surge.bench.jobs import run_scenario as drain_jobs
from surge.config import get_settings
from surge.db.embedded import free_port
from surge.db.pool import connect
from surge.db.runtime import database
from surge.orgs.service import create_organization

BENCH_DATABASE = "surge_bench_scale"


def _counts(value: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter("a comma-separated list of process counts, e.g. 1,2,4") from None
    if not counts or counts[0] < 1 or counts[-1] > 32:
        raise click.BadParameter("process counts must be between 1 and 32")
    return counts


@click.command("scale")
@click.option("--processes", default="1,2,4", show_default=True, help="Process counts to run.")
@click.option("--seconds", type=float, default=5.0, show_default=True, help="Per API phase.")
@click.option("--connections", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=50_000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def scale_command(
    processes: str, seconds: float, connections: int, batch: int, jobs: int, as_json: bool
) -> None:
    """Run 1, 2 and 4 API processes and workers; report throughput per added process."""
    counts = _counts(processes)
    settings = get_settings()
    runs: list[dict[str, Any]] = []
    with database(settings) as url:
        for n in counts:
            api = _api_run(url, n, seconds, connections, batch)
            figures = asyncio.run(drain_jobs(url, jobs, n, settings.worker_concurrency, 600.0))
            runs.append(
                {
                    "processes": n,
                    **api,
                    "jobs_per_s": round(figures.finished / figures.drain_seconds)
                    if figures.drain_seconds
                    else None,
                    "jobs_lost": jobs - figures.distinct,
                    "jobs_duplicated": figures.finished - figures.distinct,
                    "worker_peak_rss_mb": figures.peak_rss,
                }
            )
    result = {
        "scenario": "scale",
        "params": {
            "processes": counts,
            "seconds": seconds,
            "connections": connections,
            "batch": batch,
            "jobs": jobs,
            "cpus": os.cpu_count(),
            "balancing": "client-side: connections spread evenly over the API processes",
        },
        "runs": runs,
        "steps": _steps(runs, ["single_req_per_s", "batch_events_per_s", "jobs_per_s"]),
    }
    report(result, as_json)


def _api_run(url: str, n: int, seconds: float, connections: int, batch: int) -> dict[str, Any]:
    bench_url, key = asyncio.run(_prepare(url))
    ports = [free_port() for _ in range(n)]
    env = {"SURGE_INGEST_RATE": "0"}
    procs = [surge_process(bench_url, ["api", "--port", str(p)], env) for p in ports]
    try:
        for port in ports:
            _wait_ready(f"http://127.0.0.1:{port}", procs)
        rss = PeakRss({f"api{i}": p.pid for i, p in enumerate(procs)})
        single, batched, client_cpu = asyncio.run(
            _load(ports, key, seconds, connections, batch, rss)
        )
    finally:
        stop_all(procs)
    stored = asyncio.run(_stored(bench_url))
    accepted = single.statuses.get(202, 0) + batched.statuses.get(202, 0) * batch
    return {
        "single_req_per_s": round(single.rate()),
        "single_p99_ms": single.percentile(0.99),
        "batch_events_per_s": round(batched.rate() * batch),
        "batch_p99_ms": batched.percentile(0.99),
        "errors": {
            str(s): c for phase in (single, batched) for s, c in phase.statuses.items() if s != 202
        },
        "events_lost": max(0, accepted - stored),
        "client_cpu_share": round(client_cpu, 2),
        "api_peak_rss_mb": rss.megabytes(),
    }


async def _load(
    ports: list[int], key: str, seconds: float, connections: int, batch: int, rss: PeakRss
) -> tuple[Phase, Phase, float]:
    single = http_request("/v1/events", key, b'{"type":"bench.click","contact_id":1}')
    events = b",".join(b'{"type":"bench.view","contact_id":%d}' % (i + 1) for i in range(batch))
    batched = http_request("/v1/events", key, b'{"events":[' + events + b"]}")
    per_port = max(1, connections // len(ports))
    await _spread(ports, single, per_port, 1.0)  # warm-up: connections, caches, JIT of plans
    me = psutil.Process()
    cpu0, t0 = sum(me.cpu_times()[:2]), time.perf_counter()
    rss.sample()
    one = await _spread(ports, single, per_port, seconds)
    many = await _spread(ports, batched, per_port, seconds)
    rss.sample()
    share = (sum(me.cpu_times()[:2]) - cpu0) / (time.perf_counter() - t0)
    return one, many, share


async def _spread(ports: list[int], data: bytes, per_port: int, seconds: float) -> Phase:
    """One closed loop per API process, run together; their figures summed."""
    phases = await asyncio.gather(*(closed_loop(p, data, per_port, seconds) for p in ports))
    total = Phase(seconds=max(p.seconds for p in phases))
    for phase in phases:
        total.requests += phase.requests
        total.latencies.extend(phase.latencies)
        for status, count in phase.statuses.items():
            total.statuses[status] = total.statuses.get(status, 0) + count
    return total


def _steps(runs: list[dict[str, Any]], figures: list[str]) -> list[dict[str, Any]]:
    """For each added step: gain per added process, and efficiency against perfect scaling."""
    steps = []
    first = runs[0]
    for before, after in zip(runs, runs[1:], strict=False):
        added = after["processes"] - before["processes"]
        step: dict[str, Any] = {"from": before["processes"], "to": after["processes"]}
        for name in figures:
            a, b, base = before.get(name), after.get(name), first.get(name)
            if a is None or b is None or not base:
                continue
            step[f"{name}_gain_per_added_process"] = round((b - a) / added)
            step[f"{name}_efficiency"] = round(
                b / (base * after["processes"] / first["processes"]), 3
            )
        steps.append(step)
    return steps


async def _prepare(url: str) -> tuple[str, str]:
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
