"""Campaigns and messages: creation rules, scheduling and the message state machine.

A message is created ``scheduled`` (to go at ``send_at``, or now) and its tier-1 ``plan``
job is enqueued in the same transaction with ``run_at = send_at``: the job engine is the
scheduler. ``plan`` moves it to ``sending``; staff may ``pause``, ``resume`` or ``cancel``;
the finaliser marks it ``sent``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import msgspec
from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation

from surge.campaigns import sends, store
from surge.campaigns.schemas import (
    Campaign,
    CampaignIn,
    CampaignPage,
    CampaignPatch,
    Delivery,
    DeliveryPage,
    Message,
    MessageIn,
    MessagePage,
    PageSettings,
    Progress,
)
from surge.contacts import service as contacts
from surge.dispatch import service as dispatch
from surge.dispatch import templates
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import (
    check_choice,
    check_email,
    check_slug,
    check_time,
    decode_cursor,
    encode_cursor,
    next_cursor,
    slugify,
)
from surge.orgs.service import free_slug
from surge.segments import service as segments

Conn = AsyncConnection[Any]

#: Staff actions on a message; dispatch owns the state machine behind them.
ACTIONS = tuple(dispatch.TRANSITIONS)


async def create_campaign(conn: Conn, org: int, body: CampaignIn) -> Campaign:
    """Create a campaign; a goal needs a currency."""
    if body.goal is not None and body.currency is None:
        raise Invalid("currency", "a campaign with a goal needs a currency")
    starts_at = check_time("starts_at", body.starts_at)
    ends_at = check_time("ends_at", body.ends_at)
    if starts_at and ends_at and ends_at <= starts_at:
        raise Invalid("ends_at", "ends_at must be after starts_at")
    values = msgspec.structs.asdict(body)
    values.update(starts_at=starts_at, ends_at=ends_at)
    values["page"] = msgspec.to_builtins(body.page or PageSettings())
    base = slugify(body.name, "campaign")
    for _ in range(5):  # a generated slug taken by a concurrent insert: choose again
        values["slug"] = body.slug or free_slug(base, await store.taken_slugs(conn, org, base))
        try:
            async with conn.transaction():
                row = await store.insert_campaign(conn, org, values)
        except UniqueViolation:
            if body.slug is not None:
                raise _slug_taken(body.slug) from None
            continue
        return campaign_of(row)
    raise Conflict("could not choose a free slug; pass one", "slug")


def _slug_taken(slug: str) -> Conflict:
    return Conflict(f"another campaign of this organisation has the slug {slug!r}", "slug")


def campaign_of(row: dict[str, Any]) -> Campaign:
    """A campaign row as the API answers it."""
    return msgspec.convert(row, Campaign)


async def update_page(conn: Conn, org: int, campaign_id: int, body: CampaignPatch) -> Campaign:
    """Change the campaign page's address, story or settings; settings not given are kept."""
    values: dict[str, Any] = {}
    if body.slug is not msgspec.UNSET:
        values["slug"] = check_slug("slug", body.slug)
    if body.story is not msgspec.UNSET:
        values["story"] = body.story
    try:
        async with conn.transaction():
            current = await get_campaign(conn, org, campaign_id)
            if body.page is not msgspec.UNSET:
                given = {
                    k: v
                    for k, v in msgspec.structs.asdict(body.page).items()
                    if v is not msgspec.UNSET
                }
                merged = msgspec.to_builtins(current.page) | given
                page = msgspec.convert(merged, PageSettings)
                values["page"] = msgspec.to_builtins(page)
            row = await store.update_page(conn, org, campaign_id, values)
    except UniqueViolation:
        raise _slug_taken(str(values.get("slug"))) from None
    if row is None:  # deleted meanwhile
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign_of(row)


async def update_campaign(conn: Conn, org: int, campaign_id: int, body: CampaignIn) -> Campaign:
    """Change a campaign's name, kind, goal, currency and dates (``body``'s page fields are
    ``update_page``'s business). The rules of ``create_campaign`` hold, and a currency,
    once set, stays: the campaign's totals and its donation form are kept in it."""
    if body.goal is not None and body.currency is None:
        raise Invalid("currency", "a campaign with a goal needs a currency")
    starts_at = check_time("starts_at", body.starts_at)
    ends_at = check_time("ends_at", body.ends_at)
    if starts_at and ends_at and ends_at <= starts_at:
        raise Invalid("ends_at", "ends_at must be after starts_at")
    async with conn.transaction():
        current = await get_campaign(conn, org, campaign_id)
        if current.currency is not None and body.currency != current.currency:
            raise Invalid(
                "currency",
                f"the campaign's currency is {current.currency} and cannot change;"
                " create another campaign for another currency",
            )
        values = {
            "name": body.name,
            "kind": body.kind,
            "goal": body.goal,
            "currency": body.currency,
            "starts_at": starts_at,
            "ends_at": ends_at,
        }
        row = await store.update_campaign(conn, org, campaign_id, values)
    if row is None:  # deleted meanwhile
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign_of(row)


