"""Ingest rules: what an event is, where it is routed, and how Segment messages map to events.

Request bodies become ``store.Row`` tuples here; the endpoint hands them to the group-commit
writer. Properties and Segment messages are stored as the JSON text the client sent, after
the checks PostgreSQL's ``jsonb`` would otherwise fail a whole COPY batch on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from surge.errors import Invalid, SurgeError
from surge.fields import check_email, valid_email
from surge.ingest import store
from surge.ingest.schemas import (
    MAX_DEPTH,
    MAX_ID_CHARS,
    TOO_DEEP,
    EventIn,
    EventsIn,
    HasEmail,
    RejectedMessage,
    SegmentBatch,
    SegmentMessage,
    decode,
    deep_key,
    join,
    key_at,
    key_name,
    nested_too_deep,
)
from surge.orgs.service import Principal

Row = store.Row

#: Largest event by default (``ingest_max_event_bytes``): the properties of an event of
#: ``/v1/events``, or a whole Segment message; Segment's own limit.
MAX_EVENT_BYTES = 32 * 1024
#: Types only Surge itself (or a secret key, i.e. a server) may send: consumers turn them into
#: donation totals and delivery stats, which a browser holding the publishable key must not.
RESERVED_PREFIXES = ("donation.", "tracking.")
SEGMENT_KINDS = ("track", "identify", "page", "screen", "group", "alias")

_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")

#: Bounds of a JSON number in event data. jsonb stores a number as ``numeric`` *expanded*:
#: ``1e5000`` becomes a 5,001-digit integer, which PostgreSQL holds but Python (the consumers,
#: any client reading the payload back) refuses to convert past 4,300 digits; ``1e-16384`` or
#: ``0e-100000`` overflow ``numeric`` and would fail the whole COPY. With at most 1,000 digits
#: and an exponent within ±1,000, the stored form has at most ~2,000 digits: within both.
MAX_NUMBER_DIGITS = 1000
MAX_NUMBER_EXPONENT = 1000
# Hot path: a cheap search that can only match where a number might break those bounds (an
# exponent of 4+ digits, or 1,001+ digits and dots in a row), strings included. Only a hit pays
# for the exact walk over the JSON tokens below, which skips strings.
_MAYBE_HUGE = re.compile(r"[eE][+-]?\d{4}|[0-9.]{" + str(MAX_NUMBER_DIGITS + 1) + "}")
_TOKEN = re.compile(
    r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|-?([0-9]+)(?:\.([0-9]+))?(?:[eE][+-]?([0-9]+))?',
    re.DOTALL,
)
#: Event times Surge accepts: from the Unix epoch to a day ahead of the receiving clock.
#: Outside it a time is a client bug (a clock at year 1, a unit mix-up), and the extremes are
#: worse than wrong: ``0001-01-01T00:00:00+14:00`` is year 0 in UTC, which PostgreSQL stores
#: but Python cannot read back, so every consumer would stop on it.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_LEEWAY = timedelta(days=1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EventTooLarge(Invalid):
    """One event over the per-event limit: a 400 naming it, though the request may be small."""

    code = "event_too_large"


def route(event_type: str) -> str:
    """The consumer family of an event type: ``donation``, ``tracking`` or ``custom``."""
    if event_type.startswith("donation."):
        return "donation"
    if event_type.startswith("tracking."):
        return "tracking"
    return "custom"


def event_rows(
    body: EventsIn, caller: Principal, now: datetime, max_event_bytes: int = MAX_EVENT_BYTES
) -> list[Row]:
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
            body.message_id,
        )
        return [_event_row(single, caller, now, "", max_event_bytes)]
    if body.type is not None:
        raise Invalid("type", "send either one event or {'events': [...]}, not both")
    return [
        _event_row(ev, caller, now, f"events[{i}].", max_event_bytes)
        for i, ev in enumerate(body.events)
    ]


def _event_row(ev: EventIn, caller: Principal, now: datetime, where: str, limit: int) -> Row:
    _check_type(ev.type, caller, where + "type")
    properties = bytes(ev.properties)
    if len(properties) > limit:
        event = f"event {where[:-1]}" if where else "the event"
        raise EventTooLarge(
            where + "properties",
            f"{event} is too large: its properties are {len(properties)} bytes, at most {limit}",
        )
    payload = _payload(properties, where + "properties")
    if not payload.lstrip().startswith("{"):
        raise Invalid(where + "properties", "properties must be a JSON object")
    email = ev.contact_email and check_email(where + "contact_email", ev.contact_email).lower()
    return (
        caller.organization_id,
        ev.type,
        ev.campaign_id,
        ev.contact_id,
        email or None,
        payload,
        _in_range(_utc(ev.occurred_at), now, where + "occurred_at") if ev.occurred_at else now,
        ev.message_id or None,
        None,
        None,
    )


def segment_rows(
    kind: str | None,
    messages: Iterable[tuple[bytes, str]],
    caller: Principal,
    now: datetime,
    max_event_bytes: int = MAX_EVENT_BYTES,
) -> list[Row]:
    """Rows of Segment messages: (raw JSON, field prefix) pairs, ``kind`` fixed by the path."""
    return [
        _segment_row(kind, raw, caller, now, where, None, max_event_bytes)
        for raw, where in messages
    ]


@dataclass(slots=True)
class Parsed:
    """What a request body gave: the rows to store, and the messages refused one by one."""

    rows: list[Row]
    rejected: list[RejectedMessage]


def segment_batch(
    body: bytes, caller: Principal, now: datetime, max_event_bytes: int = MAX_EVENT_BYTES
) -> Parsed:
    """A Segment ``/v1/batch`` body: the rows of its valid messages, the invalid ones listed.

    Only a body that is not a batch at all (malformed JSON, no ``batch`` list) is Invalid.
    """
    sent_at, messages = _batch_messages(body)
    parsed = Parsed([], [])
    for i, raw in enumerate(messages):
        where = f"batch[{i}]"
        try:
            parsed.rows.append(
                _segment_row(None, raw, caller, now, where, sent_at, max_event_bytes)
            )
        except SurgeError as exc:
            parsed.rejected.append(RejectedMessage(i, exc.code, exc.message, exc.field or where))
    return parsed


def _batch_messages(body: bytes) -> tuple[datetime | None, list[bytes]]:
    try:
        batch = decode(body, SegmentBatch)
        return batch.sent_at, [bytes(raw) for raw in batch.batch]
    except Invalid as exc:
        refusal = exc
    # msgspec refuses the whole document for one lone surrogate escape (``"\ud800"``, which
    # JavaScript and Python strings can hold and their JSON encoders write). The standard
    # library's parser accepts it: split the batch with it, so only that message is refused.
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise refusal from None
    if not isinstance(document, dict) or not isinstance(document.get("batch"), list):
        raise refusal
    head = decode(
        json.dumps({"batch": [], "sentAt": document.get("sentAt")}).encode(), SegmentBatch
    )
    return head.sent_at, [json.dumps(message).encode() for message in document["batch"]]


def _segment_row(
    kind: str | None,
    raw: bytes,
    caller: Principal,
    now: datetime,
    where: str,
    sent_at: datetime | None,
    limit: int,
) -> Row:
    if len(raw) > limit:
        message = f"message {where}" if where else "the message"
        raise EventTooLarge(
            where or None, f"{message} is too large: {len(raw)} bytes, at most {limit}"
        )
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
    user_id = _client_id(msg.user_id, dot + "userId")
    anonymous_id = _client_id(msg.anonymous_id, dot + "anonymousId")
    if kind == "alias":
        # Segment's spec: alias(previousId -> userId) needs both, or there is nothing to merge.
        if _client_id(msg.previous_id, dot + "previousId") is None:
            raise Invalid(dot + "previousId", "an alias call needs a 'previousId'")
        if user_id is None:
            raise Invalid(dot + "userId", "an alias call needs the 'userId' to merge into")
    elif kind == "group":
        if _client_id(msg.group_id, dot + "groupId") is None:
            raise Invalid(dot + "groupId", "a group call needs a 'groupId'")
        if user_id is None and anonymous_id is None:
            raise Invalid(dot + "userId", "a group call needs a 'userId' or an 'anonymousId'")
    return (
        caller.organization_id,
        event_type,
        None,
        None,
        _segment_email(msg),
        payload,
        _occurred_at(msg, sent_at, now, dot),
        _message_id(msg.message_id),
        user_id,
        anonymous_id,
    )


def _message_id(value: str | int | None) -> str | None:
    """A Segment messageId as stored, of any length (the de-duplication key bounds it)."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _client_id(value: str | int | None, field: str) -> str | None:
    """A Segment id as stored: text (integers as their digits), None when absent or empty."""
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_ID_CHARS:
        raise Invalid(field, f"an id is at most {MAX_ID_CHARS} characters")
    return text


