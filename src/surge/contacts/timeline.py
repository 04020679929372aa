"""A contact's timeline: what they did, what was sent to them, what they gave; newest first.

Three sources, each read by an index and bounded to its latest ``PER_SOURCE`` entries, then
merged by time (so the page shows up to 3 × ``PER_SOURCE`` entries, never a scan):

- **activity**: the ``contact_activity`` rollup (events per type and UTC day, kept by the
  segments consumer for ``ACTIVITY_DAYS``), not the events themselves. ``events`` has no
  index by contact, on purpose (intake is one COPY per flush: docs/ingest.md, "Reading
  events back"); the rollup has one, ``contact_activity_contact_idx`` (migration 0035), so
  a contact's latest days are one backward range scan. Every event of the person, one by
  one, is in their data export (``GET /v1/contacts/{id}/export``).
- **deliveries**: the organisation's latest ``MESSAGES_PROBED`` messages newest first, each
  probed by the deliveries' primary key (message_id, contact_id), stopping at the
  ``PER_SOURCE``-th found: as the contact export and a merge find them (``footprint``), but
  bounded (a probe is a few microseconds: 0.3 ms for 20 messages). Opens and clicks are
  columns of the delivery.
- **donations**: by the address the donor gave (donations name no contact), newest first,
  by ``donations_email_idx`` (migration 0035).

Why contacts reads other domains' tables: see ``footprint`` (one person's rows, read only).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from psycopg.rows import dict_row

from surge.contacts.store import Conn

PER_SOURCE = 50
#: Messages whose delivery to the contact is looked for, newest first.
MESSAGES_PROBED = 5000


async def activity(conn: Conn, org: int, contact_id: int, limit: int) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "select type, day, events from contact_activity"
        " where organization_id = %s and contact_id = %s order by day desc, type limit %s",
        [org, contact_id, limit],
    )
    return await cur.fetchall()


async def deliveries(conn: Conn, org: int, contact_id: int, limit: int) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """
        select m.id as message_id, m.campaign_id, m.subject, d.status, d.last_error, d.sent_at,
            d.opened_at, d.clicked_at, d.bounced_at, d.complained_at, m.created_at
        from (select id, campaign_id, subject, created_at from messages
              where organization_id = %(org)s order by id desc limit %(probed)s) as m
        cross join lateral (
            select * from deliveries d
            where d.message_id = m.id and d.contact_id = %(contact)s
                and d.organization_id = %(org)s
        ) as d
        order by m.id desc limit %(limit)s
        """,
        {"org": org, "contact": contact_id, "limit": limit, "probed": MESSAGES_PROBED},
    )
    return await cur.fetchall()


async def donations(conn: Conn, org: int, email: str, limit: int) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "select d.id, d.campaign_id, c.name as campaign, d.amount_minor, d.currency, d.status,"
        " d.created_at, d.succeeded_at from donations d"
        " join campaigns c on c.id = d.campaign_id"
        " where d.organization_id = %s and lower(d.email) = lower(%s)"
        " order by d.id desc limit %s",
        [org, email, limit],
    )
    return await cur.fetchall()


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


def merge(
    acts: list[dict[str, Any]], sends: list[dict[str, Any]], gifts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One list, newest first: each entry ``{"kind", "at", **row}``. A day's activity sorts
    at the start of its day (the rollup keeps no time of day)."""
    entries = [{"kind": "activity", "at": _day_start(a["day"]), **a} for a in acts]
    entries += [{"kind": "delivery", "at": s["sent_at"] or s["created_at"], **s} for s in sends]
    entries += [
        {"kind": "donation", "at": g["succeeded_at"] or g["created_at"], **g} for g in gifts
    ]
    entries.sort(key=lambda e: e["at"], reverse=True)
    return entries


async def timeline(conn: Conn, org: int, contact_id: int, email: str) -> list[dict[str, Any]]:
    """The contact's latest activity, deliveries and donations, merged, newest first."""
    acts = await activity(conn, org, contact_id, PER_SOURCE)
    sends = await deliveries(conn, org, contact_id, PER_SOURCE)
    gifts = await donations(conn, org, email, PER_SOURCE)
    return merge(acts, sends, gifts)
