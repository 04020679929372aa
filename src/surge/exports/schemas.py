"""Request and response bodies of the exports API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from surge.fields import Id

Kind = Literal["contacts", "deliveries", "donations", "events"]
KINDS: tuple[Kind, ...] = ("contacts", "deliveries", "donations", "events")
STATUSES = ("queued", "running", "completed", "failed", "expired")
MAX_PAGE = 100
#: Contact attributes exported as columns of their own (``attribute_columns``).
MAX_ATTRIBUTE_COLUMNS = 50
AttributeName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ExportIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What to export: a kind and the filters that apply to it (the service checks which)."""

    kind: Kind
    #: contacts: members of this list; contacts matching this saved segment.
    list_id: Id | None = None
    segment_id: Id | None = None
    #: contacts, deliveries, donations: only this status.
    status: str | None = None
    #: deliveries: of this message, or of every message of a campaign.
    message_id: Id | None = None
    #: deliveries, donations, events: of this campaign.
    campaign_id: Id | None = None
    #: events: only this type.
    type: EventType | None = None
    #: donations (created_at) and events (received_at): since <= t < until.
    since: datetime | None = None
    until: datetime | None = None
    #: contacts: these attributes as columns of their own, after the fixed ones.
    attribute_columns: list[AttributeName] | None = None
    #: Prefix text cells that a spreadsheet would run as a formula with ' (default on).
    spreadsheet_safe: bool = True


class Filters(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """The checked filters of an export, as stored and shown (only those given)."""

    list_id: int | None = None
    segment_id: int | None = None
    status: str | None = None
    message_id: int | None = None
    campaign_id: int | None = None
    type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    attribute_columns: list[str] | None = None


class Export(msgspec.Struct, kw_only=True):
    id: int
    kind: str
    #: queued | running | completed | failed | expired (the file was deleted).
    status: str
    filters: dict[str, Any]
    spreadsheet_safe: bool
    #: Rows the export holds, counted when it starts (null before).
    rows_total: int | None
    rows_written: int
    #: 0 to 1 while running; 1 once completed.
    progress: float | None
    #: Bytes of the CSV file, and of its gzip-compressed form (what is stored).
    size_bytes: int
    compressed_bytes: int
    error: str | None
    #: A link that downloads the file without an API key (a browser can follow it), valid
    #: until ``download_url_expires_at``; ask for the export again for a fresh one.
    download_url: str | None
    download_url_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: When the file is deleted (completed exports only).
    expires_at: datetime | None


class ExportPage(msgspec.Struct):
    data: list[Export]
    #: Cursor of the next (older) page, passed as ``after``; null on the last page.
    next: str | None
