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
from surge.donations import service as donations
from surge.donations.schemas import DonationIn, Totals
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


def live_figures(found: Totals) -> dict[str, Any]:
    """What the live stream sends and the page shows: total, count, share of the goal."""
    return {
        "raised": found.raised,
        "raised_text": render.money(found.raised, found.currency),
        "donations": found.donations,
        "percent": render.percent(found.raised, found.goal),
        "percent_text": _percent_text(found),
    }


def _percent_text(found: Totals) -> str:
    if found.percent_of_goal is None:
        return ""
    return f"{found.percent_of_goal:g}% of the goal"


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
    async with site.pool.connection() as conn:
        key = await orgs.page_key(conn, campaign.organization_id)
    found = await totals(site, campaign.campaign_id)
    now = datetime.now(UTC)
    body = render.render(
        "campaign.html",
        campaign=campaign,
        settings=settings,
        story=render.markdown(campaign.story),
        totals=found,
        live=live_figures(found),
        shed=shed,
        ended=campaign.ends_at is not None and campaign.ends_at <= now,
        publishable_key=key,
        gateway=site.gateway,
        urls=_urls(campaign),
        features=FEATURES,
        recent_donors=None,
        leaderboards=None,
    )
    return rendered(200, body, campaign.campaign_id)


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
