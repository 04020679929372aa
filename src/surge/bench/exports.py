"""``surge bench export``: a CSV export of N contacts end to end, against the bare COPY.

On a fresh database (dropped afterwards) of the configured server, with N contacts seeded
server-side (names, a jsonb of attributes, one first name in 100 starting with "="):
(a) baseline: the export's own ``COPY (SELECT …) TO STDOUT (FORMAT csv, HEADER)`` read to
the end by psycopg and thrown away: no compression, no storage, no job;
(b) the export job end to end: ``POST /v1/exports`` to a real ``surge api``, a real
``surge worker --queues bulk`` runs it (count, COPY, gzip, pieces stored in PostgreSQL),
timed by the export's own ``created_at`` and ``finished_at`` (the client's polling, every
0.25 s, also reports what it saw);
(c) the download of the finished file through the API, gzip-encoded (as stored) and
inflated by the API (a client that does not accept gzip), each checked row by row count.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import zlib
from datetime import datetime
from typing import Any

import click
import httpx

from surge.bench.common import (
    PeakRss,
    check_alive,
    fresh_database,
    report,
    stop_all,
    surge_process,
    wait_ready,
)
from surge.config import get_settings
from surge.db.embedded import free_port
from surge.db.pool import connect
from surge.db.runtime import database
from surge.exports import queries, stream
from surge.exports.schemas import Filters
from surge.orgs.service import create_organization

BENCH_DATABASE = "surge_bench_export"
#: The client's polls of GET /v1/exports/{id}: each costs the API and the database a little
#: CPU, and at 50 a second they slowed the export they watch by a fifth on two cores. The
#: time measured is the export's own (created_at to finished_at), so polls need not be fine.
POLL_SECONDS = 0.25

SEED = """
insert into contacts (organization_id, email, first_name, last_name, status, attributes)
select %(org)s, 'user' || i || '@example' || (i %% 97) || '.org',
    case when i %% 100 = 0 then '=HYPERLINK(' || i || ')' else 'First' || i end,
    'Last ' || i,
    case when i %% 50 = 0 then 'unsubscribed' else 'subscribed' end,
    jsonb_build_object('city', 'City' || (i %% 500), 'plan', 'p' || (i %% 3))
from generate_series(1, %(rows)s) as i
"""


async def _seed(url: str, rows: int) -> tuple[int, str]:
    conn = await connect(url)
    try:
        org = await create_organization(conn, "bench export")
        await conn.execute(SEED, {"org": org.id, "rows": rows})
        # A steady database has its visibility map set: counts read the index alone.
        await conn.execute("vacuum analyze contacts")
        return org.id, org.secret_key
    finally:
        await conn.close()


def bare_copy(url: str, org: int) -> tuple[float, int]:
    """Seconds for the export's own COPY read to the end by psycopg, and its rows."""
    select = queries.select("contacts", org, Filters(), safe=True)
    with stream.connect(url) as conn, stream.snapshot(conn):
        started = time.perf_counter()
        lines = sum(1 for _ in stream.copy_rows(conn, queries.copy(select)))
        return time.perf_counter() - started, lines - 1


