"""What a gateway tells us after the fact (Stripe's webhooks), made to agree with our records.

Each function runs in the caller's transaction, takes the donation's row lock first, and
is harmless to repeat: a replayed or re-ordered event changes nothing the first one did.
- ``settle_charge``: how a charge ended. A ``pending`` donation (its job still retrying)
  is finished as the charge job would finish it; one that ``failed`` with
  ``gateway_unavailable`` (the job gave up not knowing) but was in fact charged becomes
  ``succeeded``, counted, receipted and announced, as if the job had heard the answer.
- ``record_gateway_refund``: a refund seen at the gateway. Ours (its key names our refund)
  completes that refund if the job has not; one made elsewhere (Stripe's dashboard) is
  recorded once (``origin = gateway``) and applied like ours. Known references are skipped.
- ``record_dispute``: a chargeback opened; recorded once, ``donation.disputed`` emitted.
  Totals are left alone: a dispute may still be won.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from psycopg import AsyncConnection

from surge.donations import refund_store, refunds, service
from surge.donations.gateway import REFUND_REASONS, ChargeResult, RefundResult
from surge.webhooks.service import emit

Conn = AsyncConnection[Any]

#: Charges whose donation counts in the totals: refunds and disputes apply to these.
CHARGED = ("succeeded", "refunded")


@dataclass(frozen=True, slots=True)
class GatewayRefund:
    """A refund as the gateway reports it."""

    reference: str
    amount: int
    #: The gateway's reason code, if any (Stripe: duplicate, fraudulent, …).
    reason: str | None
    #: The key the refund was made with, if Surge made it (``refunds.refund_key``).
    key: str | None


@dataclass(frozen=True, slots=True)
class GatewayDispute:
    reference: str
    amount: int
    currency: str
    reason: str | None
    status: str | None


def parse_gateway_key(key: str) -> tuple[int, str] | None:
    """(organisation, Idempotency-Key) of a charge key made by ``service.gateway_key``."""
    prefix, _, rest = key.partition(":")
    org, sep, client_key = rest.partition(":")
    if prefix != "surge" or not sep or not (org.isascii() and org.isdigit()):
        return None
    return int(org), client_key


async def _donation(conn: Conn, gateway_key: str) -> refund_store.LockedDonation | None:
    parsed = parse_gateway_key(gateway_key)
    if parsed is None:
        return None
    return await refund_store.lock_donation_by_key(conn, *parsed)


async def settle_charge(conn: Conn, gateway_key: str, result: ChargeResult) -> str:
    """Make the donation charged under ``gateway_key`` agree with the gateway; says what
    it did (for the event's record)."""
    donation = await _donation(conn, gateway_key)
    if donation is None:
        return "no donation has this charge key"
    if donation.status == "failed" and result.succeeded:
        if not await refund_store.reopen_donation(conn, donation.id):
            return f"donation {donation.id} failed ({donation.failure_reason}); left so"
    elif donation.status != "pending":
        return f"donation {donation.id} is {donation.status} already"
    done = await service.finish_charge(conn, donation.id, result)
    return f"donation {donation.id} is {done.status if done else donation.status}"


async def record_gateway_refund(conn: Conn, gateway_key: str, refund: GatewayRefund) -> str:
    """Record a refund the gateway made of the charge under ``gateway_key``, once."""
    donation = await _donation(conn, gateway_key)
    if donation is None:
        return "no donation has this charge key"
    if await refund_store.refund_by_reference(conn, refund.reference) is not None:
        return f"refund {refund.reference} is recorded already"
    ours = refunds.parse_refund_key(refund.key) if refund.key else None
    if ours is not None and ours[0] == donation.organization_id:
        done = await refunds.finish_refund(
            conn,
            ours[0],
            ours[1],
            RefundResult("succeeded", reference=refund.reference),
            reopen=True,
        )
        return f"refund {ours[1]} " + ("completed" if done else "was final already")
    if donation.status not in CHARGED:
        return f"donation {donation.id} is {donation.status}: refund not recorded"
    reason = refund.reason if refund.reason in REFUND_REASONS else "other"
    row = await refund_store.insert_gateway_refund(
        conn,
        {
            "org": donation.organization_id,
            "donation_id": donation.id,
            "campaign_id": donation.campaign_id,
            "amount": refund.amount,
            "currency": donation.currency,
            "reason": reason,
            "note": "made at the gateway"
            + (f" (reason: {refund.reason})" if refund.reason and reason == "other" else ""),
            "reference": refund.reference,
        },
    )
    if row is None:
        return f"refund {refund.reference} is recorded already"
    await refunds.apply_refund(conn, donation, row)
    return f"refund {refund.reference} recorded as {row.id}"


async def record_dispute(conn: Conn, gateway_key: str, dispute: GatewayDispute) -> str:
    """Record a dispute (chargeback) of the charge under ``gateway_key``, once."""
    donation = await _donation(conn, gateway_key)
    if donation is None:
        return "no donation has this charge key"
    org = donation.organization_id
    recorded = await refund_store.insert_dispute(
        conn,
        {
            "org": org,
            "donation_id": donation.id,
            "reference": dispute.reference,
            "amount": dispute.amount,
            "currency": dispute.currency.upper(),
            "reason": dispute.reason,
            "status": dispute.status,
        },
    )
    if not recorded:
        return f"dispute {dispute.reference} is recorded already"
    data = service.event_data(await service.get_donation(conn, org, donation.id))
    data["dispute"] = {
        "gateway_reference": dispute.reference,
        "amount": dispute.amount,
        "currency": dispute.currency.upper(),
        "reason": dispute.reason,
        "status": dispute.status,
    }
    await emit(conn, org, "donation.disputed", msgspec.to_builtins(data))
    return f"dispute {dispute.reference} recorded"
