"""Refunds: the rules of giving back part or all of a donation, once, and un-counting it.

A refund is stored ``pending`` with its ``donations.refund`` job (one transaction, under
the donation's row lock, so concurrent refunds never add up to more than the donation).
Its amount is reserved while pending. The job asks the gateway with a key derived from the
refund id, then, in one transaction, makes the refund final; a succeeded one is taken off
the campaign's totals, makes the donation ``refunded`` once the refunds cover it, and emits
``donation.refunded`` (a failed one emits ``donation.refund_failed`` and frees its amount).

Callers: the HTTP API (``refund_endpoints.py``) and the console's donations page, both
through ``refund_donation``; gateways' webhooks through ``reconcile.py``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from psycopg import AsyncConnection

from surge.donations import counting, currencies, refund_store, service
from surge.donations.gateway import RefundResult
from surge.donations.refund_schemas import MAX_NOTE, Refund, RefundIn, RefundList
from surge.errors import Conflict, Invalid, NotFound
from surge.jobs import enqueue
from surge.webhooks.service import emit

Conn = AsyncConnection[Any]

QUEUE = "critical"
MAX_ID = 2**63 - 1
#: Refunds one donation may have: each is a gateway call and a row on its page.
MAX_REFUNDS = 100
REFUND_KEY_PREFIX = "surge-refund"


def refund_key(org: int, refund_id: int) -> str:
    """The key the gateway sees for a refund: fixed per refund, so a re-run never repeats it."""
    return f"{REFUND_KEY_PREFIX}:{org}:{refund_id}"


def parse_refund_key(key: str) -> tuple[int, int] | None:
    """(organisation, refund id) of a ``refund_key``; None for anything else."""
    parts = key.split(":")
    if len(parts) != 3 or parts[0] != REFUND_KEY_PREFIX:
        return None
    if not (
        parts[1].isascii() and parts[1].isdigit() and parts[2].isascii() and parts[2].isdigit()
    ):
        return None
    return int(parts[1]), int(parts[2])


def request_hash(donation_id: int, body: RefundIn) -> bytes:
    """sha256 of what the request asked for, independent of key order and whitespace."""
    canonical = msgspec.json.encode(
        {"donation_id": donation_id, **msgspec.structs.asdict(body)}, order="sorted"
    )
    return hashlib.sha256(canonical).digest()


def to_refund(row: refund_store.RefundRow) -> Refund:
    return msgspec.convert(row, Refund, from_attributes=True)


# -- asking for a refund -----------------------------------------------------------------------


async def refund_donation(
    conn: Conn,
    org: int,
    donation_id: int,
    body: RefundIn,
    *,
    key: str | None = None,
    attempts: int = 8,
    requested_by: str | None = None,
) -> tuple[Refund, bool]:
    """Refund ``body.amount`` (default: all that remains) of a succeeded donation.

    Amounts are of what the donor was charged: the gift and any fee they covered (the fee
    is given back last, see ``apply_refund``). Stores the refund ``pending`` with its job,
    in one transaction; an offline gift (no gateway charge: the money goes back outside
    Surge) is refunded at once, in the same transaction. ``key`` is the
    client's Idempotency-Key, if any: the same key and request again returns the first
    refund and creates nothing (the bool says it was such a replay); the same key with
    another request is a Conflict. ``attempts`` bounds the job's tries on temporary gateway
    errors; ``requested_by`` says who asked (``api_key:<id>``, a console user).

    Raises NotFound (``donation_id``: none such, or another organisation's), Conflict
    (``donation_id``: the donation is not succeeded; ``amount``: pending refunds take all
    that remains) or Invalid (``amount``: more than remains; ``note``).
    """
    note = body.note.strip() if body.note else None
    if note is not None and len(note) > MAX_NOTE:
        raise Invalid("note", f"note must be at most {MAX_NOTE} characters")
    body = msgspec.structs.replace(body, note=note or None)
    digest = request_hash(donation_id, body)
    async with conn.transaction():
        donation = await _donation(conn, org, donation_id)
        if key is not None:
            earlier = await refund_store.refund_by_key(conn, org, key)
            if earlier is not None:
                return _replay(earlier, digest, donation.offline), True
        amount = await _refundable(conn, donation, body.amount)
        row = await refund_store.insert_refund(
            conn,
            {
                "org": org,
                "donation_id": donation.id,
                "campaign_id": donation.campaign_id,
                "amount": amount,
                "currency": donation.currency,
                "reason": body.reason,
                "note": body.note,
                "requested_by": requested_by,
                "key": key,
                "hash": digest if key is not None else None,
            },
        )
        if row is not None and donation.offline:
            made = RefundResult("succeeded")
            done = await finish_refund(conn, org, row.id, made)
            assert done is not None  # pending until this line, under the donation's lock
            return done, False
        if row is not None:
            args = {"refund_id": row.id}
            await enqueue(
                conn,
                "donations.refund",
                args,
                queue=QUEUE,
                organization_id=org,
                max_attempts=attempts,
            )
            return _accepted(row), False
    # Another request with this key won a race for the donation's lock and committed first.
    assert key is not None  # without a key the insert always returns the row
    winner = await refund_store.refund_by_key(conn, org, key)
    if winner is None:
        raise Conflict("a request with this Idempotency-Key is in flight; retry it")
    return _replay(winner, digest, donation.offline), True


async def _donation(conn: Conn, org: int, donation_id: int) -> refund_store.LockedDonation:
    found = (
        await refund_store.lock_donation(conn, org, donation_id) if donation_id <= MAX_ID else None
    )
    if found is None:
        raise NotFound(f"donation {donation_id} not found", "donation_id")
    return found


async def _refundable(conn: Conn, donation: refund_store.LockedDonation, asked: int | None) -> int:
    """The amount to refund now: ``asked``, or all that remains; the rules' errors."""
    if donation.status == "refunded":
        raise Conflict(f"donation {donation.id} is refunded in full already", "donation_id")
    if donation.status != "succeeded":
        raise Conflict(
            f"donation {donation.id} is {donation.status}: only a succeeded donation"
            " can be refunded",
            "donation_id",
        )
    sums = await refund_store.refund_sums(conn, donation.id)
    if sums.count >= MAX_REFUNDS:
        raise Conflict(f"a donation takes at most {MAX_REFUNDS} refunds", "donation_id")
    remaining = donation.charged - sums.refunded - sums.pending
    money = currencies.format_amount
    if remaining <= 0:
        raise Conflict(
            f"nothing remains to refund: {money(sums.pending, donation.currency)} of this"
            " donation is being refunded now",
            "amount",
        )
    if asked is not None and asked > remaining:
        raise Invalid(
            "amount",
            f"at most {remaining} ({money(remaining, donation.currency)}) remains to refund"
            f" of this donation of {money(donation.charged, donation.currency)}",
        )
    return remaining if asked is None else asked


def _replay(row: refund_store.RefundToReplay, digest: bytes, offline: bool) -> Refund:
    if bytes(row.request_hash or b"") != digest:
        raise Conflict(
            "this Idempotency-Key was already used with a different request;"
            " use a new key for a new refund",
            "Idempotency-Key",
        )
    # An offline gift's refund was final in the first response already.
    return to_refund(row) if offline else _accepted(row)


def _accepted(row: refund_store.RefundRow) -> Refund:
    # As for donations, a replay gets the first response again: the refund as accepted
    # (GET …/refunds has what the gateway has done since).
    return msgspec.structs.replace(
        to_refund(row),
        status="pending",
        gateway_reference=None,
        failure_reason=None,
        succeeded_at=None,
        failed_at=None,
    )


async def list_refunds(conn: Conn, org: int, donation_id: int) -> RefundList:
    """A donation's refunds and their sums; NotFound for another organisation's."""
    async with conn.transaction():
        # One snapshot for both reads: a refund finishing between them would otherwise show
        # as succeeded beside a donation not yet refunded.
        await refund_store.one_snapshot(conn)
        donation = await service.get_donation(conn, org, donation_id)
        rows = await refund_store.refunds_of(conn, org, donation_id)
    refunded = sum(r.amount for r in rows if r.status == "succeeded")
    pending = sum(r.amount for r in rows if r.status == "pending")
    charged = donation.amount + donation.fee
    refundable = charged - refunded - pending if donation.status == "succeeded" else 0
    return RefundList(
        donation_id=donation.id,
        donation_status=donation.status,
        currency=donation.currency,
        amount=donation.amount,
        fee=donation.fee,
        charged=charged,
        refunded=refunded,
        pending=pending,
        refundable=max(refundable, 0),
        data=[to_refund(r) for r in rows],
    )


# -- recording the gateway's answer ----------------------------------------------------------


async def finish_refund(
    conn: Conn, org: int, refund_id: int, result: RefundResult, *, reopen: bool = False
) -> Refund | None:
    """Record the gateway's answer to a refund, inside the caller's transaction.

    Takes the donation's lock first (as every writer of its refunds does). A succeeded
    refund is applied (``apply_refund``); a failed one frees its amount and emits
    ``donation.refund_failed``. Returns None (and does nothing) if the refund was final
    already; ``reopen`` lets one that failed with ``gateway_unavailable`` be settled.
    """
    found = await refund_store.refund_by_id(conn, org, refund_id)
    if found is None:
        return None
    donation = await refund_store.lock_donation(conn, org, found.donation_id)
    assert donation is not None  # a refund is deleted only with its donation
    status = "succeeded" if result.succeeded else "failed"
    row = await refund_store.finish_refund(
        conn, refund_id, status, result.reference, result.reason, reopen=reopen
    )
    if row is None:
        return None
    if result.succeeded:
        await apply_refund(conn, donation, row)
    else:
        data = {**service.event_data(await service.get_donation(conn, org, donation.id))}
        data["refund"] = msgspec.to_builtins(to_refund(row))
        await emit(conn, org, "donation.refund_failed", data)
    return to_refund(row)


async def apply_refund(
    conn: Conn, donation: refund_store.LockedDonation, refund: refund_store.RefundRow
) -> None:
    """A succeeded refund's consequences, in the caller's transaction (donation locked).

    The gift is given back first and the covered fee last, so the totals never count money
    that went back: the part of this refund that was still counted comes off every rollup
    the gift was added to (``counting.uncount``: campaign, fundraiser, team, matches). Once
    the refunds cover all that was charged the donation is ``refunded`` and no longer counts
    as a donation. ``donation.refunded`` is emitted either way.
    """
    sums = await refund_store.refund_sums(conn, donation.id)
    before = sums.refunded - refund.amount
    in_full = sums.refunded >= donation.charged and await refund_store.mark_refunded(
        conn, donation.id
    )
    counted = min(sums.refunded, donation.amount) - min(max(before, 0), donation.amount)
    if donation.status in ("succeeded", "refunded") and (counted > 0 or in_full):
        await counting.uncount(conn, _gift(donation), counted, whole=in_full)
    org = donation.organization_id
    data = service.event_data(await service.get_donation(conn, org, donation.id))
    data["refund"] = msgspec.to_builtins(to_refund(refund))
    data["amount_refunded"] = sums.refunded
    await emit(conn, org, "donation.refunded", data)


def _gift(donation: refund_store.LockedDonation) -> counting.Gift:
    return counting.Gift(
        id=donation.id,
        organization_id=donation.organization_id,
        campaign_id=donation.campaign_id,
        amount=donation.amount,
        currency=donation.currency,
        email=donation.email,
        created_at=donation.created_at,
        fundraiser_id=donation.fundraiser_id,
        team_id=donation.team_id,
    )
