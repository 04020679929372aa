"""Request and response bodies of the ingest endpoints, as msgspec structs (fast decoding).

Event properties and Segment messages are kept as ``msgspec.Raw``: their JSON bytes go to
the ``payload`` column as they came, never decoded into Python objects and encoded again.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Raw, Struct, field

from surge.errors import Invalid
from surge.fields import Email, Id

T = TypeVar("T")
_PATH = re.compile(r" - at `\$\.?(.*)`$")
_BYTE = re.compile(r"\(byte (\d+)\)")
_COLON = re.compile(r"\s*:")
_SURROGATE = re.compile("[\ud800-\udfff]")

#: An event type: printable, no control characters (they would break text columns and logs).
EventType = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]

#: Nesting of event data. Python's parsers (msgspec here, ``json`` in psycopg and in every
#: consumer) give up near 1,000 levels, and a consumer's own stack is deeper than intake's:
#: an event nested close to that would be accepted here and unreadable there. 100 is far
#: beyond what any SDK sends.
MAX_DEPTH = 100
TOO_DEEP = f"JSON nested more than {MAX_DEPTH} levels deep"
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)

#: Events in one POST /v1/events.
MAX_EVENTS_PER_REQUEST = 1000


def _empty_object() -> Raw:
    # A factory, not a Raw default: the OpenAPI generator cannot write a Raw value down.
    return Raw(b"{}")


#: An id a client gives (a messageId, userId, anonymousId, groupId): stored and compared as
#: text, so bounded (a key of the de-duplication and profile indexes) and without NUL.
MAX_ID_CHARS = 512
ClientId = Annotated[str, Meta(max_length=MAX_ID_CHARS, pattern=r"^[^\x00]*$")]


class EventIn(Struct, forbid_unknown_fields=True):
    """One event of ``POST /v1/events``."""

    type: EventType
    occurred_at: datetime | None = None
    contact_email: Email | None = None
    contact_id: Id | None = None
    campaign_id: Id | None = None
    #: Any JSON object, stored as sent (at most ``ingest_max_event_bytes``, 32 KiB).
    properties: Raw = field(default_factory=_empty_object)
    #: Your id for the event: a resend with the same id within the de-duplication window
    #: is acknowledged again and not stored twice.
    message_id: ClientId | None = None


class EventsIn(Struct, forbid_unknown_fields=True):
    """``POST /v1/events``: ``{"events": [...]}``, or the fields of one event at the top level."""

    events: Annotated[list[EventIn], Meta(max_length=MAX_EVENTS_PER_REQUEST)] | None = None
    type: EventType | None = None
    occurred_at: datetime | None = None
    contact_email: Email | None = None
    contact_id: Id | None = None
    campaign_id: Id | None = None
    properties: Raw = field(default_factory=_empty_object)
    message_id: ClientId | None = None


class Accepted(Struct):
    """202: the events are committed."""

    accepted: int


class SegmentAccepted(Struct):
    """200, as Segment answers (some of its libraries treat any other status as failure)."""

    success: bool
    accepted: int


class RejectedMessage(Struct):
    """A message of a batch that was not stored, and why (the others were)."""

    index: int
    code: str
    message: str
    field: str | None


class SegmentBatchAccepted(Struct):
    """200 for a usable batch: its valid messages are stored, the invalid ones listed.

    A batch is not all-or-nothing (as Segment's): an SDK resending a batch because one
    message was invalid would store the valid ones twice, and dropping it would lose them.
    """

    success: bool
    accepted: int
    rejected: list[RejectedMessage]


class HasEmail(Struct):
    # Whatever clients put there: only a string that looks like an address is used.
    email: object = None


class SegmentContext(Struct):
    traits: HasEmail | None = None


class SegmentMessage(Struct, rename="camel"):
    """The fields of a Segment message Surge reads; every other field is kept in the payload.

    Segment's spec lets clients send many more (context, integrations, name, category…);
    they are tolerated, not decoded. Ids may be strings or integers (some SDKs send numeric
    user ids); anything else in them is refused, naming the field.
    """

    type: str | None = None
    event: str | None = None
    user_id: str | int | None = None
    anonymous_id: str | int | None = None
    message_id: str | int | None = None
    previous_id: str | int | None = None
    group_id: str | int | None = None
    timestamp: datetime | None = None
    sent_at: datetime | None = None
    properties: HasEmail | None = None
    traits: HasEmail | None = None
    context: SegmentContext | None = None


class SegmentBatch(Struct, rename="camel"):
    """``POST /v1/batch``: the messages, each kept raw for the payload, and the send time."""

    batch: list[Raw]
    sent_at: datetime | None = None


# What clients send, for the OpenAPI document (a generated client builds these). Decoding uses
# the narrower SegmentMessage and keeps the rest raw, so these describe more than is read:
# every field below is stored in ``payload`` as sent. Unknown fields are allowed, as Segment's.
JsonObject = dict[str, Any]
SegmentType = Literal["track", "identify", "page", "screen", "group", "alias"]


class SegmentCommon(Struct, rename="camel", kw_only=True):
    """The fields every Segment call may carry; ``userId`` or ``anonymousId`` identifies."""

    user_id: str | None = None
    anonymous_id: str | None = None
    #: Your id for the call (SDKs send a random UUID), stored as sent.
    message_id: str | None = None
    #: When the call happened on the client; corrected by ``receivedAt - sentAt``.
    timestamp: datetime | None = None
    sent_at: datetime | None = None
    context: JsonObject | None = None
    integrations: JsonObject | None = None


class SegmentTrack(SegmentCommon, kw_only=True):
    """``POST /v1/track``: the event's name becomes the stored event's type."""

    event: EventType
    properties: JsonObject | None = None


class SegmentIdentify(SegmentCommon, kw_only=True):
    """``POST /v1/identify``: ``traits.email`` becomes the event's contact email."""

    traits: JsonObject | None = None


class SegmentPage(SegmentCommon, kw_only=True):
    """``POST /v1/page`` (and ``/v1/screen``, as ``SegmentScreen``): stored as a ``page`` event."""

    name: str | None = None
    category: str | None = None
    properties: JsonObject | None = None


class SegmentScreen(SegmentPage, kw_only=True):
    """``POST /v1/screen``: a mobile app's page view, stored as a ``screen`` event."""


class SegmentGroup(SegmentCommon, kw_only=True):
    """``POST /v1/group``: the caller's user belongs to group ``groupId`` (traits: the group's)."""

    group_id: str
    traits: JsonObject | None = None


class SegmentAlias(SegmentCommon, kw_only=True):
    """``POST /v1/alias``: ``previousId`` and ``userId`` are the same person; merged."""

    previous_id: str
    user_id: str


class SegmentCall(SegmentCommon, kw_only=True):
    """One message of ``POST /v1/batch``: any call type, with that type's fields."""

    type: SegmentType
    event: str | None = None
    name: str | None = None
    category: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    properties: JsonObject | None = None
    traits: JsonObject | None = None


class SegmentBatchIn(Struct, rename="camel"):
    """``POST /v1/batch``, as documented (decoded as ``SegmentBatch``)."""

    batch: list[SegmentCall]
    sent_at: datetime | None = None


class ProfileGroup(Struct):
    """A group the profile belongs to (group calls), with the group's merged traits."""

    id: str
    traits: Raw
    joined_at: datetime


class Profile(Struct):
    """Who Segment calls are about: a userId (or an anonymousId not yet linked to one).

    ``aliases`` are the ids merged into it (alias calls, or an anonymousId that arrived with
    this userId): their events count here. ``events``, ``first_seen_at`` and
    ``last_seen_at`` cover the calls of all its ids; ``traits`` merge its identify calls'.
    ``contact_email`` names its contact; contacts themselves are not merged.
    """

    id: str
    known: bool
    contact_email: str | None
    traits: Raw
    events: int
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    updated_at: datetime
    #: At most 100, in id order.
    aliases: list[str]
    #: At most 100, in id order.
    groups: list[ProfileGroup]


def decode(data: bytes, schema: type[T], where: str = "") -> T:
    """Decode JSON ``data`` into ``schema``; errors are Invalid naming the field."""
    try:
        return msgspec.json.decode(data, type=schema)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH.search(message)
        field = (match[1] if match else "") or ""
        if where and field and not field.startswith("["):
            field = "." + field
        raise Invalid(where + field or None, _PATH.sub("", message)) from None
    except msgspec.DecodeError as exc:
        surrogate = _lone_surrogate(data)
        if surrogate is not None:
            message = "a lone surrogate escape (such as \\ud800) is not allowed: jsonb refuses it"
            raise Invalid(join(where, surrogate) or None, message) from None
        at = _BYTE.search(str(exc))
        key = key_at(data[: int(at[1])].decode("utf-8", "replace"), 1 << 62) if at else ""
        raise Invalid(join(where, key) or None, f"malformed JSON: {exc}") from None
    except RecursionError:
        key = deep_key(data.decode("utf-8", "replace"), MAX_DEPTH)
        raise Invalid(join(where, key) or None, TOO_DEEP) from None


def _lone_surrogate(data: bytes) -> str | None:
    """The path of a string holding a lone surrogate, if that is why msgspec refused ``data``.

    RFC 8259 lets JSON escape a lone surrogate and JavaScript and Python encoders write one;
    msgspec (and jsonb) refuse it. Only on that error path, the standard library's parser
    (which accepts it) finds where it is, so the 400 can name the field.
    """
    try:
        # Numbers as text: int() would refuse one past 4,300 digits, hiding the surrogate.
        document = json.loads(data, parse_int=str, parse_float=str)
    except (ValueError, RecursionError):
        return None
    return string_path(document, _SURROGATE)


def string_path(value: object, pattern: re.Pattern[str]) -> str | None:
    """The path of the first string (key or value) in ``value`` that ``pattern`` matches."""
    stack = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if pattern.search(item):
                return where
        elif isinstance(item, dict):
            for key, inner in reversed(item.items()):
                # A key may hold the surrogate itself: escaped, or the error could not be encoded.
                printable = key.encode("utf-8", "backslashreplace").decode()
                name = f"{where}.{printable}" if where else printable
                if pattern.search(key):
                    return name
                stack.append((inner, name))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}[{i}]") for i, inner in reversed(list(enumerate(item))))
    return None


