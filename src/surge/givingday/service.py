"""What each giving-day page shows, loaded in one go and rendered to bytes.

A page's loader runs at most about once a second per process (``cache.PageCache``): it
reads the campaign by its address, its totals fresh from the database, and, unless the page
sheds them, the walls and leaderboards; then renders the template. Services only: the pages
ask each domain's service for its figures and never read another domain's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from psycopg_pool import AsyncConnectionPool

from surge.campaigns.schemas import PageSettings
from surge.donations import peer, recent
from surge.donations import service as donations
from surge.donations.peer_schemas import Leaderboard, PageTotals
from surge.donations.schemas import DonationIn, RecentDonors, Totals
from surge.donations.totals import TotalsCache
from surge.errors import NotFound
from surge.givingday import render, store
from surge.givingday.cache import Rendered, rendered
from surge.orgs import service as orgs

#: Decides whether a page with the given ``shed`` setting sheds its walls now.
Shedding = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Site:
    """What every page needs from the process: its pool and how it donates."""

    pool: AsyncConnectionPool
    #: A cache with no lifetime: single-flight loads of totals read now (the page cache
    #: already makes it once a second; the shared 1 s totals cache would add a second).
    fresh_totals: TotalsCache
    #: The payment gateway's name (the form asks for a test token in the sandbox).
    gateway: str


#: What the donation API takes besides amount, currency, email, name and token: the form
#: offers a choice only when the API can honour it.
FEATURES = {
    "monthly": "recurring" in DonationIn.__struct_fields__,
    "cover_fee": "cover_fee" in DonationIn.__struct_fields__,
    "public_name": "public_name" in DonationIn.__struct_fields__,
}


def not_found(message: str = "This page does not exist.") -> Rendered:
    return rendered(404, render.render("not_found.html", message=message))


def page_settings(raw: dict[str, Any]) -> PageSettings:
    """The stored page settings; keys this version does not know are ignored."""
    known = {k: v for k, v in raw.items() if k in PageSettings.__struct_fields__}
    return msgspec.convert(known, PageSettings)


async def totals(site: Site, campaign_id: int) -> Totals:
    """The campaign's totals read now (at most one query in flight per campaign)."""
    return await donations.public_totals(site.pool, site.fresh_totals, campaign_id)


def live_figures(found: Totals | PageTotals) -> dict[str, Any]:
    """What the live stream sends and the page shows: the total (a campaign's includes what
    its sponsors' matches add), the count of gifts (and of donors, for a campaign), and the
    share of the goal (of a campaign, a fundraiser or a team)."""
    share = found.percent_of_goal
    headline, matched, donors = found.raised, 0, None
    if isinstance(found, Totals):
        headline = found.total if found.total is not None else found.raised
        matched, donors = found.matched, found.donors
    return {
        "raised": headline,
        "raised_text": render.money(headline, found.currency),
        "matched_text": render.money(matched, found.currency) if matched else "",
        "donations": found.donations,
        "donors": donors,
        "percent": render.percent(headline, found.goal),
        "percent_text": "" if share is None else f"{share:g}% of the goal",
    }


@dataclass(frozen=True, slots=True)
class Page:
    """A published campaign page's campaign and settings."""

    campaign: store.PageCampaign
    settings: PageSettings


async def published(site: Site, org_slug: str, campaign_slug: str) -> Page:
    """The published campaign at this address; NotFound for unknown or unpublished ones."""
    async with site.pool.connection() as conn:
        found = await store.page_campaign(conn, org_slug, campaign_slug)
    if found is None:
        raise NotFound("no such campaign page")
    settings = page_settings(found.page)
    if not settings.published:
        raise NotFound("no such campaign page")
    return Page(found, settings)


def _urls(campaign: store.PageCampaign) -> dict[str, str]:
    base = f"/g/{campaign.organization_slug}/{campaign.slug}"
    return {
        "page": base,
        "thanks": base + "/thanks",
        "live": base + "/live",
        "donate": f"/v1/campaigns/{campaign.campaign_id}/donations",
    }


