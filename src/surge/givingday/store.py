"""SQL of the giving-day pages: finding a page's campaign by its address. Read-only.

The organisations and campaigns tables belong to their domains; the pages only read the
columns a page shows, in one round trip per render (at most once a second per page).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row


@dataclass(frozen=True, slots=True)
class PageCampaign:
    """A campaign as its page shows it, with its organisation."""

    organization_id: int
    organization_name: str
    organization_slug: str
    campaign_id: int
    name: str
    slug: str
    goal: int | None
    currency: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    story: str | None
    page: dict[str, Any]


async def page_campaign(
    conn: AsyncConnection[Any], org_slug: str, campaign_slug: str
) -> PageCampaign | None:
    """The campaign at /g/{org_slug}/{campaign_slug}, published or not
    (organizations_slug_idx, then campaigns_slug_idx)."""
    cur = conn.cursor(row_factory=class_row(PageCampaign))
    await cur.execute(
        "select o.id as organization_id, o.name as organization_name,"
        " o.slug as organization_slug, c.id as campaign_id, c.name, c.slug,"
        " c.goal_minor as goal, c.currency, c.starts_at, c.ends_at, c.story, c.page"
        " from organizations o join campaigns c on c.organization_id = o.id"
        " where o.slug = %s and c.slug = %s",
        [org_slug, campaign_slug],
    )
    return await cur.fetchone()
