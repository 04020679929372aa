"""Donations: the rules of taking one, charging it exactly once and counting it.

A donation is stored ``pending`` together with its ``donations.charge`` job, keyed by the
organisation and the client's Idempotency-Key, by the process's group-commit writer
(``intake.py``): concurrent requests share one commit. The charge job asks the gateway with a
key derived from that one, so no re-run ever charges twice, and then, in one transaction,
makes the donation final, adds it to every rollup it belongs to (``counting.py``: the
campaign's sharded totals and donors, its fundraiser's and team's, the open matches'),
enqueues the receipt and emits the webhook event.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from surge.donations import counting, currencies, recurring, store
from surge.donations.gateway import ChargeResult
from surge.donations.intake import DonationIntake
from surge.donations.schemas import (
    MAX_AMOUNT_MINOR,
    Donation,
    DonationAccepted,
    DonationIn,
    DonationPage,
    Totals,
)
from surge.donations.totals import TotalsCache, build_totals
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import check_choice, check_email, decode_cursor, next_cursor
from surge.jobs import enqueue
from surge.webhooks.service import emit, emit_many

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


#: Fields added after the first release: left out of the request hash while they hold their
#: default, so that a key used before an upgrade still replays after it.
_LATER_FIELDS = {
    "fundraiser_id": None,
    "team_id": None,
    "cover_fee": False,
    "public_name": False,
    "recurring": None,
}


def request_hash(campaign_id: int, body: DonationIn) -> bytes:
    """sha256 of what the request asked for, independent of key order and whitespace."""
    values = {
        k: v
        for k, v in msgspec.structs.asdict(body).items()
        if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]
    }
    canonical = msgspec.json.encode({"campaign_id": campaign_id, **values}, order="sorted")
    return hashlib.sha256(canonical).digest()


async def create_donation(
    intake: DonationIntake,
    org: int,
    campaign_id: int,
    key: str,
    body: DonationIn,
    *,
    charge_attempts: int,
) -> tuple[DonationAccepted, bool]:
    """Store a pending donation and its charge job, once per (organisation, key), through
    the process's group-commit writer; return once committed.

    ``charge_attempts`` bounds the charge job's attempts on temporary gateway errors
    (``SURGE_DONATIONS_CHARGE_ATTEMPTS``). Returns the donation as accepted and whether this
    was a replay of an earlier request (which then creates nothing). The same key with
    another body is a Conflict. Raises ``Overloaded`` (503) when the writer is full.
    """
    body = check_donation(body)
    if campaign_id > MAX_ID:
        raise NotFound(f"campaign {campaign_id} not found")
    campaign = await intake.campaign(org, campaign_id)
    if campaign.currency is not None and campaign.currency != body.currency:
        raise Invalid("currency", f"this campaign takes donations in {campaign.currency}")
    await _check_page(intake, campaign_id, body)
    fee = 0
    if body.cover_fee:
        found = intake.fees.fee(body.amount, body.currency)
        if found is None:
            raise Invalid("cover_fee", f"covering the fee is not offered in {body.currency}")
        if body.amount + found > MAX_AMOUNT_MINOR:
            raise Invalid("amount", "with the fee, this is more than one charge may be")
        fee = found
    digest = request_hash(campaign_id, body)
    new = store.NewDonation(
        organization_id=org,
        campaign_id=campaign_id,
        idempotency_key=key,
        request_hash=digest,
        amount=body.amount,
        fee=fee,
        currency=body.currency,
        email=body.email,
        name=body.name,
        metadata=body.metadata,
        token=body.token,
        fundraiser_id=body.fundraiser_id,
        team_id=body.team_id,
        public_name=body.public_name,
        recurring=body.recurring,
    )
    outcome = await intake.submit(new, charge_attempts=charge_attempts)
    if outcome.created:
        return outcome.accepted, False
    if outcome.request_hash != digest:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body;"
            " use a new key for a new donation"
        )
    return outcome.accepted, True


async def _check_page(intake: DonationIntake, campaign_id: int, body: DonationIn) -> None:
    """The fundraiser and team a donation names belong to its campaign (and to each other)."""
    team_of_fundraiser: int | None = None
    if body.fundraiser_id is not None:
        fundraiser = await intake.fundraiser(body.fundraiser_id)
        if fundraiser is None or fundraiser.campaign_id != campaign_id:
            raise Invalid("fundraiser_id", "no such fundraiser in this campaign")
        team_of_fundraiser = fundraiser.team_id
    if body.team_id is not None:
        team = await intake.team(body.team_id)
        if team is None or team.campaign_id != campaign_id:
            raise Invalid("team_id", "no such team in this campaign")
        if body.fundraiser_id is not None and team_of_fundraiser != body.team_id:
            raise Invalid("team_id", "the fundraiser is not in this team; leave team_id out")


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
    fundraiser_id: int | None = None,
    offline: bool | None = None,
) -> DonationPage:
    """The organisation's donations, one keyset page at a time, optionally filtered (by
    campaign, status, donor, fundraiser, and offline or online)."""
    check_choice("status", status, STATUSES)
    rows = await store.page_donations(
        conn,
        org,
        decode_cursor(after),
        limit,
        campaign_id=campaign_id,
        status=status,
        email=email,
        fundraiser_id=fundraiser_id,
        offline=offline,
    )
    data = [msgspec.convert(row, Donation, from_attributes=True) for row in rows]
    return DonationPage(data, next_cursor([r.id for r in rows], limit))


# -- charging --------------------------------------------------------------------------------


def gateway_key(org: int, key: str) -> str:
    """The key the gateway sees: the client's key is unique only within its organisation."""
    return f"surge:{org}:{key}"