async def _export(base: str, key: str, rss: PeakRss, procs: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as client:
        started = time.perf_counter()
        created = await client.post("/v1/exports", json={"kind": "contacts"})
        if created.status_code != 202:
            raise click.ClickException(f"POST /v1/exports: {created.status_code} {created.text}")
        export_id = created.json()["id"]
        while True:
            rss.sample()
            check_alive(list(procs.values()))
            current = (await client.get(f"/v1/exports/{export_id}")).json()
            if current["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        gz = await _download(client, export_id, "gzip", rss)
        plain = await _download(client, export_id, "identity", rss)
    return {"export": current, "seconds": seconds, "gzip": gz, "identity": plain}


async def _download(
    client: httpx.AsyncClient, export_id: int, encoding: str, rss: PeakRss
) -> dict[str, Any]:
    """Fetch the file with this Accept-Encoding; its seconds, bytes and CSV lines."""
    started = time.perf_counter()
    inflater = zlib.decompressobj(stream.GZIP_WBITS) if encoding == "gzip" else None
    received = lines = 0
    url = f"/v1/exports/{export_id}/download"
    async with client.stream("GET", url, headers={"Accept-Encoding": encoding}) as response:
        if response.status_code != 200:
            raise click.ClickException(f"GET {url}: {response.status_code}")
        # aiter_raw: the body as sent, so the gzip one is inflated here, and counted.
        async for data in response.aiter_raw():
            received += len(data)
            text = inflater.decompress(data) if inflater is not None else data
            lines += text.count(b"\n")
            rss.sample()
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "bytes": received,
        "lines": lines,
        "content_encoding": response.headers.get("content-encoding", "identity"),
    }


async def _bench(url: str, rows: int, keep: bool) -> dict[str, Any]:
    bench_url = await fresh_database(url, BENCH_DATABASE)
    org, key = await _seed(bench_url, rows)
    copy_seconds, copy_rows = await asyncio.to_thread(bare_copy, bench_url, org)
    api_port = free_port()
    env = {
        "SURGE_SECRET_KEY": "bench",
        "SURGE_DATA_DIR": tempfile.mkdtemp(prefix="surge-bench-export-"),
        "SURGE_WORKER_POLL_INTERVAL": "0.05",
        "SURGE_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
    }
    procs = {
        "api": surge_process(bench_url, ["api", "--port", str(api_port)], env),
        # Niceness 0, like the baseline's process: a bulk worker's default (10) only matters
        # when something else wants the CPU, and on a shared machine that is someone else.
        "worker_bulk": surge_process(bench_url, ["worker", "--queues", "bulk", "--nice", "0"], env),
    }
    rss = PeakRss({name: p.pid for name, p in procs.items()})
    try:
        base = f"http://127.0.0.1:{api_port}"
        await wait_ready(base, list(procs.values()), seconds=30)
        done = await _export(base, key, rss, procs)
    finally:
        stop_all(list(procs.values()))
        if not keep:
            await _drop(url)
    return _result(rows, copy_seconds, copy_rows, done, rss)


async def _drop(url: str) -> None:
    conn = await connect(url)
    try:
        await conn.execute(f'drop database if exists "{BENCH_DATABASE}" with (force)')
    finally:
        await conn.close()


def _result(
    rows: int, copy_seconds: float, copy_rows: int, done: dict[str, Any], rss: PeakRss
) -> dict[str, Any]:
    export = done["export"]
    seconds = _between(export["created_at"], export["finished_at"])
    rate = rows / seconds
    copy_rate = copy_rows / copy_seconds
    gz, plain = done["gzip"], done["identity"]
    return {
        "scenario": "export",
        "params": {
            "rows": rows,
            "kind": "contacts",
            "spreadsheet_safe": True,
            "chunk_bytes": stream.CHUNK_BYTES,
            "gzip_level": stream.GZIP_LEVEL,
            "cpus": os.cpu_count(),
            "job": "POST /v1/exports -> surge worker --queues bulk --nice 0 -> completed",
            "baseline": "the same COPY (SELECT ...) TO STDOUT read by psycopg, discarded",
        },
        "rows": export["rows_written"],
        # POST's commit to the completion's, by the export's own times (the database clock).
        "seconds": seconds,
        "client_seconds": round(done["seconds"], 3),
        "rows_per_s": round(rate),
        "copy_only_seconds": round(copy_seconds, 3),
        "copy_only_rows_per_s": round(copy_rate),
        "ratio_to_copy": round(rate / copy_rate, 4),
        # From the export's own times: waiting for a worker, then its run (count, COPY,
        # gzip, pieces stored, completion).
        "queued_seconds": _between(export["created_at"], export["started_at"]),
        "run_seconds": _between(export["started_at"], export["finished_at"]),
        "csv_bytes": export["size_bytes"],
        "stored_gzip_bytes": export["compressed_bytes"],
        "download_gzip_seconds": gz["seconds"],
        "download_gzip_rows_per_s": round(rows / gz["seconds"]) if gz["seconds"] else None,
        "download_identity_seconds": plain["seconds"],
        "download_identity_rows_per_s": round(rows / plain["seconds"])
        if plain["seconds"]
        else None,
        "peak_rss_mb": rss.megabytes(),
        "cpu_seconds": rss.cpu_seconds(),
        "status": export["status"],
        "ok": export["status"] == "completed"
        and export["rows_written"] == rows == copy_rows
        and gz["lines"] == plain["lines"] == rows + 1
        and gz["content_encoding"] == "gzip"
        and plain["bytes"] == export["size_bytes"],
    }


def _between(start: str, end: str) -> float:
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


@click.command("export")
@click.option("--rows", type=click.IntRange(min=1), default=1_000_000, show_default=True)
@click.option("--keep", is_flag=True, help="Keep the benchmark database.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def export_command(rows: int, keep: bool, as_json: bool) -> None:
    """Export --rows contacts as CSV end to end; compare with the bare COPY of the same rows."""
    with database(get_settings()) as url:
        result = asyncio.run(_bench(url, rows, keep))
    report(result, as_json)
