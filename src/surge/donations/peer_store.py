"""SQL of peer-to-peer fundraising: teams, fundraisers, their sharded totals, leaderboards.

Staff reads and writes filter by organisation. The public reads (a page by its slug, its
totals, the leaderboards) take the campaign id the public page already resolved from its
address, like the public campaign totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row

from surge.fields import like_escape

Conn = AsyncConnection[Any]
Kind = Literal["team", "fundraiser"]

#: Shards of a fundraiser's or team's totals (striped counters: see ``counting``).
SHARDS = 4

_TABLE = {"team": "fundraising_teams", "fundraiser": "fundraisers"}
_TOTALS = {"team": ("team_totals", "team_id"), "fundraiser": ("fundraiser_totals", "fundraiser_id")}
TEAM_COLUMNS = "id, campaign_id, name, slug, goal_minor as goal, story, created_at, updated_at"
FUNDRAISER_COLUMNS = (
    "id, campaign_id, team_id, name, slug, goal_minor as goal, story, email, created_at, updated_at"
)
_COLUMNS = {"team": TEAM_COLUMNS, "fundraiser": FUNDRAISER_COLUMNS}
#: What a row may be given or changed: API field → column.
_FIELDS = {"name": "name", "slug": "slug", "goal": "goal_minor", "story": "story"}
_FUNDRAISER_FIELDS = {**_FIELDS, "team_id": "team_id", "email": "email"}


@dataclass(frozen=True, slots=True)
class TeamRow:
    id: int
    campaign_id: int
    name: str
    slug: str
    goal: int | None
    story: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class FundraiserRow:
    id: int
    campaign_id: int
    team_id: int | None
    name: str
    slug: str
    goal: int | None
    story: str | None
    email: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PageTotalsRow:
    """A page's goal and its sums in the campaign's currency (``raised`` 0 when none yet)."""

    id: int
    campaign_id: int
    goal: int | None
    currency: str | None
    raised: int
    donations: int
    as_of: datetime


@dataclass(frozen=True, slots=True)
class BoardRow:
    id: int
    name: str
    slug: str
    goal: int | None
    team_id: int | None
    raised: int
    donations: int


def _row_type(kind: Kind) -> type[Any]:
    return TeamRow if kind == "team" else FundraiserRow


async def insert(conn: Conn, kind: Kind, org: int, campaign_id: int, values: dict[str, Any]) -> Any:
    """Insert a team or fundraiser (``values`` keyed by API field); UniqueViolation on a
    slug taken in the campaign."""
    fields = _FUNDRAISER_FIELDS if kind == "fundraiser" else _FIELDS
    given = {_col: values[name] for name, _col in fields.items() if name in values}
    columns = ["organization_id", "campaign_id", *given]
    query = sql.SQL(
        "insert into {table} ({columns}) values ({values}) returning {returning}"
    ).format(
        table=sql.Identifier(_TABLE[kind]),
        columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        returning=sql.SQL(_COLUMNS[kind]),
    )
    cur = conn.cursor(row_factory=class_row(_row_type(kind)))
    await cur.execute(query, [org, campaign_id, *given.values()])
    return await cur.fetchone()


async def update(conn: Conn, kind: Kind, org: int, row_id: int, values: dict[str, Any]) -> Any:
    """Change the given fields of one of the organisation's teams or fundraisers; None if
    there is none such. UniqueViolation on a slug taken in the campaign."""
    fields = _FUNDRAISER_FIELDS if kind == "fundraiser" else _FIELDS
    sets = [
        sql.SQL("{} = {}").format(sql.Identifier(fields[name]), sql.Placeholder(name))
        for name in values
    ]
    query = sql.SQL(
        "update {table} set {sets}, updated_at = now()"
        " where organization_id = %(org)s and id = %(id)s returning {returning}"
    ).format(
        table=sql.Identifier(_TABLE[kind]),
        sets=sql.SQL(", ").join(sets),
        returning=sql.SQL(_COLUMNS[kind]),
    )
    cur = conn.cursor(row_factory=class_row(_row_type(kind)))
    await cur.execute(query, {**values, "org": org, "id": row_id})
    return await cur.fetchone()


async def get(conn: Conn, kind: Kind, org: int, row_id: int) -> Any:
    """One of the organisation's teams or fundraisers (primary key)."""
    cur = conn.cursor(row_factory=class_row(_row_type(kind)))
    await cur.execute(
        sql.SQL("select {columns} from {table} where organization_id = %s and id = %s").format(
            columns=sql.SQL(_COLUMNS[kind]), table=sql.Identifier(_TABLE[kind])
        ),
        [org, row_id],
    )
    return await cur.fetchone()


async def by_id(conn: Conn, kind: Kind, row_id: int) -> Any:
    """A team or fundraiser by id alone: public pages and the donation intake's check."""
    cur = conn.cursor(row_factory=class_row(_row_type(kind)))
    await cur.execute(
        sql.SQL("select {columns} from {table} where id = %s").format(
            columns=sql.SQL(_COLUMNS[kind]), table=sql.Identifier(_TABLE[kind])
        ),
        [row_id],
    )
    return await cur.fetchone()