def _occurred_at(
    msg: SegmentMessage, batch_sent_at: datetime | None, now: datetime, dot: str
) -> datetime:
    if msg.timestamp is None:
        return now
    # Segment corrects the client's clock: timestamp + (received - sentAt).
    sent_at = msg.sent_at or batch_sent_at
    stamp = _utc(msg.timestamp)
    try:
        corrected = stamp + (now - _utc(sent_at)) if sent_at else stamp
    except OverflowError:
        raise Invalid(dot + "timestamp", "timestamp and sentAt are centuries apart") from None
    return _in_range(corrected, now, dot + "timestamp")


def _in_range(stamp: datetime, now: datetime, field: str) -> datetime:
    """``stamp`` if it lies between ``EARLIEST`` and a day after ``now``, else Invalid."""
    if stamp < EARLIEST or stamp > now + FUTURE_LEEWAY:
        raise Invalid(field, "a time must lie between 1970-01-01 and a day from now")
    return stamp


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
    return email.lower() if valid_email(email) else None


def _check_type(event_type: str, caller: Principal, field: str) -> None:
    if len(event_type) > 200 or _CONTROL.search(event_type):
        raise Invalid(field, "an event type is 1 to 200 characters, without control characters")
    if caller.kind != "secret" and event_type.startswith(RESERVED_PREFIXES):
        raise Invalid(
            field, f"types starting with {' or '.join(RESERVED_PREFIXES)} are Surge's own"
        )


