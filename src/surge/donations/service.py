"""Donations: the rules of taking one, charging it exactly once and counting it.

A donation is stored ``pending`` together with its ``donations.charge`` job (one
transaction), keyed by the organisation and the client's Idempotency-Key. The charge job
asks the gateway with a key derived from that one, so no re-run ever charges twice, and
then, in one transaction, makes the donation final, adds it to the campaign's sharded
totals, enqueues the receipt and emits the webhook event.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from surge.campaigns import service as campaigns
from surge.donations import currencies, store
from surge.donations.gateway import ChargeResult
from surge.donations.schemas import Donation, DonationAccepted, DonationIn, DonationPage, Totals
from surge.donations.totals import TotalsCache, build_totals
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import check_choice, check_email, decode_cursor, next_cursor
from surge.jobs import enqueue
from surge.webhooks.service import emit

Conn = AsyncConnection[Any]

QUEUE = "critical"
MAX_ID = 2**63 - 1


# -- taking a donation -----------------------------------------------------------------------


def check_donation(body: DonationIn) -> DonationIn:
    """``body`` with its currency upper-cased, or Invalid naming the first bad field."""
    currency = body.currency.upper()
    if not currencies.is_active(currency):
        raise Invalid("currency", f"{body.currency!r} is not an active ISO 4217 currency code")
    email = check_email("email", body.email)
    name = body.name.strip() if body.name else None
    return msgspec.structs.replace(body, currency=currency, email=email, name=name or None)


def request_hash(campaign_id: int, body: DonationIn) -> bytes:
    """sha256 of what the request asked for, independent of key order and whitespace."""
    canonical = msgspec.json.encode(
        {"campaign_id": campaign_id, **msgspec.structs.asdict(body)}, order="sorted"
    )
    return hashlib.sha256(canonical).digest()


async def create_donation(
    conn: Conn,
    org: int,
    campaign_id: int,
    key: str,
    body: DonationIn,
    *,
    charge_attempts: int,
) -> tuple[DonationAccepted, bool]:
    """Store a pending donation and its charge job, once per (organisation, key).

    ``charge_attempts`` bounds the charge job's attempts on temporary gateway errors
    (``SURGE_DONATIONS_CHARGE_ATTEMPTS``).

    Returns the donation as accepted and whether this was a replay of an earlier request
    (which then creates nothing). The same key with another body is a Conflict.
    """
    body = check_donation(body)
    digest = request_hash(campaign_id, body)
    async with conn.transaction():
        campaign = await _campaign(conn, org, campaign_id)
        if campaign.currency is not None and campaign.currency != body.currency:
            raise Invalid("currency", f"this campaign takes donations in {campaign.currency}")
        values = msgspec.structs.asdict(body)
        values.update(org=org, campaign_id=campaign_id, key=key, hash=digest)
        row = await store.insert_donation(conn, values)
        if row is not None:
            await enqueue(
                conn,
                "donations.charge",
                {"donation_id": row.id},
                queue=QUEUE,
                organization_id=org,
                max_attempts=charge_attempts,
            )
            return _accepted(row), False
    return await _replay(conn, org, key, digest), True


async def _campaign(conn: Conn, org: int, campaign_id: int) -> Any:
    if campaign_id > MAX_ID:
        raise NotFound(f"campaign {campaign_id} not found")
    return await campaigns.get_campaign(conn, org, campaign_id)


async def _replay(conn: Conn, org: int, key: str, digest: bytes) -> DonationAccepted:
    # Read after the transaction: the winner of a race committed before our insert gave up.
    row = await store.donation_by_key(conn, org, key)
    if row is None:  # the winner rolled back between our insert and this read: rare
        raise Conflict("a request with this Idempotency-Key is in flight; retry it")
    if bytes(row.request_hash) != digest:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body;"
            " use a new key for a new donation"
        )
    return _accepted(row)


def _accepted(row: store.AcceptedDonation) -> DonationAccepted:
    # The first response described the donation as just accepted: a replay gets the same
    # body, whatever the charge has done since (GET /v1/donations/{id} has the news).
    return DonationAccepted(
        id=row.id,
        campaign_id=row.campaign_id,
        status="pending",
        amount=row.amount,
        currency=row.currency,
        email=row.email,
        name=row.name,
        metadata=row.metadata,
        created_at=row.created_at,
    )


async def get_donation(conn: Conn, org: int, donation_id: int) -> Donation:
    """One of the organisation's donations, for staff."""
    row = await store.get_donation(conn, org, donation_id) if donation_id <= MAX_ID else None
    if row is None:
        raise NotFound(f"donation {donation_id} not found")
    return msgspec.convert(row, Donation, from_attributes=True)


STATUSES = ("pending", "succeeded", "failed", "refunded")
MAX_PAGE = 1000


async def page_donations(
    conn: Conn,
    org: int,
    *,
    after: str | None,
    limit: int,
    campaign_id: int | None = None,
    status: str | None = None,
    email: str | None = None,
) -> DonationPage:
    """The organisation's donations, one keyset page at a time, optionally filtered."""
    check_choice("status", status, STATUSES)
    rows = await store.page_donations(
        conn,
        org,
        decode_cursor(after),
        limit,
        campaign_id=campaign_id,
        status=status,
        email=email,
    )
    data = [msgspec.convert(row, Donation, from_attributes=True) for row in rows]
    return DonationPage(data, next_cursor([r.id for r in rows], limit))


# -- charging --------------------------------------------------------------------------------


def gateway_key(org: int, key: str) -> str:
    """The key the gateway sees: the client's key is unique only within its organisation."""
    return f"surge:{org}:{key}"


async def finish_charge(conn: Conn, donation_id: int, result: ChargeResult) -> Donation | None:
    """Record the gateway's decision, inside the caller's transaction.

    A succeeded donation is added to the campaign's totals and gets a receipt job; both
    outcomes emit a webhook event. Returns None (and does nothing) if the donation was
    final already: a duplicate job run.
    """
    status = "succeeded" if result.succeeded else "failed"
    row = await store.finish_donation(conn, donation_id, status, result.reference, result.reason)
    if row is None:
        return None
    donation = msgspec.convert(row, Donation, from_attributes=True)
    org = row.organization_id
    if result.succeeded:
        await store.add_to_totals(conn, row)
        receipt = {"donation_id": donation_id}
        await enqueue(conn, "donations.receipt", receipt, queue=QUEUE, organization_id=org)
    await emit(conn, org, f"donation.{status}", event_data(donation))
    return donation


def event_data(donation: Donation) -> dict[str, Any]:
    """The webhook payload of donation.succeeded / donation.failed."""
    data: dict[str, Any] = msgspec.to_builtins(donation)
    data.pop("idempotency_key", None)  # the client's, not the organisation's business
    return data


# -- public totals ---------------------------------------------------------------------------


async def public_totals(pool: AsyncConnectionPool, cache: TotalsCache, campaign_id: int) -> Totals:
    """A campaign's totals for anyone who knows its id, at most about a second old
    (``cache`` is the process's, shared by every request)."""

    async def load(cid: int) -> Totals | None:
        async with pool.connection() as conn:
            return build_totals(await store.public_totals(conn, cid))

    found = await cache.get(campaign_id, load) if campaign_id <= MAX_ID else None
    if found is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return found
