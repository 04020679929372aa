"""Peer-to-peer fundraising: teams and fundraisers under a campaign, their totals and the
leaderboards.

A fundraiser is a supporter's own page for a campaign (made by staff, or by the supporter
through the public sign-up), optionally in a team. A donation may name a fundraiser (its
team follows) or a team; when it succeeds, the charge's transaction adds it to the
fundraiser's and the team's sharded totals (``counting.py``), next to the campaign's.
Leaderboards and page totals are read from those rows.

Peer-to-peer needs a campaign with a currency: goals, totals and boards are in it.

Public reads (``fundraiser_by_slug``, ``team_by_slug``, ``fundraiser_totals``,
``team_totals``, ``leaderboard``) take the campaign id a page resolved from its address and
never return a supporter's address.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from psycopg.errors import UniqueViolation

from surge.campaigns import service as campaigns
from surge.campaigns.schemas import Campaign
from surge.donations import peer_store as store
from surge.donations.peer_schemas import (
    BoardKind,
    Fundraiser,
    FundraiserIn,
    FundraiserPage,
    FundraiserPatch,
    Leaderboard,
    LeaderboardEntry,
    PageTotals,
    PublicFundraiser,
    SignupIn,
    Team,
    TeamIn,
    TeamPage,
    TeamPatch,
)
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import MAX_BIGINT, check_email, check_slug, decode_cursor, next_cursor, slugify
from surge.orgs.service import free_slug

Conn = store.Conn

MAX_PAGE = 1000
#: Longest leaderboard served.
MAX_BOARD = 100
BOARDS: tuple[BoardKind, ...] = ("fundraisers", "teams")


# -- staff: teams ----------------------------------------------------------------------------


async def create_team(conn: Conn, org: int, campaign_id: int, body: TeamIn) -> Team:
    """Create a team in one of the organisation's campaigns (which needs a currency)."""
    await _p2p_campaign(conn, org, campaign_id)
    row = await _insert(conn, "team", org, campaign_id, msgspec.structs.asdict(body), body.slug)
    return msgspec.convert(row, Team, from_attributes=True)


async def update_team(conn: Conn, org: int, team_id: int, body: TeamPatch) -> Team:
    """Change a team's name, slug, goal or story; the fields not given keep their values."""
    values = _given(body)
    if not values:
        return await get_team(conn, org, team_id)
    row = await _update(conn, "team", org, team_id, values)
    return msgspec.convert(row, Team, from_attributes=True)


async def get_team(conn: Conn, org: int, team_id: int) -> Team:
    """One of the organisation's teams."""
    row = await store.get(conn, "team", org, team_id) if team_id <= MAX_BIGINT else None
    if row is None:
        raise NotFound(f"team {team_id} not found")
    return msgspec.convert(row, Team, from_attributes=True)


async def page_teams(
    conn: Conn, org: int, campaign_id: int, *, after: str | None, limit: int
) -> TeamPage:
    """A campaign's teams in creation order, one keyset page at a time."""
    await campaigns.get_campaign(conn, org, campaign_id)
    rows = await store.page(conn, "team", org, campaign_id, decode_cursor(after), limit)
    data = [msgspec.convert(r, Team, from_attributes=True) for r in rows]
    return TeamPage(data, next_cursor([r.id for r in rows], limit))


# -- staff: fundraisers ----------------------------------------------------------------------


async def create_fundraiser(
    conn: Conn, org: int, campaign_id: int, body: FundraiserIn
) -> Fundraiser:
    """Create a fundraiser's page in one of the organisation's campaigns (with a currency),
    optionally in one of its teams."""
    await _p2p_campaign(conn, org, campaign_id)
    values = msgspec.structs.asdict(body)
    if body.email is not None:
        values["email"] = check_email("email", body.email)
    if body.team_id is not None:
        await _team_of_campaign(conn, org, campaign_id, body.team_id)
    row = await _insert(conn, "fundraiser", org, campaign_id, values, body.slug)
    return msgspec.convert(row, Fundraiser, from_attributes=True)


async def update_fundraiser(
    conn: Conn, org: int, fundraiser_id: int, body: FundraiserPatch
) -> Fundraiser:
    """Change a fundraiser's page. A new team counts the gifts made from then on; gifts
    already made stay with the team they were made for."""
    values = _given(body)
    if not values:
        return await get_fundraiser(conn, org, fundraiser_id)
    if values.get("email") is not None:
        values["email"] = check_email("email", values["email"])
    if values.get("team_id") is not None:
        current = await get_fundraiser(conn, org, fundraiser_id)
        await _team_of_campaign(conn, org, current.campaign_id, values["team_id"])
    row = await _update(conn, "fundraiser", org, fundraiser_id, values)
    return msgspec.convert(row, Fundraiser, from_attributes=True)


