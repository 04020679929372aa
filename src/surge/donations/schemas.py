"""Request and response bodies of donations and campaign totals."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from surge.donations.match_schemas import MatchShare
from surge.fields import Id

#: The largest donation accepted, in minor units: what card gateways accept in one charge
#: (Stripe's limit is 99,999,999, i.e. 999,999.99 in a 2-decimal currency).
MAX_AMOUNT_MINOR = 99_999_999

MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
#: Integers a JSON reader in any language can hold (JavaScript's safe range).
SafeInt = Annotated[int, msgspec.Meta(ge=-(2**53), le=2**53)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=500)] | SafeInt | float | bool | None
Metadata = Annotated[dict[MetadataKey, MetadataValue], msgspec.Meta(max_length=50)]
Frequency = Literal["weekly", "monthly", "yearly"]
FREQUENCIES: tuple[Frequency, ...] = ("weekly", "monthly", "yearly")
#: How staff received an offline gift.
OfflineMethod = Literal["cheque", "cash", "bank_transfer", "other"]


class DonationIn(msgspec.Struct, forbid_unknown_fields=True):
    amount: Annotated[int, msgspec.Meta(gt=0, le=MAX_AMOUNT_MINOR)]
    currency: Annotated[str, msgspec.Meta(min_length=1, max_length=3)]
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)]
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    metadata: Metadata = {}
    #: The fundraiser's page the gift is made on (its team, if any, is credited too).
    fundraiser_id: Id | None = None
    #: The team's page the gift is made on (or the fundraiser's team: then it must match).
    team_id: Id | None = None
    #: Add the processing fee (SURGE_DONATION_FEE) so that the whole gift reaches the cause.
    cover_fee: bool = False
    #: Show ``name`` on the campaign's public wall of recent donors.
    public_name: bool = False
    #: Repeat the gift every week, month or year (made when this first one succeeds).
    recurring: Frequency | None = None


class OfflineDonationIn(msgspec.Struct, forbid_unknown_fields=True):
    """A gift staff received offline (cheque, cash, bank transfer): succeeded at once,
    counted in every total and board, never charged."""

    amount: Annotated[int, msgspec.Meta(gt=0, le=MAX_AMOUNT_MINOR)]
    currency: Annotated[str, msgspec.Meta(min_length=1, max_length=3)]
    method: OfflineMethod
    email: Annotated[str, msgspec.Meta(min_length=3, max_length=320)] | None = None
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    #: E.g. {"cheque_number": "000123", "note": "gala table 4"}.
    metadata: Metadata = {}
    fundraiser_id: Id | None = None
    team_id: Id | None = None
    public_name: bool = False
    #: Email the donor a receipt (needs ``email``).
    send_receipt: bool = False


class DonationAccepted(msgspec.Struct):
    """The answer to POST …/donations: the donation as accepted (a replay gets it again).
    ``amount`` is the gift; the card is charged ``amount + fee``."""

    id: int
    campaign_id: int
    status: str
    amount: int
    currency: str
    email: str
    name: str | None
    metadata: dict[str, Any]
    created_at: datetime
    fee: int = 0
    fundraiser_id: int | None = None
    team_id: int | None = None
    public_name: bool = False
    recurring: Frequency | None = None


class Donation(msgspec.Struct):
    """A donation as staff see it (GET /v1/donations/{id}). ``amount`` is the gift counted in
    totals; ``fee`` what the donor added to cover processing (charged, never counted).
    ``offline`` gifts were entered by staff (``offline_method``) and have no gateway charge;
    they may have no ``email``."""

    id: int
    campaign_id: int
    status: str
    amount: int
    currency: str
    email: str | None
    name: str | None
    metadata: dict[str, Any]
    idempotency_key: str
    gateway_reference: str | None
    failure_reason: str | None
    created_at: datetime
    succeeded_at: datetime | None
    failed_at: datetime | None
    receipt_sent_at: datetime | None
    fee: int = 0
    fundraiser_id: int | None = None
    team_id: int | None = None
    offline: bool = False
    offline_method: OfflineMethod | None = None
    public_name: bool = False
    recurring: Frequency | None = None
    #: The recurring gift this donation is a period of.
    recurring_gift_id: int | None = None


class DonationPage(msgspec.Struct):
    data: list[Donation]
    #: Cursor of the next page (pass as ``after``); null on the last page.
    next: str | None


class RecentDonor(msgspec.Struct):
    """A gift on the public wall: the donor's name only if they agreed to show it."""

    #: Null: the donor did not ask to show their name (show "Anonymous").
    name: str | None
    amount: int
    currency: str
    at: datetime
    fundraiser_id: int | None
    team_id: int | None


class RecentDonors(msgspec.Struct):
    """A campaign's (or fundraiser's) latest succeeded gifts, newest first."""

    campaign_id: int
    fundraiser_id: int | None
    donors: list[RecentDonor]
    as_of: datetime


class RecurringGift(msgspec.Struct):
    """A recurring gift as staff see it. ``status``: active, cancelled or failed (three
    periods declined in a row); ``next_charge_at`` is null once it has ended."""

    id: int
    campaign_id: int
    first_donation_id: int
    fundraiser_id: int | None
    team_id: int | None
    amount: int
    fee: int
    currency: str
    email: str
    name: str | None
    public_name: bool
    frequency: str
    status: str
    next_period: int
    next_charge_at: datetime | None
    failures: int
    created_at: datetime
    cancelled_at: datetime | None
    ended_reason: str | None


class RecurringGiftPage(msgspec.Struct):
    data: list[RecurringGift]
    next: str | None


class RecurringPeriod(msgspec.Struct):
    """One of a recurring gift's donations (the first included), as its donor sees it."""

    amount: int
    fee: int
    currency: str
    status: str
    at: datetime


class DonorRecurringGift(msgspec.Struct):
    """What the donor's link shows of their recurring gift (no id, no full address)."""

    campaign_name: str
    organization_name: str
    amount: int
    fee: int
    currency: str
    frequency: str
    status: str
    name: str | None
    #: The address the receipts go to, masked: ``a**@example.org``.
    email_hint: str
    next_charge_at: datetime | None
    created_at: datetime
    cancelled_at: datetime | None
    #: The latest donations of the gift, newest first (at most 12).
    periods: list[RecurringPeriod]


class CurrencyTotal(msgspec.Struct):
    currency: str
    raised: int
    donations: int
    donors: int = 0


class Totals(msgspec.Struct):
    """A campaign's public totals. ``raised`` is in minor units of ``currency``.

    A campaign without a currency that received several currencies has ``currency`` and
    ``raised`` null; ``by_currency`` has each one. ``donations`` counts succeeded donations,
    ``donors`` the distinct donors (by address) who made them.

    ``matched`` is what the sponsors' matches and unlocked challenges add (the sum of the
    ``matches``' shares) and ``total`` is ``raised + matched``: all computed from the same
    read, so they always reconcile. ``percent_of_goal`` is of ``total``.
    """

    campaign_id: int
    currency: str | None
    goal: int | None
    raised: int | None
    donations: int
    percent_of_goal: float | None
    as_of: datetime
    by_currency: list[CurrencyTotal]
    donors: int = 0
    matched: int = 0
    total: int | None = None
    matches: list[MatchShare] = msgspec.field(default_factory=list)