async def get_campaign(conn: Conn, org: int, campaign_id: int) -> Campaign:
    row = await store.get_campaign(conn, org, campaign_id)
    if row is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign_of(row)


async def create_message(
    conn: Conn, org: int, campaign_id: int, body: MessageIn, senders: frozenset[str]
) -> Message:
    """Check the templates, sender and audience, store the message and schedule its dispatch.

    ``senders`` are the configured sender names; a message may name one of them.
    """
    subject = sends.check_subject(body)
    check_content(sends.content(body, subject), senders)
    send_at = check_time("send_at", body.send_at)
    async with conn.transaction():
        await get_campaign(conn, org, campaign_id)
        for index, list_id in enumerate(body.list_ids):
            try:
                await contacts.get_list(conn, org, list_id)
            except NotFound:
                raise Invalid(f"list_ids[{index}]", f"list {list_id} not found") from None
        if body.segment_id is not None:
            try:
                await segments.get(conn, org, body.segment_id)
            except NotFound:
                raise Invalid("segment_id", f"segment {body.segment_id} not found") from None
        values = msgspec.structs.asdict(body)
        values.update(campaign_id=campaign_id, status="scheduled", send_at=send_at)
        values.update(subject=subject, **await sends.sends_values(conn, body))
        values["list_ids"] = sorted(set(body.list_ids))
        row = await store.insert_message(conn, org, values)
        await dispatch.schedule(conn, org, row["id"], send_at)
    return sends.message_of(row)


class Content(Protocol):
    """What a message is made of: a message body, or a journey's send step."""

    subject: str
    html: str | None
    text: str | None
    from_email: str
    reply_to: str | None
    sender: str | None


def check_content(body: Content, senders: frozenset[str], prefix: str = "") -> None:
    """Templates, addresses and sender of a message; Invalid names ``prefix`` + the field."""
    if body.sender is not None and body.sender not in senders:
        known = ", ".join(sorted(senders))
        raise Invalid(prefix + "sender", f"no sender named {body.sender!r}; configured: {known}")
    if body.html is None and body.text is None:
        raise Invalid(prefix + "html", "a message needs an html or a text body")
    for field in ("subject", "html", "text"):
        source = getattr(body, field)
        try:
            if source is not None:
                templates.check(field, source)  # the field picks the escaping
        except Invalid as exc:
            raise Invalid(prefix + field, exc.message) from None
    check_email(prefix + "from_email", body.from_email)
    if body.reply_to is not None:
        check_email(prefix + "reply_to", body.reply_to)


async def create_open_message(
    conn: Conn, org: int, campaign_id: int, values: dict[str, Any]
) -> int:
    """A message of the campaign with no audience of its own, open-ended and sending: a
    journey appends recipients to it (``dispatch.service.append``). ``values`` are checked
    already (``check_content``): subject, html, text, from_email, from_name, reply_to,
    sender, track_opens, track_clicks. NotFound if the campaign is gone."""
    await get_campaign(conn, org, campaign_id)
    values = values | {
        "campaign_id": campaign_id,
        "status": "draft",
        "send_at": None,
        "list_ids": [],
        "segment_id": None,
    }
    row = await store.insert_message(conn, org, values)
    await dispatch.open_message(conn, row["id"])
    return int(row["id"])


CAMPAIGN_KINDS = ("fundraising", "marketing")
MESSAGE_STATUSES = ("draft", "scheduled", "sending", "paused", "sent", "cancelled")
DELIVERY_STATUSES = ("queued", "sent", "failed", "skipped", "cancelled")


async def page_campaigns(
    conn: Conn,
    org: int,
    *,
    after: str | None,
    limit: int,
    kind: str | None = None,
    newest_first: bool = False,
) -> CampaignPage:
    """A keyset page of campaigns, oldest first (the API) or newest first (the console)."""
    check_choice("kind", kind, CAMPAIGN_KINDS)
    rows = await store.page_campaigns(
        conn, org, decode_cursor(after), limit, kind, newest_first=newest_first
    )
    data = [campaign_of(row) for row in rows]
    return CampaignPage(data, next_cursor([c.id for c in data], limit))


async def page_messages(
    conn: Conn,
    org: int,
    *,
    after: str | None,
    limit: int,
    campaign_id: int | None = None,
    status: str | None = None,
    newest_first: bool = False,
) -> MessagePage:
    """A keyset page of messages, oldest first (the API) or newest first (the console)."""
    check_choice("status", status, MESSAGE_STATUSES)
    rows = await store.page_messages(
        conn, org, decode_cursor(after), limit, campaign_id, status, newest_first=newest_first
    )
    data = [sends.message_of(row, []) for row in rows]
    return MessagePage(data, next_cursor([m.id for m in data], limit))


