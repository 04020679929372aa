"""Request and response bodies of the ingest endpoints, as msgspec structs (fast decoding).

Event properties and Segment messages are kept as ``msgspec.Raw``: their JSON bytes go to
the ``payload`` column as they came, never decoded into Python objects and encoded again.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Raw, Struct, field

from surge.errors import Invalid

T = TypeVar("T")
_PATH = re.compile(r" - at `\$\.?(.*)`$")

#: An event type: printable, no control characters (they would break text columns and logs).
EventType = Annotated[str, Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
EMAIL_PATTERN = r"^[^\x00-\x20\x7f@]+@[^\x00-\x20\x7f@]+$"
Email = Annotated[str, Meta(min_length=3, max_length=320, pattern=EMAIL_PATTERN)]
Id = Annotated[int, Meta(ge=1, le=2**63 - 1)]

#: Events in one POST /v1/events.
MAX_EVENTS_PER_REQUEST = 1000


def _empty_object() -> Raw:
    # A factory, not a Raw default: the OpenAPI generator cannot write a Raw value down.
    return Raw(b"{}")


class EventIn(Struct, forbid_unknown_fields=True):
    """One event of ``POST /v1/events``."""

    type: EventType
    occurred_at: datetime | None = None
    contact_email: Email | None = None
    contact_id: Id | None = None
    campaign_id: Id | None = None
    #: Any JSON object, stored as sent (at most 32 KiB).
    properties: Raw = field(default_factory=_empty_object)


class EventsIn(Struct, forbid_unknown_fields=True):
    """``POST /v1/events``: ``{"events": [...]}``, or the fields of one event at the top level."""

    events: Annotated[list[EventIn], Meta(max_length=MAX_EVENTS_PER_REQUEST)] | None = None
    type: EventType | None = None
    occurred_at: datetime | None = None
    contact_email: Email | None = None
    contact_id: Id | None = None
    campaign_id: Id | None = None
    properties: Raw = field(default_factory=_empty_object)


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

    Segment's spec lets clients send many more (context, integrations, messageId, anonymousId,
    sentAt…); they are tolerated, not decoded.
    """

    type: str | None = None
    event: str | None = None
    user_id: str | int | None = None
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
        raise Invalid(where or None, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise Invalid(where or None, "JSON nested too deeply") from None
