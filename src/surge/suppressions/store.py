"""SQL of the suppression list. Every query filters by organization_id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

Conn = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    email: str
    reason: str
    detail: str | None
    created_at: datetime


async def insert(
    conn: Conn, org: int, emails: Sequence[str], reasons: Sequence[str], details: Sequence[Any]
) -> int:
    """Suppress the addresses not suppressed yet; returns how many were new."""
    cur = await conn.execute(
        "insert into suppressions (organization_id, email, reason, detail)"
        " select %s, e, r, d from unnest(%s::text[], %s::text[], %s::text[]) as v(e, r, d)"
        " on conflict (organization_id, email) do nothing",
        [org, list(emails), list(reasons), list(details)],
    )
    return cur.rowcount


async def page(conn: Conn, org: int, after: int, limit: int, email: str | None) -> list[Row]:
    cur = conn.cursor(row_factory=class_row(Row))
    await cur.execute(
        "select id, email, reason, detail, created_at from suppressions"
        " where organization_id = %(org)s and id > %(after)s"
        " and (%(email)s::text is null or email = %(email)s)"
        " order by id limit %(limit)s",
        {"org": org, "after": after, "limit": limit, "email": email},
    )
    return await cur.fetchall()


async def delete(conn: Conn, org: int, email: str) -> bool:
    cur = await conn.execute(
        "delete from suppressions where organization_id = %s and email = %s", [org, email]
    )
    return cur.rowcount == 1


async def count_soft_bounces(
    conn: Conn, org: int, emails: Sequence[str], window_days: int
) -> list[tuple[str, int]]:
    """Count one soft bounce for each address; returns (address, bounces in the window).

    A count whose first bounce is older than the window starts again at one.
    """
    cur = await conn.execute(
        "insert into soft_bounces (organization_id, email, bounces)"
        " select %(org)s, e, 1 from unnest(%(emails)s::text[]) as e"
        " on conflict (organization_id, email) do update set"
        "  bounces = case when soft_bounces.first_at < now() - make_interval(days => %(days)s)"
        "   then 1 else soft_bounces.bounces + 1 end,"
        "  first_at = case when soft_bounces.first_at < now() - make_interval(days => %(days)s)"
        "   then now() else soft_bounces.first_at end,"
        "  last_at = now()"
        " returning email, bounces",
        {"org": org, "emails": list(emails), "days": window_days},
    )
    return [(str(email), int(n)) for email, n in await cur.fetchall()]
