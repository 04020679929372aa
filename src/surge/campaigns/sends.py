"""Sends beyond one message to its lists: A/B subject tests, recipient-timezone send
windows, resends to non-openers and sends to new members (docs/dispatch.md, "Sends").

The rules here are checked when a message is created; dispatch plans and sends what they
describe. A resend and a send to new members are new messages of the original's campaign,
with its content and audience lists, narrowed when they are planned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from surge.campaigns import store
from surge.campaigns.schemas import (
    AbTest,
    AbVariant,
    Message,
    MessageIn,
    ResendIn,
    SendToNewIn,
    SendWindow,
    SendWindowIn,
)
from surge.dispatch import service as dispatch
from surge.dispatch import templates
from surge.dispatch.windows import parse_clock
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import check_time

Conn = AsyncConnection[Any]


@dataclass(slots=True)
class MessageContent:
    """A new message's content as ``service.check_content`` checks it."""

    subject: str
    html: str | None
    text: str | None
    from_email: str
    reply_to: str | None
    sender: str | None


def content(body: MessageIn, subject: str) -> MessageContent:
    return MessageContent(
        subject, body.html, body.text, body.from_email, body.reply_to, body.sender
    )


def check_subject(body: MessageIn) -> str:
    """The subject a new message is stored with: ``subject``, or the first of an A/B
    test's (the winner's replaces it once picked). Invalid names the field at fault."""
    ab = body.ab_test
    if ab is None:
        if body.subject is None:
            raise Invalid("subject", "a message needs a subject (or ab_test.subjects)")
        return body.subject
    if body.subject is not None:
        raise Invalid("subject", "an A/B test's subjects are in ab_test.subjects; omit subject")
    if body.send_window is not None:
        raise Invalid(
            "send_window",
            "an A/B test cannot be combined with a send window: the test's winner must be"
            " judged on one wait for everyone",
        )
    if body.html is None:
        raise Invalid(
            "ab_test",
            "an A/B test needs an html body: opens and clicks are tracked in the HTML part",
        )
    if ab.metric == "opens" and not body.track_opens:
        raise Invalid("ab_test.metric", "a test judged on opens needs track_opens")
    if ab.metric == "clicks" and not body.track_clicks:
        raise Invalid("ab_test.metric", "a test judged on clicks needs track_clicks")
    first: dict[str, int] = {}
    for index, subject in enumerate(ab.subjects):
        field = f"ab_test.subjects[{index}]"
        try:
            templates.check("subject", subject)
        except Invalid as exc:
            raise Invalid(field, exc.message) from None
        if subject in first:
            raise Invalid(field, f"the same subject as ab_test.subjects[{first[subject]}]")
        first[subject] = index
    return ab.subjects[0]


async def stored_window(conn: Conn, window: SendWindowIn) -> dict[str, Any]:
    """The send window as stored, its default zone spelled as PostgreSQL knows it."""
    start = parse_clock("send_window.start", window.start)
    end = parse_clock("send_window.end", window.end)
    if start == end:
        raise Invalid("send_window.end", "the window is empty: end must differ from start")
    zone = await dispatch.known_timezone(conn, window.default_timezone)
    if zone is None:
        raise Invalid(
            "send_window.default_timezone",
            f"{window.default_timezone!r} is not a time zone (an IANA name: Europe/Paris, UTC)",
        )
    return {
        "start": window.start,
        "end": window.end,
        "timezone_attribute": window.timezone_attribute,
        "default_timezone": zone,
    }


async def sends_values(conn: Conn, body: MessageIn) -> dict[str, Any]:
    """The new message's ab_test and send_window columns (checked by ``check_subject``)."""
    values: dict[str, Any] = {}
    if body.ab_test is not None:
        values["ab_test"] = Jsonb(msgspec.to_builtins(body.ab_test))
    if body.send_window is not None:
        values["send_window"] = Jsonb(await stored_window(conn, body.send_window))
    return values


def message_of(row: dict[str, Any], variants: Sequence[store.VariantStats] = ()) -> Message:
    """The response of a message row (``store.MESSAGE_COLUMNS``), without its progress."""
    message = msgspec.convert(row, Message)
    ab = row.get("ab_test_stored")
    if ab is not None:
        subjects = [str(s) for s in ab["subjects"]]
        message.ab_test = AbTest(
            subjects=subjects,
            test_percent=int(ab["test_percent"]),
            metric=str(ab["metric"]),
            wait_minutes=int(ab["wait_minutes"]),
            decides_at=row["ab_decides_at"],
            decided_at=row["ab_decided_at"],
            winner=row["ab_winner"],
            variants=_variants(subjects, variants),
        )
    window = row.get("send_window_stored")
    if window is not None:
        message.send_window = msgspec.convert(window, SendWindow)
    return message


