"""Sponsor matches and challenges of a campaign: staff create, list, change and remove them.

The rules of what they add are ``matching.py``; what they count is kept by ``counting.py``
in each charge's transaction; the shares are part of the campaign's public totals.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from psycopg import AsyncConnection

from surge.campaigns import service as campaigns
from surge.donations import match_store as store
from surge.donations.match_schemas import Match, MatchIn, MatchList, MatchPatch
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import MAX_BIGINT, check_time

Conn = AsyncConnection[Any]

#: Matches and challenges a campaign may have: every totals read reads them all.
MAX_PER_CAMPAIGN = 50
#: A window may start this long before now (a client's clock); it then starts now.
CLOCK_SLACK = timedelta(minutes=1)


def check_terms(body: MatchIn, now: datetime) -> dict[str, Any]:
    """The row to insert for ``body``, or Invalid naming the first field that is wrong."""
    sponsor = body.sponsor.strip()
    if not sponsor:
        raise Invalid("sponsor", "sponsor must not be blank")
    values: dict[str, Any] = {
        "sponsor": sponsor,
        "kind": body.kind,
        "cap": body.cap,
        "ratio_percent": None,
        "threshold_kind": None,
        "threshold": None,
    }
    if body.kind == "match":
        if body.threshold_kind is not None or body.threshold is not None:
            raise Invalid("threshold", "a match has no threshold; use kind 'challenge'")
        values["ratio_percent"] = body.ratio_percent or 100
    else:
        if body.ratio_percent is not None:
            raise Invalid("ratio_percent", "a challenge unlocks its cap; it has no ratio")
        if body.threshold_kind is None:
            raise Invalid("threshold_kind", "a challenge needs raised, donors or donations")
        if body.threshold is None:
            raise Invalid("threshold", "a challenge needs a threshold")
        values.update(threshold_kind=body.threshold_kind, threshold=body.threshold)
    starts_at = check_time("starts_at", body.starts_at)
    ends_at = check_time("ends_at", body.ends_at)
    if starts_at is not None or ends_at is not None:
        # Gifts already made are not re-examined: a window counts from now on.
        if starts_at is not None and starts_at < now - CLOCK_SLACK:
            raise Invalid(
                "starts_at",
                "a window cannot start in the past (gifts made are not counted again);"
                " leave the window out to count the whole campaign",
            )
        starts_at = max(starts_at or now, now)
        if ends_at is not None and ends_at <= starts_at:
            raise Invalid("ends_at", "ends_at must be after starts_at (and after now)")
    values.update(starts_at=starts_at, ends_at=ends_at)
    return values


async def create_match(conn: Conn, org: int, campaign_id: int, body: MatchIn) -> Match:
    """Add a match or challenge to one of the organisation's campaigns (with a currency)."""
    if campaign_id > MAX_BIGINT:
        raise NotFound(f"campaign {campaign_id} not found")
    values = check_terms(body, datetime.now(UTC))
    async with conn.transaction():
        campaign = await campaigns.get_campaign(conn, org, campaign_id)
        if campaign.currency is None:
            raise Conflict("matches need a campaign with a currency; this one has none")
        if await store.lock_and_count(conn, org, campaign_id) >= MAX_PER_CAMPAIGN:
            raise Conflict(f"a campaign has at most {MAX_PER_CAMPAIGN} matches and challenges")
        found = await store.insert(conn, org, campaign_id, values)
    return _match(found)


async def list_matches(conn: Conn, org: int, campaign_id: int) -> MatchList:
    """A campaign's matches and challenges, oldest first (at most ``MAX_PER_CAMPAIGN``)."""
    if campaign_id > MAX_BIGINT:
        raise NotFound(f"campaign {campaign_id} not found")
    await campaigns.get_campaign(conn, org, campaign_id)
    return MatchList([_match(r) for r in await store.of_campaign(conn, org, campaign_id)])


async def get_match(conn: Conn, org: int, match_id: int) -> Match:
    """One of the organisation's matches or challenges."""
    found = await store.get(conn, org, match_id) if match_id <= MAX_BIGINT else None
    if found is None:
        raise NotFound(f"match {match_id} not found")
    return _match(found)


async def update_match(conn: Conn, org: int, match_id: int, body: MatchPatch) -> Match:
    """Rename the sponsor or change the cap (what the match counts stays as it was)."""
    sponsor = None if body.sponsor is msgspec.UNSET else body.sponsor.strip()
    cap = None if body.cap is msgspec.UNSET else body.cap
    if sponsor == "":
        raise Invalid("sponsor", "sponsor must not be blank")
    if (sponsor is None and cap is None) or match_id > MAX_BIGINT:
        return await get_match(conn, org, match_id)
    found = await store.update(conn, org, match_id, sponsor, cap)
    if found is None:
        raise NotFound(f"match {match_id} not found")
    return _match(found)


async def delete_match(conn: Conn, org: int, match_id: int) -> None:
    """Remove a match (a sponsor withdrew): its share leaves the totals with it."""
    if match_id > MAX_BIGINT or not await store.delete(conn, org, match_id):
        raise NotFound(f"match {match_id} not found")


def _match(row: store.MatchRow) -> Match:
    return msgspec.convert(row, Match, from_attributes=True)
