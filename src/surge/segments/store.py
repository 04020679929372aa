"""SQL of segments: the saved rows, and counting what a predicate matches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

Conn = AsyncConnection[Any]
COLUMNS = "id, name, rules::text as rules, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class SegmentRow:
    id: int
    name: str
    #: The rules as JSON text, decoded by the service into the rule types.
    rules: str
    created_at: datetime
    updated_at: datetime


async def insert(conn: Conn, org: int, name: str, rules: str) -> SegmentRow:
    cur = conn.cursor(row_factory=class_row(SegmentRow))
    await cur.execute(
        f"insert into segments (organization_id, name, rules) values (%s, %s, %s::jsonb)"
        f" returning {COLUMNS}",
        [org, name, rules],
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get(conn: Conn, org: int, segment_id: int) -> SegmentRow | None:
    cur = conn.cursor(row_factory=class_row(SegmentRow))
    await cur.execute(
        f"select {COLUMNS} from segments where organization_id = %s and id = %s",
        [org, segment_id],
    )
    return await cur.fetchone()


async def update(
    conn: Conn, org: int, segment_id: int, name: str | None, rules: str | None
) -> SegmentRow | None:
    cur = conn.cursor(row_factory=class_row(SegmentRow))
    await cur.execute(
        "update segments set name = coalesce(%s, name),"
        " rules = coalesce(%s::jsonb, rules), updated_at = now()"
        f" where organization_id = %s and id = %s returning {COLUMNS}",
        [name, rules, org, segment_id],
    )
    return await cur.fetchone()


async def delete(conn: Conn, org: int, segment_id: int) -> bool:
    cur = await conn.execute(
        "delete from segments where organization_id = %s and id = %s", [org, segment_id]
    )
    return cur.rowcount == 1


async def in_use(conn: Conn, org: int, segment_id: int) -> bool:
    cur = await conn.execute(
        "select exists (select 1 from messages where organization_id = %s and segment_id = %s)",
        [org, segment_id],
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def page(conn: Conn, org: int, after: int, limit: int) -> list[SegmentRow]:
    cur = conn.cursor(row_factory=class_row(SegmentRow))
    await cur.execute(
        f"select {COLUMNS} from segments where organization_id = %s and id > %s"
        " order by id limit %s",
        [org, after, limit],
    )
    return await cur.fetchall()


async def count(conn: Conn, org: int, predicate: sql.Composable) -> tuple[int, int]:
    """(matching, subscribed) contacts of ``org`` for which ``predicate`` holds."""
    query = sql.SQL(
        "select count(*), count(*) filter (where c.status = 'subscribed')"
        " from contacts c where c.organization_id = {} and {}"
    ).format(sql.Literal(org), predicate)
    cur = await conn.execute(query)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
