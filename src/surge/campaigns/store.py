"""SQL for campaigns and messages. Every query filters by organization_id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row, dict_row
from psycopg.types.json import Jsonb

from surge.fields import MAX_BIGINT, like_escape

CAMPAIGN_COLUMNS = (
    "id, name, kind, goal_minor as goal, currency, starts_at, ends_at, created_at,"
    " slug, story, page"
)
MESSAGE_COLUMNS = (
    "id, campaign_id, status, subject, from_email, from_name, reply_to, list_ids, segment_id,"
    " send_at,"
    " track_opens, track_clicks, created_at, started_at, finished_at,"
    # Sends (campaigns/sends.py builds the response's ab_test and send_window from these).
    " resend_of, send_to_new_of, ab_test as ab_test_stored, ab_winner, ab_decides_at,"
    " ab_decided_at, send_window as send_window_stored"
)
#: What a resend or a send to new members copies of the original.
COPIED_COLUMNS = "html, text_body as text, sender"


#: The sends columns of a new message, unless ``values`` gives them (ab_test and
#: send_window as Jsonb).
SENDS_DEFAULTS: dict[str, Any] = {
    "ab_test": None,
    "send_window": None,
    "resend_of": None,
    "send_to_new_of": None,
}


@dataclass(frozen=True, slots=True)
class VariantStats:
    """An A/B variant's rollup row (kept by dispatch and tracking)."""

    variant: int
    recipients: int
    sent: int
    opened: int
    clicked: int


@dataclass(frozen=True, slots=True)
class MessageStats:
    """A message's rollup row (kept by dispatch and tracking), read with the time now."""

    total: int
    sent: int
    failed: int
    skipped: int
    bounced: int
    opened: int
    clicked: int
    machine_opened: int
    machine_clicked: int
    unsubscribed: int
    first_sent_at: datetime | None
    last_sent_at: datetime | None
    now: datetime


async def insert_campaign(
    conn: AsyncConnection[Any], organization_id: int, values: dict[str, Any]
) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "insert into campaigns (organization_id, name, kind, goal_minor, currency, starts_at,"
        " ends_at, slug, story, page) values (%(org)s, %(name)s, %(kind)s, %(goal)s,"
        " %(currency)s, %(starts_at)s, %(ends_at)s, %(slug)s, %(story)s, %(page)s)"
        f" returning {CAMPAIGN_COLUMNS}",
        {"org": organization_id, **values, "page": Jsonb(values.get("page") or {})},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get_campaign(
    conn: AsyncConnection[Any], organization_id: int, campaign_id: int
) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {CAMPAIGN_COLUMNS} from campaigns where organization_id = %s and id = %s",
        [organization_id, campaign_id],
    )
    return await cur.fetchone()


async def taken_slugs(conn: AsyncConnection[Any], organization_id: int, base: str) -> set[str]:
    """The organisation's campaign slugs that are ``base`` or ``base-…`` (campaigns_slug_idx)."""
    cur = await conn.execute(
        "select slug from campaigns where organization_id = %s and (slug = %s or slug like %s)",
        [organization_id, base, like_escape(base) + "-%"],
    )
    return {row[0] for row in await cur.fetchall()}


async def update_page(
    conn: AsyncConnection[Any], organization_id: int, campaign_id: int, values: dict[str, Any]
) -> dict[str, Any] | None:
    """Set the campaign's slug, story and page settings (each key of ``values`` present)."""
    sets = [f"{name} = %({name})s" for name in ("slug", "story", "page") if name in values]
    params = {"org": organization_id, "id": campaign_id, **values}
    if "page" in params:
        params["page"] = Jsonb(params["page"])
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"update campaigns set {', '.join(sets) or 'name = name'}"
        f" where organization_id = %(org)s and id = %(id)s returning {CAMPAIGN_COLUMNS}",
        params,
    )
    return await cur.fetchone()


async def page_campaigns(
    conn: AsyncConnection[Any],
    organization_id: int,
    after: int,
    limit: int,
    kind: str | None,
    *,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """A keyset page along campaigns_organization_idx: ids above ``after``, or (newest
    first) below it, 0 meaning from the newest."""
    order = (
        " and id < %(before)s order by id desc"
        if newest_first
        else " and id > %(after)s order by id"
    )
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {CAMPAIGN_COLUMNS} from campaigns where organization_id = %(org)s"
        " and (%(kind)s::text is null or kind = %(kind)s)" + order + " limit %(limit)s",
        {
            "org": organization_id,
            "after": after,
            "before": after or MAX_BIGINT,
            "kind": kind,
            "limit": limit,
        },
    )
    return await cur.fetchall()