async def finish_charge(
    conn: Conn, donation_id: int, result: ChargeResult, *, receipt: bool = True
) -> Donation | None:
    """Record the gateway's decision, inside the caller's transaction.

    A succeeded donation is added to every rollup it belongs to, makes the recurring gift it
    asked for and gets a receipt job; a period of a recurring gift records its outcome on
    the gift; both outcomes emit a webhook event. Returns None (and does nothing) if the
    donation was final already: a duplicate job run.
    """
    status = "succeeded" if result.succeeded else "failed"
    row = await store.finish_donation(conn, donation_id, status, result.reference, result.reason)
    if row is None:
        return None
    donation = msgspec.convert(row, Donation, from_attributes=True)
    org = row.organization_id
    if result.succeeded:
        await counting.count(conn, gift_of(row))
        # Before the receipt job: the receipt of a gift that repeats links to its page.
        await recurring.start_gift(conn, row)
        if receipt:  # else the caller receipts a batch of them with one job
            job = {"donation_id": donation_id}
            await enqueue(conn, "donations.receipt", job, queue=QUEUE, organization_id=org)
    await recurring.record_period(conn, row)
    await emit(conn, org, f"donation.{status}", event_data(donation))
    return donation


async def finish_charges(conn: Conn, decisions: list[tuple[int, ChargeResult]]) -> list[Donation]:
    """``finish_charge`` for a batch's decisions, inside the caller's transaction, without
    receipt jobs (the caller enqueues one for the batch). The donations are made final in
    id order and their rollups written by ``counting.count_many``, so that concurrent
    batches take their row locks in one order. Returns the donations made final (not those
    final already: duplicate runs)."""
    rows = await store.finish_donations(
        conn,
        [
            (donation_id, "succeeded" if r.succeeded else "failed", r.reference, r.reason)
            for donation_id, r in decisions
        ],
    )
    await counting.count_many(conn, [gift_of(r) for r in rows if r.status == "succeeded"])
    done: list[Donation] = []
    for row in rows:
        if row.status == "succeeded":
            await recurring.start_gift(conn, row)
        await recurring.record_period(conn, row)
        done.append(msgspec.convert(row, Donation, from_attributes=True))
    events = [
        (row.organization_id, f"donation.{d.status}", d) for row, d in zip(rows, done, strict=True)
    ]
    await emit_many(conn, events, event_data)
    return done


def gift_of(row: store.FinishedDonation) -> counting.Gift:
    """What the rollups need of a succeeded donation."""
    return counting.Gift(
        id=row.id,
        organization_id=row.organization_id,
        campaign_id=row.campaign_id,
        amount=row.amount,
        currency=row.currency,
        email=row.email,
        created_at=row.created_at,
        fundraiser_id=row.fundraiser_id,
        team_id=row.team_id,
    )


def event_data(donation: Donation) -> dict[str, Any]:
    """The webhook payload of donation.succeeded / donation.failed."""
    data: dict[str, Any] = msgspec.to_builtins(donation)
    data.pop("idempotency_key", None)  # the client's, not the organisation's business
    return data


# -- public totals ---------------------------------------------------------------------------


async def public_totals(pool: AsyncConnectionPool, cache: TotalsCache, campaign_id: int) -> Totals:
    """A campaign's totals for anyone who knows its id, at most about a second old
    (``cache`` is the process's, shared by every request)."""

    async def load() -> Totals | None:
        async with pool.connection() as conn:
            return build_totals(await store.public_totals(conn, campaign_id))

    found = await cache.get(campaign_id, load) if campaign_id <= MAX_ID else None
    if found is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return found
