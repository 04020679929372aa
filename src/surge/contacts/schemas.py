"""Request and response shapes of the contacts API (msgspec: strict, fast, typed)."""

from __future__ import annotations

from datetime import date, datetime
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
    #: Consent was collected again: an explicit "subscribed" is applied to contacts who
    #: unsubscribed, bounced or complained, and deleted, merged or erased addresses may be
    #: created again. Off by default (strict).
    resubscribe: bool = False


class Written(msgspec.Struct):
    id: int
    email: str
    #: Whether this request created the contact (false: it existed and was updated).
    created: bool


class UpsertResult(msgspec.Struct, omit_defaults=True):
    created: int
    updated: int
    #: contacts[i] is the contact written for the request's contacts[i]; duplicates share one.
    contacts: list[Written]
    #: Positions in the request whose "subscribed" was not applied: the contact had
    #: unsubscribed, bounced or complained (send ``resubscribe``). Left out when empty.
    status_kept: list[int] = []


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
    #: Consent was collected again: members who left the list (preference centre) rejoin
    #: it. Without it they are found but stay out.
    resubscribe: bool = False


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
    #: Whether the import was told that consent was collected again (``resubscribe=true``).
    resubscribe: bool = False
    #: Imported rows whose "subscribed" was not applied to a contact who had unsubscribed,
    #: bounced or complained (strict mode); their other fields were.
    rows_status_kept: int = 0
    #: Bytes of the file parsed so far (of ``bytes_total``): how far a running import got.
    bytes_processed: int = 0


# -- the contact's lifecycle ----------------------------------------------------------------


class ContactPatch(msgspec.Struct, forbid_unknown_fields=True):
    """A partial update: fields left out are kept; ``null`` clears a name."""

    email: str | msgspec.UnsetType = msgspec.UNSET
    first_name: Name | None | msgspec.UnsetType = msgspec.UNSET
    last_name: Name | None | msgspec.UnsetType = msgspec.UNSET
    #: Any status may become unsubscribed, bounced or complained; becoming subscribed again
    #: needs ``resubscribe``.
    status: Status | msgspec.UnsetType = msgspec.UNSET
    #: Merged key by key into the stored attributes; a key set to null is removed.
    attributes: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    #: Consent was collected again: allows "subscribed" on an unsubscribed, bounced or
    #: complained contact.
    resubscribe: bool = False


class MergeIn(msgspec.Struct, forbid_unknown_fields=True):
    #: The contact merged into this one, then removed.
    from_: Id = msgspec.field(name="from")


class Moved(msgspec.Struct):
    #: Lists the merged contact was on and this one was not.
    lists: int
    #: Deliveries moved over, and those dropped because this contact had one for the same
    #: message already (their opens and clicks are kept on this contact's).
    deliveries: int
    deliveries_dropped: int
    events: int
    donations: int
    #: Journey enrolments moved over (one the kept contact already had stays instead).
    journeys: int
    #: Segment profiles that named the merged contact's address.
    profiles: int


class MergeResult(msgspec.Struct):
    contact: Contact
    merged_from: int
    moved: Moved


class Membership(msgspec.Struct):
    list_id: int
    name: str
    #: subscribed | unsubscribed (left this list) | pending (double opt-in, unconfirmed)
    status: str
    added_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


class MembershipPage(msgspec.Struct):
    data: list[Membership]
    #: Cursor of the next page (pass as ``after``); null on the last page.
    next: str | None


class PreferencesLink(msgspec.Struct):
    #: The contact's own preference centre: signed, needs no key, never expires.
    url: str


# -- data protection (export and erasure) ---------------------------------------------------


class DeliveryRecord(msgspec.Struct):
    message_id: int
    campaign_id: int
    subject: str
    status: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    bounced_at: datetime | None
    complained_at: datetime | None


class EventRecord(msgspec.Struct):
    id: int
    type: str
    campaign_id: int | None
    contact_email: str | None
    payload: Any
    occurred_at: datetime
    received_at: datetime


class DonationRecord(msgspec.Struct):
    id: int
    campaign_id: int
    status: str
    amount: int
    currency: str
    email: str
    name: str | None
    metadata: dict[str, Any]
    gateway_reference: str | None
    created_at: datetime
    succeeded_at: datetime | None
    failed_at: datetime | None


class ActivityRecord(msgspec.Struct):
    """Events of one type on one day (the rollup segments read)."""

    type: str
    day: date
    events: int


class LastActivityRecord(msgspec.Struct):
    """The last day the person did something of this type."""

    type: str
    last_day: date


class ProfileRecord(msgspec.Struct):
    """A Segment identity (userId or anonymousId) whose calls carried the address."""

    id: str
    known: bool
    traits: dict[str, Any]
    events: int
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    #: Other ids merged into it (alias calls, anonymous ids linked to the user).
    aliases: list[str]
    groups: list[str]


class EnrolmentRecord(msgspec.Struct):
    journey_id: int
    journey_name: str
    step: int
    state: str
    entries: int
    entered_at: datetime
    updated_at: datetime
    exit_reason: str | None


class SuppressionRecord(msgspec.Struct):
    email: str
    reason: str
    detail: str | None
    created_at: datetime


class SoftBounceRecord(msgspec.Struct):
    email: str
    bounces: int
    first_at: datetime
    last_at: datetime


class PersonalData(msgspec.Struct):
    """Everything Surge holds on one person (GET /v1/contacts/{id}/export)."""

    exported_at: datetime
    contact: Contact
    lists: list[Membership]
    deliveries: list[DeliveryRecord]
    events: list[EventRecord]
    activity: list[ActivityRecord]
    last_activity: list[LastActivityRecord]
    profiles: list[ProfileRecord]
    journeys: list[EnrolmentRecord]
    donations: list[DonationRecord]
    suppressions: list[SuppressionRecord]
    soft_bounces: list[SoftBounceRecord]


class Erased(msgspec.Struct):
    lists: int
    deliveries: int
    events: int
    #: Rows of the activity rollups (per day, and the last day per type).
    activity: int
    #: Segment profiles (userId / anonymousId) that named the address, with their aliases.
    profiles: int
    journeys: int
    #: Donations kept for the accounts, with the donor's address, name and metadata removed.
    donations: int
    suppressions: int
    #: Outgoing webhook payloads (``event.received``, ``journey.step``) that carried the
    #: person's data.
    webhook_events: int


class Erasure(msgspec.Struct):
    contact_id: int
    erased: Erased


STATUSES = frozenset(("subscribed", "unsubscribed", "bounced", "complained"))
MAX_NAME = 200


class ListPage(msgspec.Struct):
    data: list[ContactList]
    #: Cursor of the next page (pass as ``after``); null on the last page.
    next: str | None


class ImportPage(msgspec.Struct):
    data: list[Import]
    next: str | None