async def page_deliveries(
    conn: Conn,
    org: int,
    message_id: int,
    *,
    after: str | None,
    limit: int,
    status: str | None = None,
) -> DeliveryPage:
    """A message's recipients and what happened to each, in contact id order.

    With ``status`` a page looks at ``STATUS_SCAN`` deliveries at most: it may come back
    short, or empty, with a ``next`` cursor past the deliveries it looked at; following
    ``next`` until it is null still finds every match."""
    check_choice("status", status, DELIVERY_STATUSES)
    if await store.get_message(conn, org, message_id) is None:
        raise NotFound(f"message {message_id} not found")
    rows, scanned_to = await store.page_deliveries(
        conn, message_id, decode_cursor(after), limit, status, STATUS_SCAN
    )
    data = [msgspec.convert(row, Delivery) for row in rows]
    if scanned_to is not None:
        return DeliveryPage(data, encode_cursor(scanned_to))
    return DeliveryPage(data, next_cursor([d.contact_id for d in data], limit))


#: Deliveries a page filtered by status reads at most (a few milliseconds).
STATUS_SCAN = 10_000


async def get_message(conn: Conn, org: int, message_id: int) -> Message:
    """The message with its progress, read from the rollup row (never count(*))."""
    row = await store.get_message(conn, org, message_id)
    if row is None:
        raise NotFound(f"message {message_id} not found")
    variants = []
    if row["ab_test_stored"] is not None:
        variants = await store.message_variants(conn, message_id)
    message = sends.message_of(row, variants)
    stats = await store.message_stats(conn, message_id)
    if stats is not None:
        message.progress = progress(stats, row["status"], await _wait(conn, row))
    return message


@dataclass(frozen=True, slots=True)
class Wait:
    """A planned pause in a message's sending: an A/B test's remainder waiting for the
    winner, or recipients waiting for their send window to open."""

    #: When sending resumes.
    next_at: datetime | None
    #: When the last waiting recipients may start, and how many they are (None: all of
    #: those still queued).
    last_at: datetime | None
    last_recipients: int | None = None


async def _wait(conn: Conn, row: dict[str, Any]) -> Wait | None:
    if row["status"] != "sending":
        return None  # a paused message resumes when staff say, not at a time
    if row["ab_test_stored"] is not None and row["ab_winner"] is None:
        return Wait(row["ab_decides_at"], row["ab_decides_at"])
    if row["send_window_stored"] is not None:
        schedule = await dispatch.window_schedule(conn, row["id"])
        return Wait(schedule.next_at, schedule.last_at, schedule.last_recipients)
    return None


def progress(stats: store.MessageStats, status: str, wait: Wait | None = None) -> Progress:
    """Progress figures from a message_stats row; rate and ETA from the send window.

    With a ``wait`` the rate is over the time spent sending (first to last send), not
    diluted by the wait, and the ETA is the wait plus the time to send those left then.
    """
    done = stats.sent + stats.failed + stats.skipped
    queued = max(stats.total - done, 0)
    rate = 0.0
    first, last = stats.first_sent_at, stats.last_sent_at
    if first is not None and last is not None and stats.sent > 1:
        end = stats.now if status == "sending" and wait is None else last
        window = max((end - first).total_seconds(), 1e-3)
        rate = round(stats.sent / window, 1)
    eta = round(queued / rate, 1) if rate > 0 and status == "sending" else None
    until = 0.0
    if wait is not None and wait.last_at is not None:
        until = max((wait.last_at - stats.now).total_seconds(), 0.0)
    if status == "sending" and until > 0:
        left = queued if wait is None or wait.last_recipients is None else wait.last_recipients
        eta = round(until + left / rate, 1) if rate > 0 else None
    return Progress(
        total=stats.total,
        queued=queued,
        sent=stats.sent,
        failed=stats.failed,
        skipped=stats.skipped,
        bounced=stats.bounced,
        opened=stats.opened,
        clicked=stats.clicked,
        machine_opened=stats.machine_opened,
        machine_clicked=stats.machine_clicked,
        unsubscribed=stats.unsubscribed,
        msg_per_s=rate,
        eta_seconds=eta,
        next_send_at=wait.next_at if wait is not None else None,
    )


async def change_status(conn: Conn, org: int, message_id: int, action: str) -> Message:
    """Pause, resume or cancel a message. Takes effect at the next chunk boundary."""
    async with conn.transaction():
        await dispatch.act(conn, org, message_id, action)
    return await get_message(conn, org, message_id)