async def update_campaign(
    conn: AsyncConnection[Any], organization_id: int, campaign_id: int, values: dict[str, Any]
) -> dict[str, Any] | None:
    """Set the campaign's name, kind, goal, currency and dates."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "update campaigns set name = %(name)s, kind = %(kind)s, goal_minor = %(goal)s,"
        " currency = %(currency)s, starts_at = %(starts_at)s, ends_at = %(ends_at)s"
        f" where organization_id = %(org)s and id = %(id)s returning {CAMPAIGN_COLUMNS}",
        {"org": organization_id, "id": campaign_id, **values},
    )
    return await cur.fetchone()


async def page_messages(
    conn: AsyncConnection[Any],
    organization_id: int,
    after: int,
    limit: int,
    campaign_id: int | None,
    status: str | None,
    *,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """A keyset page of messages; with a campaign, along messages_campaign_idx. Newest
    first: ids below ``after`` (0: from the newest)."""
    order = (
        " and id < %(before)s order by id desc"
        if newest_first
        else " and id > %(after)s order by id"
    )
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {MESSAGE_COLUMNS} from messages where organization_id = %(org)s"
        " and (%(campaign)s::bigint is null or campaign_id = %(campaign)s)"
        " and (%(status)s::text is null or status = %(status)s)" + order + " limit %(limit)s",
        {
            "org": organization_id,
            "after": after,
            "before": after or MAX_BIGINT,
            "campaign": campaign_id,
            "status": status,
            "limit": limit,
        },
    )
    return await cur.fetchall()


async def page_deliveries(
    conn: AsyncConnection[Any],
    message_id: int,
    after: int,
    limit: int,
    status: str | None,
    scan: int | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """A keyset page of a message's deliveries by contact id (the primary key's order),
    with each contact's address. With ``status`` and ``scan``, the matches among the next
    ``scan`` deliveries only, and the contact id that scan ended at if it read all ``scan``
    (None: it reached the message's last delivery): a rare status on a million recipients
    costs one bounded scan a page, not a walk through all of them."""
    cur = conn.cursor(row_factory=dict_row)
    params = {"message": message_id, "after": after, "status": status, "limit": limit}
    if status is None or scan is None:
        await cur.execute(
            f"select {_DELIVERY_COLUMNS} from deliveries d {_DELIVERY_CONTACT}"
            " where d.message_id = %(message)s and d.contact_id > %(after)s"
            " and (%(status)s::text is null or d.status = %(status)s)"
            " order by d.contact_id limit %(limit)s",
            params,
        )
        return await cur.fetchall(), None
    await cur.execute(
        "with scanned as materialized ("
        "  select * from deliveries where message_id = %(message)s and contact_id > %(after)s"
        "  order by contact_id limit %(scan)s"
        f") select {_DELIVERY_COLUMNS} from scanned d {_DELIVERY_CONTACT}"
        " where d.status = %(status)s order by d.contact_id limit %(limit)s",
        {**params, "scan": scan},
    )
    rows = await cur.fetchall()
    if len(rows) == limit:
        return rows, None  # a full page: its last row is the cursor
    ended = await conn.execute(
        "select count(*), max(contact_id) from (select contact_id from deliveries"
        " where message_id = %s and contact_id > %s order by contact_id limit %s) s",
        [message_id, after, scan],
    )
    found = await ended.fetchone()
    assert found is not None  # an aggregate always answers
    return rows, (int(found[1]) if int(found[0]) == scan else None)


_DELIVERY_COLUMNS = (
    "d.contact_id, c.email, d.status, d.attempts, d.last_error, d.sent_at, d.opened_at,"
    " d.clicked_at"
)
_DELIVERY_CONTACT = (
    "left join contacts c on c.organization_id = d.organization_id and c.id = d.contact_id"
)


async def insert_message(
    conn: AsyncConnection[Any], organization_id: int, values: dict[str, Any]
) -> dict[str, Any]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "insert into messages (organization_id, campaign_id, subject, html, text_body,"
        " from_email, from_name, reply_to, list_ids, segment_id, sender, track_opens,"
        " track_clicks, send_at, status, ab_test, send_window, resend_of, send_to_new_of)"
        " values (%(org)s, %(campaign_id)s, %(subject)s,"
        " %(html)s, %(text)s, %(from_email)s, %(from_name)s, %(reply_to)s, %(list_ids)s,"
        " %(segment_id)s, %(sender)s,"
        " %(track_opens)s, %(track_clicks)s, %(send_at)s, %(status)s,"
        " %(ab_test)s, %(send_window)s, %(resend_of)s, %(send_to_new_of)s)"
        f" returning {MESSAGE_COLUMNS}",
        {"org": organization_id, **SENDS_DEFAULTS, **values},
    )
    row = await cur.fetchone()
    assert row is not None
    await conn.execute(
        "insert into message_stats (message_id, organization_id) values (%s, %s)",
        [row["id"], organization_id],
    )
    return row


async def get_message(
    conn: AsyncConnection[Any], organization_id: int, message_id: int
) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {MESSAGE_COLUMNS} from messages where organization_id = %s and id = %s",
        [organization_id, message_id],
    )
    return await cur.fetchone()


async def message_stats(conn: AsyncConnection[Any], message_id: int) -> MessageStats | None:
    cur = conn.cursor(row_factory=class_row(MessageStats))
    await cur.execute(
        "select total, sent, failed, skipped, bounced, opened, clicked, machine_opened,"
        " machine_clicked, unsubscribed,"
        " first_sent_at, last_sent_at, now() as now from message_stats where message_id = %s",
        [message_id],
    )
    return await cur.fetchone()


async def message_variants(conn: AsyncConnection[Any], message_id: int) -> list[VariantStats]:
    cur = conn.cursor(row_factory=class_row(VariantStats))
    await cur.execute(
        "select variant, recipients, sent, opened, clicked from message_variants"
        " where message_id = %s order by variant",
        [message_id],
    )
    return await cur.fetchall()


async def lock_original(
    conn: AsyncConnection[Any], organization_id: int, message_id: int
) -> dict[str, Any] | None:
    """A message to resend or send to new members: its row (locked, so that two resends
    of it cannot both pass the "no live resend" check) and the columns a copy takes."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {MESSAGE_COLUMNS}, {COPIED_COLUMNS} from messages"
        " where organization_id = %s and id = %s for no key update",
        [organization_id, message_id],
    )
    return await cur.fetchone()


async def live_resend(
    conn: AsyncConnection[Any], organization_id: int, message_id: int
) -> int | None:
    """A resend of the message that is not cancelled, if there is one."""
    cur = await conn.execute(
        "select id from messages where organization_id = %s and resend_of = %s"
        " and status <> 'cancelled' order by id limit 1",
        [organization_id, message_id],
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])
