"""SQL of sponsor matches and challenges. Every query filters by organisation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

Conn = AsyncConnection[Any]

COLUMNS = (
    "id, campaign_id, sponsor, kind, ratio_percent, cap_minor as cap, threshold_kind,"
    " threshold, starts_at, ends_at, created_at"
)


@dataclass(frozen=True, slots=True)
class MatchRow:
    id: int
    campaign_id: int
    sponsor: str
    kind: str
    ratio_percent: int | None
    cap: int
    threshold_kind: str | None
    threshold: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime


async def _one(conn: Conn, query: str, params: Any) -> MatchRow | None:
    cur = conn.cursor(row_factory=class_row(MatchRow))
    await cur.execute(query, params)
    return await cur.fetchone()


async def lock_and_count(conn: Conn, org: int, campaign_id: int) -> int:
    """Lock the campaign's row (creations take turns, so a limit holds) and count its
    matches (campaign_matches_campaign_idx)."""
    await conn.execute(
        "select 1 from campaigns where id = %s and organization_id = %s for update",
        [campaign_id, org],
    )
    cur = await conn.execute(
        "select count(*) from campaign_matches where campaign_id = %s", [campaign_id]
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def insert(conn: Conn, org: int, campaign_id: int, values: dict[str, Any]) -> MatchRow:
    found = await _one(
        conn,
        "insert into campaign_matches (organization_id, campaign_id, sponsor, kind,"
        " ratio_percent, cap_minor, threshold_kind, threshold, starts_at, ends_at)"
        " values (%(org)s, %(campaign)s, %(sponsor)s, %(kind)s, %(ratio_percent)s,"
        " %(cap)s, %(threshold_kind)s, %(threshold)s, %(starts_at)s, %(ends_at)s)"
        f" returning {COLUMNS}",
        {**values, "org": org, "campaign": campaign_id},
    )
    assert found is not None
    return found


async def of_campaign(conn: Conn, org: int, campaign_id: int) -> list[MatchRow]:
    cur = conn.cursor(row_factory=class_row(MatchRow))
    await cur.execute(
        f"select {COLUMNS} from campaign_matches"
        " where organization_id = %s and campaign_id = %s order by id",
        [org, campaign_id],
    )
    return await cur.fetchall()


async def get(conn: Conn, org: int, match_id: int) -> MatchRow | None:
    return await _one(
        conn,
        f"select {COLUMNS} from campaign_matches where organization_id = %s and id = %s",
        [org, match_id],
    )


async def update(
    conn: Conn, org: int, match_id: int, sponsor: str | None, cap: int | None
) -> MatchRow | None:
    """Set the sponsor's name and/or the cap (None keeps it)."""
    return await _one(
        conn,
        "update campaign_matches set sponsor = coalesce(%(sponsor)s, sponsor),"
        " cap_minor = coalesce(%(cap)s, cap_minor)"
        f" where organization_id = %(org)s and id = %(id)s returning {COLUMNS}",
        {"sponsor": sponsor, "cap": cap, "org": org, "id": match_id},
    )


async def delete(conn: Conn, org: int, match_id: int) -> bool:
    cur = await conn.execute(
        "delete from campaign_matches where organization_id = %s and id = %s", [org, match_id]
    )
    return cur.rowcount > 0