def _variants(subjects: list[str], rows: Sequence[store.VariantStats]) -> list[AbVariant]:
    by_variant = {r.variant: r for r in rows}
    out = []
    for index, subject in enumerate(subjects):
        r = by_variant.get(index) or store.VariantStats(index, 0, 0, 0, 0)
        out.append(
            AbVariant(
                variant=index,
                subject=subject,
                recipients=r.recipients,
                sent=r.sent,
                opened=r.opened,
                clicked=r.clicked,
                open_rate=round(r.opened / r.sent, 4) if r.sent else 0.0,
                click_rate=round(r.clicked / r.sent, 4) if r.sent else 0.0,
            )
        )
    return out


def _copy(original: dict[str, Any]) -> dict[str, Any]:
    """A follow-up's columns: the original's content, audience and send window."""
    window = original["send_window_stored"]
    return {
        key: original[key]
        for key in (
            "campaign_id",
            "html",
            "text",
            "from_email",
            "from_name",
            "reply_to",
            "list_ids",
            "segment_id",
            "sender",
            "track_opens",
            "track_clicks",
        )
    } | {"status": "scheduled", "send_window": Jsonb(window) if window is not None else None}


async def _original(conn: Conn, org: int, message_id: int) -> dict[str, Any]:
    original = await store.lock_original(conn, org, message_id)
    if original is None:
        raise NotFound(f"message {message_id} not found")
    if not original["list_ids"]:
        raise Conflict(f"message {message_id} has no audience lists (a journey's message)")
    return original


async def resend(conn: Conn, org: int, message_id: int, body: ResendIn) -> Message:
    """A new message of the original's campaign, with ``body.subject``, to the people it
    was sent to who have not opened or clicked it (planned at ``send_at``, from the
    original's lists and segment as they are then). Conflict unless the original has
    finished sending, tracked opens, and has no other resend that is not cancelled."""
    templates.check("subject", body.subject)
    send_at = check_time("send_at", body.send_at)
    async with conn.transaction():
        original = await _original(conn, org, message_id)
        if original["status"] != "sent":
            raise Conflict(
                f"message {message_id} is {original['status']}: only a message that has"
                " finished sending can be resent to its non-openers"
            )
        if not original["track_opens"]:
            raise Conflict(
                f"message {message_id} did not track opens: who did not open it is unknown"
            )
        live = await store.live_resend(conn, org, message_id)
        if live is not None:
            raise Conflict(
                f"message {message_id} is resent already, as message {live}; cancel that first"
            )
        values = _copy(original) | {
            "subject": body.subject,
            "send_at": send_at,
            "resend_of": message_id,
        }
        row = await store.insert_message(conn, org, values)
        await dispatch.schedule(conn, org, row["id"], send_at)
    return message_of(row)


async def send_to_new(conn: Conn, org: int, message_id: int, body: SendToNewIn) -> Message:
    """A new message of the original's campaign, with its content (an A/B test's winning
    subject), to the members of its lists (and segment) who, when it is planned, have no
    delivery of the original nor of its other sends to new members: people who joined
    since. Conflict if the original has not started sending, is a resend, or its A/B test
    has no winner yet."""
    send_at = check_time("send_at", body.send_at)
    async with conn.transaction():
        original = await _original(conn, org, message_id)
        if original["resend_of"] is not None:
            raise Conflict(
                f"message {message_id} is a resend to non-openers; send to new members from"
                f" message {original['resend_of']}"
            )
        root = original["send_to_new_of"]
        if root is None and original["started_at"] is None:
            raise Conflict(
                f"message {message_id} is {original['status']} and has not started sending:"
                " it has reached nobody yet"
            )
        if original["ab_test_stored"] is not None and original["ab_winner"] is None:
            raise Conflict(
                f"message {message_id}'s A/B test has no winner yet; send to new members once"
                " it has one (ab_test.decides_at)"
            )
        values = _copy(original) | {
            "subject": original["subject"],
            "send_at": send_at,
            "send_to_new_of": root or message_id,
        }
        row = await store.insert_message(conn, org, values)
        await dispatch.schedule(conn, org, row["id"], send_at)
    return message_of(row)
