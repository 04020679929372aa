"""Donations as staff watch them: the day minute by minute, and the newest first.

Both are bounded, indexed reads, whatever a giving day has put in the table:

- ``minutes`` sums the donations that succeeded in a time range, per minute and currency,
  along ``donations_succeeded_idx`` (organization_id, succeeded_at, id). Callers fold
  settled minutes into a running day (``console/donation_figures.py``) so that each second
  reads only the last few seconds' donations.
- ``newest`` is a keyset page of an organisation's donations, newest first, along
  ``donations_organization_idx`` (organization_id, id). With a filter (status, campaign) it
  looks at no more than ``SCAN`` donations per page: a rare status on a table of ten million
  costs what a common one does, and the next page goes on from where this one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import class_row

from surge.donations import store
from surge.donations.schemas import Donation
from surge.errors import Invalid
from surge.fields import MAX_BIGINT, check_choice, decode_cursor, encode_cursor

Conn = AsyncConnection[Any]

STATUSES = ("pending", "succeeded", "failed", "refunded")
#: Donations one filtered page looks at, at most.
SCAN = 5000
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class MinuteSum:
    """Donations that succeeded in one minute, in one currency (gross: refunds later are
    not taken off)."""

    minute: datetime
    currency: str
    donations: int
    amount: int


# donations_succeeded_idx: one range of the organisation's succeeded donations.
MINUTES = """
select date_trunc('minute', succeeded_at) as minute, currency, count(*)::int as donations,
    coalesce(sum(amount_minor), 0)::bigint as amount
from donations
where organization_id = %(org)s and succeeded_at >= %(since)s and succeeded_at < %(until)s
group by 1, 2
order by 1, 2
"""

# donations_organization_idx: where a filtered page stops looking (the SCAN-th donation).
FLOOR = """
select id from donations
where organization_id = %(org)s and id < %(before)s
order by id desc
offset %(scan)s - 1 limit 1
"""

# donations_organization_idx, backwards from ``before`` down to ``floor``.
NEWEST = f"""
select {store.DONATION_COLUMNS} from donations
where organization_id = %(org)s and id < %(before)s and id >= %(floor)s
  and (%(campaign)s::bigint is null or campaign_id = %(campaign)s)
  and (%(status)s::text is null or status = %(status)s)
order by id desc
limit %(limit)s
"""


async def minutes(conn: Conn, org: int, since: datetime, until: datetime) -> list[MinuteSum]:
    """Per minute and currency, the donations that succeeded from ``since`` to ``until``."""
    cur = conn.cursor(row_factory=class_row(MinuteSum))
    await cur.execute(MINUTES, {"org": org, "since": since, "until": until})
    return await cur.fetchall()


@dataclass(frozen=True, slots=True)
class NewestPage:
    """A page of donations, newest first. ``next`` continues below this page; with a filter
    it may be set while ``data`` is short (this page looked at ``SCAN`` donations)."""

    data: list[Donation]
    next: str | None
    #: The page stopped looking before it was full (a filter matched few donations).
    partial: bool = False


async def newest(
    conn: Conn,
    org: int,
    *,
    before: str | None,
    limit: int,
    campaign_id: int | None = None,
    status: str | None = None,
) -> NewestPage:
    """The organisation's donations below cursor ``before`` (none: from the newest)."""
    check_choice("status", status, STATUSES)
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("limit", f"limit must be between 1 and {MAX_PAGE}")
    top = decode_cursor(before, "before") or MAX_BIGINT
    floor = 0
    filtered = campaign_id is not None or status is not None
    if filtered:
        cur = await conn.execute(FLOOR, {"org": org, "before": top, "scan": SCAN})
        row = await cur.fetchone()
        floor = int(row[0]) if row else 0
    params = {
        "org": org,
        "before": top,
        "floor": floor,
        "campaign": campaign_id,
        "status": status,
        "limit": limit,
    }
    rows_cur = conn.cursor(row_factory=class_row(store.DonationRow))
    await rows_cur.execute(NEWEST, params)
    rows = await rows_cur.fetchall()
    data = [msgspec.convert(r, Donation, from_attributes=True) for r in rows]
    if len(rows) == limit:
        return NewestPage(data, encode_cursor(rows[-1].id))
    if floor > 0:  # looked at SCAN donations; older ones remain below the floor
        return NewestPage(data, encode_cursor(floor), partial=True)
    return NewestPage(data, None)