async def by_slug(conn: Conn, kind: Kind, campaign_id: int, slug: str) -> Any:
    """A campaign's team or fundraiser by its slug (the ``*_slug_idx`` unique index)."""
    cur = conn.cursor(row_factory=class_row(_row_type(kind)))
    await cur.execute(
        sql.SQL("select {columns} from {table} where campaign_id = %s and slug = %s").format(
            columns=sql.SQL(_COLUMNS[kind]), table=sql.Identifier(_TABLE[kind])
        ),
        [campaign_id, slug],
    )
    return await cur.fetchone()


async def page(conn: Conn, kind: Kind, org: int, campaign_id: int, after: int, limit: int) -> Any:
    """One keyset page of a campaign's teams or fundraisers (``*_organization_idx``)."""
    cur = conn.cursor(row_factory=class_row(_row_type(kind)))
    await cur.execute(
        sql.SQL(
            "select {columns} from {table} where organization_id = %s and campaign_id = %s"
            " and id > %s order by id limit %s"
        ).format(columns=sql.SQL(_COLUMNS[kind]), table=sql.Identifier(_TABLE[kind])),
        [org, campaign_id, after, limit],
    )
    return await cur.fetchall()


async def taken_slugs(conn: Conn, kind: Kind, campaign_id: int, base: str) -> set[str]:
    """The campaign's team or fundraiser slugs that are ``base`` or ``base-…``."""
    cur = await conn.execute(
        sql.SQL(
            "select slug from {table} where campaign_id = %s and (slug = %s or slug like %s)"
        ).format(table=sql.Identifier(_TABLE[kind])),
        [campaign_id, base, like_escape(base) + "-%"],
    )
    return {row[0] for row in await cur.fetchall()}


async def page_totals(conn: Conn, kind: Kind, row_id: int) -> PageTotalsRow | None:
    """A team's or fundraiser's goal and totals in its campaign's currency (summed shards)."""
    table, key = _TOTALS[kind]
    cur = conn.cursor(row_factory=class_row(PageTotalsRow))
    await cur.execute(
        sql.SQL(
            "select p.id, p.campaign_id, p.goal_minor as goal, c.currency,"
            " coalesce(t.raised, 0) as raised, coalesce(t.donations, 0) as donations,"
            " now() as as_of from {pages} p join campaigns c on c.id = p.campaign_id"
            " left join lateral (select sum(raised_minor)::bigint as raised,"
            "   sum(donations)::bigint as donations from {totals}"
            "   where {key} = p.id and currency = c.currency) t on true"
            " where p.id = %s"
        ).format(
            pages=sql.Identifier(_TABLE[kind]),
            totals=sql.Identifier(table),
            key=sql.Identifier(key),
        ),
        [row_id],
    )
    return await cur.fetchone()


async def campaign_currency(conn: Conn, campaign_id: int) -> tuple[str | None, datetime] | None:
    """A campaign's currency and the time of the read; None if there is no such campaign."""
    cur = await conn.execute("select currency, now() from campaigns where id = %s", [campaign_id])
    row = await cur.fetchone()
    return None if row is None else (row[0], row[1])


async def leaderboard(
    conn: Conn, kind: Kind, campaign_id: int, currency: str, limit: int, team_id: int | None
) -> list[BoardRow]:
    """The top ``limit`` pages of a campaign by amount raised in ``currency``: every shard row
    of the campaign (``*_totals_campaign_idx``) summed per page, then the top N joined to
    their names. ``team_id`` narrows fundraisers to one team's."""
    table, key = _TOTALS[kind]
    team = sql.SQL("f.team_id") if kind == "fundraiser" else sql.SQL("null::bigint")
    # A team's own board sums only its members' rows (fundraisers_team_idx).
    narrow = sql.SQL(
        " and fundraiser_id in (select id from fundraisers where team_id = %(team)s)"
        if team_id is not None
        else ""
    )
    query = sql.SQL(
        "select f.id, f.name, f.slug, f.goal_minor as goal, {team} as team_id, s.raised,"
        " s.donations from (select {key} as id, sum(raised_minor)::bigint as raised,"
        "   sum(donations)::bigint as donations from {totals}"
        "   where campaign_id = %(campaign)s and currency = %(currency)s{narrow}"
        "   group by {key}) s join {pages} f on f.id = s.id where s.raised > 0"
        " order by s.raised desc, f.id limit %(limit)s"
    ).format(
        team=team,
        key=sql.Identifier(key),
        totals=sql.Identifier(table),
        pages=sql.Identifier(_TABLE[kind]),
        narrow=narrow,
    )
    cur = conn.cursor(row_factory=class_row(BoardRow))
    params = {"campaign": campaign_id, "currency": currency, "limit": limit, "team": team_id}
    await cur.execute(query, params)
    return await cur.fetchall()
