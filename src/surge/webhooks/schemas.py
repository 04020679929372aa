"""Request and response bodies of the webhook endpoints API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
#: An event type (``donation.succeeded``) or ``*`` for every type.
EventTypeFilter = Annotated[str, msgspec.Meta(pattern=r"^(\*|[a-z]+(\.[a-z_]+)+)$", max_length=100)]
EventTypes = Annotated[list[EventTypeFilter], msgspec.Meta(min_length=1, max_length=50)]
Description = Annotated[str, msgspec.Meta(max_length=500)]


class EndpointIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Url
    event_types: EventTypes
    description: Description | None = None


class EndpointPatch(msgspec.Struct, forbid_unknown_fields=True):
    url: Url | msgspec.UnsetType = msgspec.UNSET
    event_types: EventTypes | msgspec.UnsetType = msgspec.UNSET
    description: Description | None | msgspec.UnsetType = msgspec.UNSET
    #: true re-enables the endpoint and clears its failure streak.
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class Endpoint(msgspec.Struct):
    id: int
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    #: Why the endpoint is disabled (by the API, or automatically for failing); null if enabled.
    disabled_reason: str | None
    #: First failed attempt since the last success; null when the last attempt succeeded.
    failing_since: datetime | None
    consecutive_failures: int
    created_at: datetime
    updated_at: datetime


class EndpointCreated(Endpoint):
    #: The signing secret, ``whsec_`` + base64; shown only in this response.
    secret: str


class EndpointList(msgspec.Struct):
    data: list[Endpoint]


class Delivery(msgspec.Struct):
    id: int
    #: The ``webhook-id`` header of every attempt: receivers deduplicate on it.
    event_id: str
    event_type: str
    #: pending | delivered | failed | cancelled (the endpoint was disabled first)
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DeliveryPage(msgspec.Struct):
    #: Newest first.
    data: list[Delivery]
    #: Cursor of the next (older) page, to pass as ``after``; null on the last page.
    next: str | None
