"""The wall of recent donors: a campaign's (or a fundraiser's) latest gifts, for its page.

A donor's name is shown only when they ticked "show my name" (``public_name``) and gave
one; every other gift is on the wall as anonymous, with its amount, so that the wall shows
the day's momentum without exposing anyone. Read from an index backwards from now
(``donations_recent_idx``, ``donations_fundraiser_recent_idx``), never a scan; cache it.
"""

from __future__ import annotations

from surge.donations import peer_store, store
from surge.donations.schemas import RecentDonor, RecentDonors
from surge.errors import Invalid, NotFound
from surge.fields import MAX_BIGINT

Conn = store.Conn

#: Longest wall served.
MAX_WALL = 100


async def recent_donors(
    conn: Conn, campaign_id: int, limit: int = 20, *, fundraiser_id: int | None = None
) -> RecentDonors:
    """The campaign's latest ``limit`` (1-100) succeeded gifts, newest first, names only
    where the donor agreed; ``fundraiser_id`` narrows them to that fundraiser's page.
    NotFound for a campaign that does not exist."""
    if not 1 <= limit <= MAX_WALL:
        raise Invalid("limit", f"limit must be an integer from 1 to {MAX_WALL}")
    head = (
        await peer_store.campaign_currency(conn, campaign_id) if campaign_id <= MAX_BIGINT else None
    )
    if head is None:
        raise NotFound(f"campaign {campaign_id} not found")
    rows = await store.recent_donations(conn, campaign_id, limit, fundraiser_id)
    donors = [
        RecentDonor(
            name=r.name if r.public_name and r.name else None,
            amount=r.amount,
            currency=r.currency,
            at=r.succeeded_at,
            fundraiser_id=r.fundraiser_id,
            team_id=r.team_id,
        )
        for r in rows
    ]
    return RecentDonors(campaign_id, fundraiser_id, donors, head[1])
