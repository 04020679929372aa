"""Ingest rules: what an event is, where it is routed, and how Segment messages map to events.

Request bodies become ``store.Row`` tuples here; the endpoint hands them to the group-commit
writer. Properties and Segment messages are stored as the JSON text the client sent, after
the checks PostgreSQL's ``jsonb`` would otherwise fail a whole COPY batch on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from surge.api.errors import PayloadTooLarge
from surge.errors import Invalid
from surge.ingest import store
from surge.ingest.schemas import (
    EMAIL_PATTERN,
    EventIn,
    EventsIn,
    HasEmail,
    SegmentBatch,
    SegmentMessage,
    decode,
)
from surge.orgs.service import Principal

Row = store.Row

#: Largest event (properties, or a whole Segment message), as Segment's own limit.
MAX_EVENT_BYTES = 32 * 1024
#: Types only Surge itself (or a secret key, i.e. a server) may send: consumers turn them into
#: donation totals and delivery stats, which a browser holding the publishable key must not.
RESERVED_PREFIXES = ("donation.", "tracking.")
SEGMENT_KINDS = ("track", "identify", "page", "screen", "group", "alias")

_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# Numbers jsonb's numeric cannot hold (exponent past ±16383 digits, or that many decimals):
# refused with a wide margin, since one of them would fail every request of a COPY batch.
_HUGE_NUMBER = re.compile(r"\d[eE][+-]?\d{5,}|\.\d{10000}")
_EMAIL = re.compile(EMAIL_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def route(event_type: str) -> str:
    """The consumer family of an event type: ``donation``, ``tracking`` or ``custom``."""
    if event_type.startswith("donation."):
        return "donation"
    if event_type.startswith("tracking."):
        return "tracking"
    return "custom"


def event_rows(body: EventsIn, caller: Principal, now: datetime) -> list[Row]:
    """The rows of a ``POST /v1/events`` body: one event, or ``{"events": [...]}``."""
    if body.events is None:
        if body.type is None:
            raise Invalid("type", "send one event with a 'type', or {'events': [...]}")
        single = EventIn(
            body.type,
            body.occurred_at,
            body.contact_email,
            body.contact_id,
            body.campaign_id,
            body.properties,
        )
        return [_event_row(single, caller, now, "")]
    if body.type is not None:
        raise Invalid("type", "send either one event or {'events': [...]}, not both")
    return [_event_row(ev, caller, now, f"events[{i}].") for i, ev in enumerate(body.events)]


def _event_row(ev: EventIn, caller: Principal, now: datetime, where: str) -> Row:
    _check_type(ev.type, caller, where + "type")
    payload = _payload(bytes(ev.properties), where + "properties")
    if not payload.lstrip().startswith("{"):
        raise Invalid(where + "properties", "properties must be a JSON object")
    return (
        caller.organization_id,
        ev.type,
        ev.campaign_id,
        ev.contact_id,
        ev.contact_email.lower() if ev.contact_email else None,
        payload,
        _utc(ev.occurred_at) if ev.occurred_at else now,
    )


def segment_rows(
    kind: str | None, messages: Iterable[tuple[bytes, str]], caller: Principal, now: datetime
) -> list[Row]:
    """Rows of Segment messages: (raw JSON, field prefix) pairs, ``kind`` fixed by the path."""
    return [_segment_row(kind, raw, caller, now, where, None) for raw, where in messages]


def segment_batch_rows(body: bytes, caller: Principal, now: datetime) -> list[Row]:
    """Rows of a Segment ``/v1/batch`` body; each message keeps its own type."""
    batch = decode(body, SegmentBatch)
    return [
        _segment_row(None, bytes(raw), caller, now, f"batch[{i}]", batch.sent_at)
        for i, raw in enumerate(batch.batch)
    ]


def _segment_row(
    kind: str | None,
    raw: bytes,
    caller: Principal,
    now: datetime,
    where: str,
    sent_at: datetime | None,
) -> Row:
    if len(raw) > MAX_EVENT_BYTES:
        raise PayloadTooLarge(f"a message may be at most {MAX_EVENT_BYTES} bytes", where or None)
    msg = decode(raw, SegmentMessage, where)
    dot = where + "." if where else ""
    kind = kind or msg.type
    if kind not in SEGMENT_KINDS:
        raise Invalid(dot + "type", f"type must be one of {', '.join(SEGMENT_KINDS)}")
    event_type = kind
    if kind == "track":
        if not msg.event:
            raise Invalid(dot + "event", "a track call needs an 'event' name")
        event_type = msg.event
        _check_type(event_type, caller, dot + "event")
    payload = _payload(raw, where or None)
    if not payload.lstrip().startswith("{"):
        raise Invalid(where or None, "a message must be a JSON object")
    return (
        caller.organization_id,
        event_type,
        None,
        None,
        _segment_email(msg),
        payload,
        _occurred_at(msg, sent_at, now, dot),
    )


def _occurred_at(
    msg: SegmentMessage, batch_sent_at: datetime | None, now: datetime, dot: str
) -> datetime:
    if msg.timestamp is None:
        return now
    # Segment corrects the client's clock: timestamp + (received - sentAt).
    sent_at = msg.sent_at or batch_sent_at
    stamp = _utc(msg.timestamp)
    try:
        return stamp + (now - _utc(sent_at)) if sent_at else stamp
    except OverflowError:
        raise Invalid(dot + "timestamp", "timestamp and sentAt are centuries apart") from None


def _segment_email(msg: SegmentMessage) -> str | None:
    for holder in (msg.traits, msg.context.traits if msg.context else None, msg.properties):
        email = _email_of(holder)
        if email:
            return email
    return None


def _email_of(holder: HasEmail | None) -> str | None:
    if holder is None or not isinstance(holder.email, str):
        return None
    email = holder.email.strip()
    return email.lower() if len(email) <= 320 and _EMAIL.match(email) else None


def _check_type(event_type: str, caller: Principal, field: str) -> None:
    if len(event_type) > 200 or _CONTROL.search(event_type):
        raise Invalid(field, "an event type is 1 to 200 characters, without control characters")
    if caller.kind != "secret" and event_type.startswith(RESERVED_PREFIXES):
        raise Invalid(
            field, f"types starting with {' or '.join(RESERVED_PREFIXES)} are Surge's own"
        )


def _payload(raw: bytes, field: str | None) -> str:
    """The JSON text to store; refuses what jsonb would reject (and fail the whole batch on)."""
    if len(raw) > MAX_EVENT_BYTES:
        raise PayloadTooLarge(f"an event may be at most {MAX_EVENT_BYTES} bytes", field)
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise Invalid(field, "not valid UTF-8") from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise Invalid(field, "\\u0000 is not allowed in event data")
    if _HUGE_NUMBER.search(text):
        raise Invalid(field, "a number in the event data is too large or too precise")
    return text


def _utc(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp


def now() -> datetime:
    return datetime.now(UTC)


async def record_events(conn: store.Conn, rows: list[Row]) -> None:
    """Store events produced by Surge itself (donations, tracking), in the caller's transaction.

    Consumers see them once that transaction commits, exactly like events from the API.
    """
    if rows:
        await store.copy_events(conn, rows)


async def counts_since(
    conn: store.Conn, organization_id: int, since: datetime
) -> list[tuple[str, datetime, int]]:
    """The organisation's events per (type, minute) from ``since`` (the live dashboard)."""
    return [
        (str(t), m, int(c)) for t, m, c in await store.counts_since(conn, organization_id, since)
    ]