async def get_fundraiser(conn: Conn, org: int, fundraiser_id: int) -> Fundraiser:
    """One of the organisation's fundraisers, with the supporter's address."""
    found = (
        await store.get(conn, "fundraiser", org, fundraiser_id)
        if fundraiser_id <= MAX_BIGINT
        else None
    )
    if found is None:
        raise NotFound(f"fundraiser {fundraiser_id} not found")
    return msgspec.convert(found, Fundraiser, from_attributes=True)


async def page_fundraisers(
    conn: Conn, org: int, campaign_id: int, *, after: str | None, limit: int
) -> FundraiserPage:
    """A campaign's fundraisers in creation order, one keyset page at a time."""
    await campaigns.get_campaign(conn, org, campaign_id)
    rows = await store.page(conn, "fundraiser", org, campaign_id, decode_cursor(after), limit)
    data = [msgspec.convert(r, Fundraiser, from_attributes=True) for r in rows]
    return FundraiserPage(data, next_cursor([r.id for r in rows], limit))


# -- the public sign-up ----------------------------------------------------------------------


async def sign_up(conn: Conn, org: int, campaign_id: int, body: SignupIn) -> Fundraiser:
    """A supporter makes their own fundraising page (publishable key): the campaign must be
    a published fundraising campaign with a currency that has not ended."""
    campaign = await _p2p_campaign(conn, org, campaign_id)
    if campaign.kind != "fundraising" or not campaign.page.published:
        raise NotFound(f"campaign {campaign_id} not found")
    if campaign.ends_at is not None and campaign.ends_at <= datetime.now(UTC):
        raise Conflict("this campaign has ended; its fundraising pages are closed")
    name = body.name.strip()
    if not name:
        raise Invalid("name", "name must not be blank")
    values = msgspec.structs.asdict(body) | {"name": name}
    values["email"] = check_email("email", body.email)
    if body.team_id is not None:
        await _team_of_campaign(conn, org, campaign_id, body.team_id)
    row = await _insert(conn, "fundraiser", org, campaign_id, values, body.slug)
    return msgspec.convert(row, Fundraiser, from_attributes=True)


# -- public reads (what the pages call) ------------------------------------------------------


async def fundraiser_by_slug(conn: Conn, campaign_id: int, slug: str) -> PublicFundraiser:
    """The campaign's fundraiser at ``slug`` (no address); NotFound if there is none."""
    row = await store.by_slug(conn, "fundraiser", campaign_id, slug)
    if row is None:
        raise NotFound(f"no fundraiser {slug!r} in this campaign")
    return msgspec.convert(row, PublicFundraiser, from_attributes=True)


async def team_by_slug(conn: Conn, campaign_id: int, slug: str) -> Team:
    """The campaign's team at ``slug``; NotFound if there is none."""
    row = await store.by_slug(conn, "team", campaign_id, slug)
    if row is None:
        raise NotFound(f"no team {slug!r} in this campaign")
    return msgspec.convert(row, Team, from_attributes=True)


async def public_fundraiser(conn: Conn, fundraiser_id: int) -> PublicFundraiser:
    """A fundraiser by id (no address); NotFound if there is none."""
    row = (
        await store.by_id(conn, "fundraiser", fundraiser_id)
        if fundraiser_id <= MAX_BIGINT
        else None
    )
    if row is None:
        raise NotFound(f"fundraiser {fundraiser_id} not found")
    return msgspec.convert(row, PublicFundraiser, from_attributes=True)


async def public_team(conn: Conn, team_id: int) -> Team:
    """A team by id; NotFound if there is none."""
    row = await store.by_id(conn, "team", team_id) if team_id <= MAX_BIGINT else None
    if row is None:
        raise NotFound(f"team {team_id} not found")
    return msgspec.convert(row, Team, from_attributes=True)


async def fundraiser_totals(conn: Conn, fundraiser_id: int) -> PageTotals:
    """What a fundraiser's page has raised, read now (cache it: see ``FigureCache``)."""
    return await _page_totals(conn, "fundraiser", fundraiser_id)


async def team_totals(conn: Conn, team_id: int) -> PageTotals:
    """What a team has raised: gifts made to the team and to its fundraisers."""
    return await _page_totals(conn, "team", team_id)