def join(where: str, key: str) -> str:
    """A field path: ``where`` and then ``key`` (``batch[1]`` + ``properties``)."""
    if not where or not key:
        return where or key
    return where + ("" if key.startswith("[") else ".") + key


def deep_key(text: str, limit: int) -> str:
    """The top-level key under which JSON ``text`` nests past ``limit`` ('' if none or at top).

    Strings are skipped whole (escaped quotes included), so brackets inside them do not count.
    """
    depth = 0
    key = ""
    for match in _STRUCTURE.finditer(text):
        token = match[0]
        if token[0] == '"':
            if depth == 1:
                key = token
        elif token in "[{":
            depth += 1
            if depth > limit:
                try:
                    return str(json.loads(key)).encode("utf-8", "backslashreplace").decode()
                except ValueError:
                    return ""
        else:
            depth -= 1
    return ""


def nested_too_deep(text: str, limit: int) -> bool:
    """Whether JSON ``text`` nests past ``limit``: a count first, the walk only if it may."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match[0]
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


def key_at(text: str, pos: int) -> str:
    """The top-level key of JSON ``text`` whose key or value holds offset ``pos`` (or '')."""
    depth = 0
    key = ""
    for match in _STRUCTURE.finditer(text):
        token = match[0]
        if match.end() > pos:
            # ``pos`` is in this token (or between tokens): a top-level key names itself.
            is_key = depth == 1 and token[0] == '"' and match.start() <= pos
            is_key = bool(is_key and _COLON.match(text, match.end()))
            return key_name(token if is_key else key) if depth >= 1 else ""
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
        elif depth == 1:
            key = token
    return key_name(key) if depth >= 1 else ""


def key_name(token: str) -> str:
    """A JSON string token as a field name, re-escaped: keys may hold NUL or lone surrogates."""
    try:
        name = json.dumps(str(json.loads(token)), ensure_ascii=False)[1:-1]
    except ValueError:
        return ""
    return name.encode("utf-8", "backslashreplace").decode()