async def campaign_page(
    site: Site, org_slug: str, campaign_slug: str, shedding: Shedding
) -> Rendered:
    """The campaign page at /g/{org}/{campaign}, or the 404 page."""
    try:
        page = await published(site, org_slug, campaign_slug)
    except NotFound:
        return not_found()
    campaign, settings = page.campaign, page.settings
    shed = shedding(settings.shed)
    boards: list[Leaderboard] = []
    wall: RecentDonors | None = None
    async with site.pool.connection() as conn:
        key = await orgs.page_key(conn, campaign.organization_id)
        if settings.leaderboards and not shed:
            boards = await leaderboards(conn, campaign.campaign_id)
        if settings.recent_donors and not shed:
            wall = await recent.recent_donors(conn, campaign.campaign_id, WALL_SIZE)
    found = await totals(site, campaign.campaign_id)
    body = render.render(
        "campaign.html",
        campaign=campaign,
        settings=settings,
        story=render.markdown(campaign.story),
        totals=found,
        live=live_figures(found),
        shed=shed,
        ended=_ended(campaign),
        publishable_key=key,
        gateway=site.gateway,
        urls=_urls(campaign),
        features=FEATURES,
        boards=boards,
        wall=wall,
    )
    return rendered(200, body, campaign.campaign_id)


#: Entries per leaderboard on a page, and gifts on a wall of recent donors.
BOARD_SIZE = 10
WALL_SIZE = 12


async def leaderboards(
    conn: Any, campaign_id: int, team_id: int | None = None
) -> list[Leaderboard]:
    """The campaign's fundraiser and team boards (a team's page: its fundraisers only),
    leaving out empty ones."""
    kinds = ("fundraisers",) if team_id is not None else peer.BOARDS
    boards = [
        await peer.leaderboard(conn, campaign_id, kind, BOARD_SIZE, team_id=team_id)
        for kind in kinds
    ]
    return [board for board in boards if board.entries]


async def peer_page(
    site: Site, org_slug: str, campaign_slug: str, kind: str, slug: str, shedding: Shedding
) -> Rendered:
    """A fundraiser's (``kind`` "f") or team's ("t") page under a published campaign."""
    try:
        page = await published(site, org_slug, campaign_slug)
    except NotFound:
        return not_found()
    campaign, settings = page.campaign, page.settings
    cid = campaign.campaign_id
    shed = shedding(settings.shed)
    team = None
    boards: list[Leaderboard] = []
    wall: RecentDonors | None = None
    async with site.pool.connection() as conn:
        try:
            if kind == "f":
                target: Any = await peer.fundraiser_by_slug(conn, cid, slug)
                found = await peer.fundraiser_totals(conn, target.id)
                if target.team_id is not None:
                    team = await peer.public_team(conn, target.team_id)
                if settings.recent_donors and not shed:
                    wall = await recent.recent_donors(conn, cid, WALL_SIZE, fundraiser_id=target.id)
            else:
                target = await peer.team_by_slug(conn, cid, slug)
                found = await peer.team_totals(conn, target.id)
                if settings.leaderboards and not shed:
                    boards = await leaderboards(conn, cid, team_id=target.id)
        except NotFound:
            return not_found()
        key = await orgs.page_key(conn, campaign.organization_id)
    urls = _urls(campaign)
    urls["live"] = f"{urls['page']}/{kind}/{slug}/live"
    body = render.render(
        "peer.html",
        campaign=campaign,
        settings=settings,
        kind="fundraiser" if kind == "f" else "team",
        target=target,
        team=team,
        story=render.markdown(target.story),
        totals=found,
        live=live_figures(found),
        shed=shed,
        ended=_ended(campaign),
        publishable_key=key,
        gateway=site.gateway,
        urls=urls,
        features=FEATURES,
        boards=boards,
        wall=wall,
    )
    return rendered(200, body, cid, target.id)


async def peer_figures(site: Site, kind: str, target_id: int) -> dict[str, Any]:
    """A fundraiser's or team's live figures, read now."""
    async with site.pool.connection() as conn:
        if kind == "f":
            return live_figures(await peer.fundraiser_totals(conn, target_id))
        return live_figures(await peer.team_totals(conn, target_id))


def _ended(campaign: store.PageCampaign) -> bool:
    return campaign.ends_at is not None and campaign.ends_at <= datetime.now(UTC)


async def thanks_page(site: Site, org_slug: str, campaign_slug: str) -> Rendered:
    """The thank-you page a donor lands on after the form's donation was accepted."""
    try:
        page = await published(site, org_slug, campaign_slug)
    except NotFound:
        return not_found()
    campaign = page.campaign
    found = await totals(site, campaign.campaign_id)
    body = render.render(
        "thanks.html",
        campaign=campaign,
        settings=page.settings,
        message=render.markdown(page.settings.thank_you),
        totals=found,
        live=live_figures(found),
        urls=_urls(campaign),
    )
    return rendered(200, body, campaign.campaign_id)