async def leaderboard(
    conn: Conn, campaign_id: int, kind: BoardKind, limit: int = 10, *, team_id: int | None = None
) -> Leaderboard:
    """The campaign's top ``limit`` (1-100) fundraisers or teams by amount raised, read now.
    ``team_id`` makes it a team's own board of its fundraisers."""
    if kind not in BOARDS:
        raise Invalid("kind", "kind must be one of fundraisers, teams")
    if not 1 <= limit <= MAX_BOARD:
        raise Invalid("limit", f"limit must be an integer from 1 to {MAX_BOARD}")
    head = await store.campaign_currency(conn, campaign_id) if campaign_id <= MAX_BIGINT else None
    if head is None:
        raise NotFound(f"campaign {campaign_id} not found")
    currency, as_of = head
    entries: list[LeaderboardEntry] = []
    if currency is not None:
        page_kind: store.Kind = "fundraiser" if kind == "fundraisers" else "team"
        rows = await store.leaderboard(conn, page_kind, campaign_id, currency, limit, team_id)
        entries = [
            LeaderboardEntry(
                rank=i,
                id=r.id,
                name=r.name,
                slug=r.slug,
                raised=r.raised,
                donations=r.donations,
                goal=r.goal,
                percent_of_goal=percent(r.raised, r.goal),
                team_id=r.team_id,
            )
            for i, r in enumerate(rows, start=1)
        ]
    return Leaderboard(campaign_id, kind, currency, entries, _millis(as_of))


def percent(raised: int | None, goal: int | None) -> float | None:
    """``raised`` as a percentage of ``goal``, one decimal; None without a goal."""
    if raised is None or not goal:
        return None
    return round(100 * raised / goal, 1)


# -- helpers ---------------------------------------------------------------------------------


async def _p2p_campaign(conn: Conn, org: int, campaign_id: int) -> Campaign:
    if campaign_id > MAX_BIGINT:
        raise NotFound(f"campaign {campaign_id} not found")
    campaign = await campaigns.get_campaign(conn, org, campaign_id)
    if campaign.currency is None:
        raise Conflict(
            "peer-to-peer fundraising needs a campaign with a currency; this one has none"
        )
    return campaign


async def _team_of_campaign(conn: Conn, org: int, campaign_id: int, team_id: int) -> None:
    team = await store.get(conn, "team", org, team_id) if team_id <= MAX_BIGINT else None
    if team is None or team.campaign_id != campaign_id:
        raise Invalid("team_id", f"team {team_id} is not a team of this campaign")


def _given(body: msgspec.Struct) -> dict[str, Any]:
    values = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}
    if "slug" in values:
        check_slug("slug", values["slug"])
    if "name" in values:
        values["name"] = values["name"].strip()
        if not values["name"]:
            raise Invalid("name", "name must not be blank")
    return values


async def _insert(
    conn: Conn,
    kind: store.Kind,
    org: int,
    campaign_id: int,
    values: dict[str, Any],
    slug: str | None,
) -> Any:
    what = "team" if kind == "team" else "fundraiser"
    name = values["name"] = values["name"].strip()
    if not name:
        raise Invalid("name", "name must not be blank")
    base = slugify(name, what)
    for _ in range(5):  # a generated slug taken by a concurrent insert: choose again
        values["slug"] = slug or free_slug(
            base, await store.taken_slugs(conn, kind, campaign_id, base)
        )
        try:
            async with conn.transaction():
                return await store.insert(conn, kind, org, campaign_id, values)
        except UniqueViolation:
            if slug is not None:
                raise _slug_taken(what, slug) from None
    raise Conflict("could not choose a free slug; pass one", "slug")


async def _update(
    conn: Conn, kind: store.Kind, org: int, row_id: int, values: dict[str, Any]
) -> Any:
    what = "team" if kind == "team" else "fundraiser"
    try:
        async with conn.transaction():
            row = (
                await store.update(conn, kind, org, row_id, values)
                if row_id <= MAX_BIGINT
                else None
            )
    except UniqueViolation:
        raise _slug_taken(what, str(values.get("slug"))) from None
    if row is None:
        raise NotFound(f"{what} {row_id} not found")
    return row


def _slug_taken(what: str, slug: str) -> Conflict:
    return Conflict(f"another {what} of this campaign has the slug {slug!r}", "slug")


async def _page_totals(conn: Conn, kind: store.Kind, row_id: int) -> PageTotals:
    row = await store.page_totals(conn, kind, row_id) if row_id <= MAX_BIGINT else None
    if row is None:
        raise NotFound(f"{kind} {row_id} not found")
    return PageTotals(
        id=row.id,
        campaign_id=row.campaign_id,
        currency=row.currency or "",
        goal=row.goal,
        raised=row.raised,
        donations=row.donations,
        percent_of_goal=percent(row.raised, row.goal),
        as_of=_millis(row.as_of),
    )


def _millis(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)
