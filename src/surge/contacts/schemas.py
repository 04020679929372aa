"""Request and response shapes of the contacts API (msgspec: strict, fast, typed)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from surge.fields import Id

MAX_BATCH = 1000

Status = Literal["subscribed", "unsubscribed", "bounced", "complained"]
Name = Annotated[str, msgspec.Meta(max_length=200)]


class ContactIn(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    first_name: Name | None = None
    last_name: Name | None = None
    status: Status | None = None
    attributes: dict[str, Any] | None = None


class ContactBatch(msgspec.Struct, forbid_unknown_fields=True):
    # Bounds are checked by the service so that the 400 names "contacts" with a clear reason.
    contacts: list[ContactIn]


class Written(msgspec.Struct):
    id: int
    email: str
    #: Whether this request created the contact (false: it existed and was updated).
    created: bool


class UpsertResult(msgspec.Struct):
    created: int
    updated: int
    #: contacts[i] is the contact written for the request's contacts[i]; duplicates share one.
    contacts: list[Written]


class Contact(msgspec.Struct):
    id: int
    email: str
    first_name: str | None
    last_name: str | None
    status: str
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class Page(msgspec.Struct):
    data: list[Contact]
    #: Cursor of the next page (pass as ``after``); null on the last page.
    next: str | None


class ListIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    #: Members added later stay pending until they confirm by mail (from ``confirm_from``).
    double_opt_in: bool = False
    confirm_from: str | None = None


class ContactList(msgspec.Struct):
    id: int
    name: str
    created_at: datetime
    double_opt_in: bool = False
    confirm_from: str | None = None


class MembersIn(msgspec.Struct, forbid_unknown_fields=True):
    contact_ids: list[Id] = []
    emails: list[str] = []


class NotFoundMembers(msgspec.Struct):
    contact_ids: list[int]
    emails: list[str]


class MembersResult(msgspec.Struct, kw_only=True):
    #: Contacts that became members with this call.
    added: int
    #: Contacts that were found (of this organisation), members now, whether new or not.
    found: int
    not_found: NotFoundMembers
    #: Of the added, those waiting to confirm (double opt-in lists): each gets a mail.
    pending: int = 0


class RowError(msgspec.Struct):
    row: int
    reason: str


class Import(msgspec.Struct):
    id: int
    status: str
    list_id: int | None
    filename: str | None
    bytes_total: int
    rows_total: int | None
    rows_processed: int
    rows_imported: int
    rows_failed: int
    errors: list[RowError]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


STATUSES = frozenset(("subscribed", "unsubscribed", "bounced", "complained"))
MAX_NAME = 200
