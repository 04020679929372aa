"""Request and response bodies of campaigns and messages."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from surge.fields import Amount, Id

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]


class CampaignIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    kind: Literal["fundraising", "marketing"] = "marketing"
    goal: Amount | None = None
    currency: Currency | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class Campaign(msgspec.Struct):
    id: int
    name: str
    kind: str
    goal: int | None
    currency: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=998)]
    from_email: Email
    list_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=100)]
    html: Annotated[str, msgspec.Meta(max_length=512 * 1024)] | None = None
    text: Annotated[str, msgspec.Meta(max_length=512 * 1024)] | None = None
    from_name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    reply_to: Email | None = None
    send_at: datetime | None = None
    track_opens: bool = True
    track_clicks: bool = True
    sender: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    #: Only the members of ``list_ids`` who match this segment, evaluated when sending starts.
    segment_id: Id | None = None


class Progress(msgspec.Struct):
    total: int
    queued: int
    sent: int
    failed: int
    skipped: int
    bounced: int
    #: Deliveries opened and clicked by their recipients…
    opened: int
    clicked: int
    #: …and by machines only (Apple Mail Privacy Protection, link scanners): not in the rates.
    machine_opened: int
    machine_clicked: int
    unsubscribed: int
    msg_per_s: float
    eta_seconds: float | None


class Message(msgspec.Struct):
    id: int
    campaign_id: int
    status: str
    subject: str
    from_email: str
    from_name: str | None
    reply_to: str | None
    list_ids: list[int]
    segment_id: int | None
    send_at: datetime | None
    track_opens: bool
    track_clicks: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress | None = None
