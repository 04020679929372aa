"""SQL of the exports table and its stored pieces. Every statement filters by organization_id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

Conn = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class ExportRow:
    id: int
    kind: str
    status: str
    filters: dict[str, Any]
    spreadsheet_safe: bool
    rows_total: int | None
    rows_written: int
    size_bytes: int
    compressed_bytes: int
    chunks_total: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None


COLUMNS = (
    "id, kind, status, filters, spreadsheet_safe, rows_total, rows_written, size_bytes,"
    " compressed_bytes, chunks_total, error, created_at, started_at, finished_at, expires_at"
)


async def insert_export(
    conn: Conn, org: int, kind: str, filters: str, safe: bool, key: str | None
) -> int | None:
    """A new queued export; None if ``key`` already names one of this organisation's."""
    cur = await conn.execute(
        "insert into exports (organization_id, kind, filters, spreadsheet_safe, idempotency_key)"
        " values (%s, %s, %s::jsonb, %s, %s)"
        " on conflict (organization_id, idempotency_key) where idempotency_key is not null"
        " do nothing returning id",
        [org, kind, filters, safe, key],
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def export_by_key(conn: Conn, org: int, key: str) -> int | None:
    cur = await conn.execute(
        "select id from exports where organization_id = %s and idempotency_key = %s", [org, key]
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def get_export(conn: Conn, org: int, export_id: int) -> ExportRow | None:
    cur = conn.cursor(row_factory=class_row(ExportRow))
    await cur.execute(
        f"select {COLUMNS} from exports where organization_id = %s and id = %s", [org, export_id]
    )
    return await cur.fetchone()


async def page(
    conn: Conn, org: int, before: int | None, limit: int, kind: str | None, status: str | None
) -> list[ExportRow]:
    """Newest first: a backward scan of the primary key from ``before``."""
    cur = conn.cursor(row_factory=class_row(ExportRow))
    await cur.execute(
        f"select {COLUMNS} from exports where organization_id = %(org)s"
        " and (%(before)s::bigint is null or id < %(before)s::bigint)"
        " and (%(kind)s::text is null or kind = %(kind)s::text)"
        " and (%(status)s::text is null or status = %(status)s::text)"
        " order by id desc limit %(limit)s",
        {"org": org, "before": before, "limit": limit, "kind": kind, "status": status},
    )
    return await cur.fetchall()


async def delete_export(conn: Conn, org: int, export_id: int) -> bool:
    """Delete an export and its stored pieces (cascade); False if there was none."""
    cur = await conn.execute(
        "delete from exports where organization_id = %s and id = %s", [org, export_id]
    )
    return cur.rowcount > 0


# -- the job's writes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    """An export as one run of its job sees it: what to export, and the run's number."""

    kind: str
    filters: dict[str, Any]
    spreadsheet_safe: bool
    attempt: int


async def start_run(conn: Conn, org: int, export_id: int) -> Run | None:
    """Mark running, reset progress and number this run; None if finished or gone.

    The previous run's pieces, if it died half-way, are deleted in the same transaction:
    a run writes its file from the first piece.
    """
    async with conn.transaction():
        cur = conn.cursor(row_factory=class_row(Run))
        await cur.execute(
            "update exports set status = 'running', started_at = now(), finished_at = null,"
            " attempts = attempts + 1, rows_total = null, rows_written = 0, size_bytes = 0,"
            " compressed_bytes = 0, chunks_total = 0, error = null"
            " where organization_id = %s and id = %s and status in ('queued', 'running')"
            " returning kind, filters, spreadsheet_safe, attempts as attempt",
            [org, export_id],
        )
        run = await cur.fetchone()
        if run is not None:
            await conn.execute(
                "delete from export_chunks where organization_id = %s and export_id = %s",
                [org, export_id],
            )
        return run


# Locks the export row, so a run numbered before the latest (a rescued job's first run still
# going somewhere) waits for the newer run's start to commit and then matches nothing.
_STILL_OURS = """
select 1 from exports
where organization_id = %(org)s and id = %(id)s and status = 'running' and attempts = %(attempt)s
for update
"""


async def still_ours(conn: Conn, org: int, export_id: int, attempt: int) -> bool:
    """Whether run ``attempt`` may still write (call inside the write's transaction)."""
    cur = await conn.execute(_STILL_OURS, {"org": org, "id": export_id, "attempt": attempt})
    return await cur.fetchone() is not None


async def set_total(conn: Conn, org: int, export_id: int, rows: int) -> None:
    await conn.execute(
        "update exports set rows_total = %s where organization_id = %s and id = %s",
        [rows, org, export_id],
    )


async def set_progress(conn: Conn, org: int, export_id: int, rows: int, size: int) -> None:
    await conn.execute(
        "update exports set rows_written = %s, size_bytes = %s"
        " where organization_id = %s and id = %s",
        [rows, size, org, export_id],
    )


async def add_piece(
    conn: Conn,
    org: int,
    export_id: int,
    seq: int,
    data: bytes,
    rows: int,
    size: int,
    compressed: int,
) -> None:
    """Store one piece and the progress it brings (inside the run's fenced transaction)."""
    await conn.execute(
        "insert into export_chunks (organization_id, export_id, seq, data) values (%s, %s, %s, %s)",
        [org, export_id, seq, data],
    )
    await conn.execute(
        "update exports set rows_written = %s, size_bytes = %s, compressed_bytes = %s,"
        " chunks_total = %s where organization_id = %s and id = %s",
        [rows, size, compressed, seq + 1, org, export_id],
    )


async def complete(conn: Conn, org: int, export_id: int, keep_days: int) -> None:
    await conn.execute(
        "update exports set status = 'completed', finished_at = now(),"
        " expires_at = now() + make_interval(days => %s)"
        " where organization_id = %s and id = %s",
        [keep_days, org, export_id],
    )


async def fail(conn: Conn, org: int, export_id: int, reason: str) -> bool:
    """Mark a queued or running export failed and drop its pieces; False if it was not."""
    cur = await conn.execute(
        "update exports set status = 'failed', error = %s, finished_at = now()"
        " where organization_id = %s and id = %s and status in ('queued', 'running')",
        [reason, org, export_id],
    )
    await conn.execute(
        "delete from export_chunks where organization_id = %s and export_id = %s",
        [org, export_id],
    )
    return cur.rowcount > 0


async def read_piece(conn: Conn, org: int, export_id: int, seq: int) -> bytes | None:
    cur = await conn.execute(
        "select data from export_chunks where organization_id = %s and export_id = %s and seq = %s",
        [org, export_id, seq],
    )
    row = await cur.fetchone()
    return None if row is None else bytes(row[0])


# -- expiry -------------------------------------------------------------------------------


async def expire_due(conn: Conn, limit: int) -> list[tuple[int, int]]:
    """Mark up to ``limit`` completed exports past their expiry as expired and delete their
    pieces; returns their (organization_id, id). Uses exports_expiry_idx."""
    cur = await conn.execute(
        """
        with due as (
            select organization_id, id from exports
            where status = 'completed' and expires_at <= now()
            order by expires_at limit %s
            for update skip locked
        ), expired as (
            update exports e set status = 'expired'
            from due where e.organization_id = due.organization_id and e.id = due.id
            returning e.organization_id, e.id
        ), gone as (
            delete from export_chunks c using expired x
            where c.organization_id = x.organization_id and c.export_id = x.id
        )
        select organization_id, id from expired
        """,
        [limit],
    )
    return [(int(r[0]), int(r[1])) for r in await cur.fetchall()]
