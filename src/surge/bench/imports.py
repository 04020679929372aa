"""``surge bench import``: a CSV import of N rows against the raw COPY ceiling.

Both measurements run on a fresh database (dropped afterwards) on the configured server:
(a) ``COPY … FROM STDIN (FORMAT csv)`` of the file's good rows into an unlogged table, the
fastest PostgreSQL can take the bytes in; (b) the real import: the upload stored through
``service.create_import`` (as the API and CLI do), then the ``contacts.import`` job's
function run in this process on a pool (no worker subprocess, so no polling delay counts).
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import psycopg

from surge.bench.common import report
from surge.config import get_settings
from surge.contacts import imports, service
from surge.contacts.schemas import ListIn
from surge.db.migrate import migrate
from surge.db.pool import connect, open_pool
from surge.db.runtime import database
from surge.orgs.service import create_organization

HEADER = b"email,first_name,last_name,status,city,plan\n"
COPY_CEILING = (
    "create unlogged table copy_ceiling"
    " (email text, first_name text, last_name text, status text, city text, plan text)"
)


@dataclass(frozen=True, slots=True)
class Generated:
    path: Path
    clean: Path
    rows: int
    bad: int


def generate(directory: Path, rows: int, bad_every: int) -> Generated:
    """A CSV of ``rows`` rows, one in ``bad_every`` broken; and the same without the bad rows."""
    path, clean = directory / "contacts.csv", directory / "clean.csv"
    bad = 0
    with path.open("wb") as out, clean.open("wb") as good:
        out.write(HEADER)
        good.write(HEADER)
        for i in range(rows):
            if bad_every and i % bad_every == bad_every - 1:
                out.write(_bad_row(i))
                bad += 1
                continue
            status = "unsubscribed" if i % 50 == 0 else ""
            line = (
                f"User{i}@Example{i % 97}.org,First{i},Last {i},{status},City{i % 500},p{i % 3}\n"
            )
            data = line.encode()
            out.write(data)
            good.write(data)
    return Generated(path, clean, rows, bad)


def _bad_row(i: int) -> bytes:
    kind = i % 3
    if kind == 0:
        return f"user{i}-at-example.org,First{i},Last,,City,p0\n".encode()
    if kind == 1:
        return f"user{i}@example.org,First{i}\n".encode()
    return f"user{i}@example.org,".encode() + b"\xff\xfeBroken" + b",Last,,City,p1\n"


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _fresh_database(url: str) -> tuple[str, str]:
    name = f"surge_bench_import_{int(time.time())}"
    conn = await connect(url)
    try:
        await conn.execute(f'create database "{name}"')  # a name we made: no user input
    finally:
        await conn.close()
    bench_url = _with_db(url, name)
    conn = await connect(bench_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return name, bench_url


async def _drop_database(url: str, name: str) -> None:
    conn = await connect(url)
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


async def copy_ceiling(url: str, clean: Path) -> float:
    """Seconds for PostgreSQL's own CSV COPY of the good rows into an unlogged table."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await conn.execute(COPY_CEILING)
        started = time.perf_counter()
        async with conn.cursor().copy(
            "copy copy_ceiling from stdin (format csv, header true)"
        ) as copy:
            with clean.open("rb") as f:
                while piece := f.read(service.CHUNK_BYTES):
                    await copy.write(piece)
        elapsed = time.perf_counter() - started
        await conn.execute("drop table copy_ceiling")
        return elapsed
    finally:
        await conn.close()


async def _file_chunks(path: Path) -> Any:
    with path.open("rb") as f:  # noqa: ASYNC230 - local file, 1 MiB reads: not worth a thread
        while piece := f.read(service.CHUNK_BYTES):
            yield piece


async def real_import(url: str, path: Path, into_list: bool) -> dict[str, Any]:
    """Upload and run one import end to end (into a new list, if asked); its figures."""
    pool = await open_pool(url, max_size=4)
    try:
        async with pool.connection() as conn:
            org = (await create_organization(conn, "bench import")).id
            list_id = (
                (await service.create_list(conn, org, ListIn("bench"))).id if into_list else None
            )
            started = time.perf_counter()
            created, _ = await service.create_import(
                conn,
                org,
                _file_chunks(path),
                max_bytes=2**40,
                list_id=list_id,
                filename=path.name,
            )
        uploaded = time.perf_counter()
        status = await imports.process_import(pool, org, created.id)
        finished = time.perf_counter()
        async with pool.connection() as conn:
            final = await service.get_import(conn, org, created.id)
            cur = await conn.execute(
                "select count(*) from contacts where organization_id = %s", [org]
            )
            row = await cur.fetchone()
        return {
            "status": status,
            "seconds": finished - started,
            "upload_seconds": uploaded - started,
            "rows_failed": final.rows_failed,
            "rows_imported": final.rows_imported,
            "contacts": row[0] if row else 0,
        }
    finally:
        await pool.close()


async def run(url: str, rows: int, bad_every: int, into_list: bool, keep: bool) -> dict[str, Any]:
    name, bench_url = await _fresh_database(url)
    try:
        with tempfile.TemporaryDirectory(prefix="surge-bench-import-") as tmp:
            data = generate(Path(tmp), rows, bad_every)
            ceiling = await copy_ceiling(bench_url, data.clean)
            result = await real_import(bench_url, data.path, into_list)
            size = data.path.stat().st_size
    finally:
        if not keep:
            await _drop_database(url, name)
    good = rows - data.bad
    copy_rate = good / ceiling
    rate = rows / result["seconds"]
    return {
        "scenario": "import",
        "params": {
            "rows": rows,
            "bad_rows": data.bad,
            "file_bytes": size,
            "batch_rows": imports.BATCH_ROWS,
            "into_list": into_list,
            "runner": "in-process job function on a pool",
            "copy_only": "COPY (FORMAT csv) of the good rows into an unlogged table",
        },
        "rows": rows,
        "seconds": round(result["seconds"], 3),
        "upload_seconds": round(result["upload_seconds"], 3),
        "rows_per_s": round(rate),
        "copy_only_seconds": round(ceiling, 3),
        "copy_only_rows_per_s": round(copy_rate),
        "ratio_to_copy": round(rate / copy_rate, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bad_rows_reported": result["rows_failed"],
        "imported": result["contacts"],
        "status": result["status"],
        "ok": result["status"] == "completed"
        and result["rows_failed"] == data.bad
        and result["contacts"] == good,
    }


@click.command("import")
@click.option("--rows", type=int, default=1_000_000, show_default=True)
@click.option("--bad-every", type=int, default=33, show_default=True, help="One bad row in N.")
@click.option(
    "--list/--no-list",
    "into_list",
    default=True,
    show_default=True,
    help="Import into a list (adds the list memberships to the work).",
)
@click.option("--keep", is_flag=True, help="Keep the benchmark database.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def import_command(rows: int, bad_every: int, into_list: bool, keep: bool, as_json: bool) -> None:
    """Import a generated CSV of --rows rows; compare with a raw COPY of the same rows."""
    with database(get_settings()) as url:
        result = asyncio.run(run(url, rows, bad_every, into_list, keep))
    report(result, as_json)
