"""Request and response bodies of refunds."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from surge.donations.schemas import MAX_AMOUNT_MINOR

Reason = Literal["duplicate", "fraudulent", "requested_by_customer", "other"]
#: Longest note a refund carries.
MAX_NOTE = 500


class RefundIn(msgspec.Struct, forbid_unknown_fields=True):
    """POST /v1/donations/{id}/refunds. ``amount`` in minor units of what was charged (the
    gift plus any covered fee); absent: all that remains."""

    reason: Reason
    amount: Annotated[int, msgspec.Meta(gt=0, le=MAX_AMOUNT_MINOR)] | None = None
    note: Annotated[str, msgspec.Meta(max_length=MAX_NOTE)] | None = None


class Refund(msgspec.Struct):
    """A refund of a donation. ``status``: pending → succeeded | failed. ``origin``:
    ``surge`` (asked for through the API or the console) or ``gateway`` (made at the
    gateway, such as Stripe's dashboard, and learnt from its webhook)."""

    id: int
    donation_id: int
    campaign_id: int
    status: str
    amount: int
    currency: str
    reason: str
    note: str | None
    origin: str
    requested_by: str | None
    gateway_reference: str | None
    failure_reason: str | None
    created_at: datetime
    succeeded_at: datetime | None
    failed_at: datetime | None


class RefundList(msgspec.Struct):
    """A donation's refunds, oldest first, and what they add up to (minor units)."""

    donation_id: int
    donation_status: str
    currency: str
    #: The donation's gift (counted in the totals), the processing fee the donor covered,
    #: and what the gateway charged: their sum, which refunds give back (the fee last).
    amount: int
    fee: int
    charged: int
    #: Refunded: the sum of the succeeded refunds.
    refunded: int
    #: Being refunded: the sum of the pending refunds.
    pending: int
    #: What one more refund may take now (0 unless the donation is succeeded).
    refundable: int
    data: list[Refund]