def _payload(raw: bytes, field: str | None) -> str:
    """The JSON text to store; refuses what jsonb would reject (and fail the whole batch on)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise Invalid(field, "not valid UTF-8") from None
    nul = _NUL_ESCAPE.search(text) if "\\u0000" in text else None
    if nul:
        where = join(field or "", key_at(text, nul.end() - 1)) or None
        raise Invalid(where, "\\u0000 is not allowed in event data")
    if _MAYBE_HUGE.search(text):
        _check_numbers(text, field)
    if nested_too_deep(text, MAX_DEPTH):
        raise Invalid(join(field or "", deep_key(text, MAX_DEPTH)) or None, TOO_DEEP)
    return text


def _check_numbers(text: str, field: str | None) -> None:
    """Refuse a JSON number token (never a string) outside the bounds above.

    ``text`` is valid JSON (msgspec decoded it), so scanning left to right, every ``"``
    outside a string opens one and the string pattern consumes it whole, escapes included:
    digits inside strings (UUIDs such as ``"1e23456"``) are never taken for numbers.
    """
    depth = 0
    key = ""  # the top-level key being read: the 400 names it
    for match in _TOKEN.finditer(text):
        whole, fraction, exponent = match.groups()
        if whole is None:
            token = match[0]
            if token in "[{":
                depth += 1
            elif token in "]}":
                depth -= 1
            elif depth == 1:
                key = token
            continue
        digits = len(whole) + (len(fraction) if fraction else 0)
        significant = (exponent or "").lstrip("0")
        # Length first: int() of a string past 4,300 digits raises by itself.
        if digits > MAX_NUMBER_DIGITS or len(significant) > 4:
            break
        if int(significant or 0) > MAX_NUMBER_EXPONENT:
            break
    else:
        return
    where = join(field or "", key_name(key) if depth >= 1 else "") or None
    raise Invalid(
        where,
        f"a number may have at most {MAX_NUMBER_DIGITS} digits and an exponent within"
        f" ±{MAX_NUMBER_EXPONENT}",
    )


def _utc(stamp: datetime) -> datetime:
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp


def now() -> datetime:
    return datetime.now(UTC)


async def counts_since(
    conn: store.Conn, organization_id: int, since: datetime
) -> list[tuple[str, datetime, int]]:
    """The organisation's events per (type, minute) from ``since`` (the live dashboard)."""
    return [
        (str(t), m, int(c)) for t, m, c in await store.counts_since(conn, organization_id, since)
    ]
