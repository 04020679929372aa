"""SQL for donations and campaign totals. Every query filters by organization_id, except
the public totals read and the jobs' reads by donation id (the job carries no key to check).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

Conn = AsyncConnection[Any]
Row = TypeVar("Row")

#: Shards of a campaign's totals; a donation adds to shard ``id % SHARDS``.
SHARDS = 16

ACCEPTED_COLUMNS = (
    "id, campaign_id, status, amount_minor as amount, currency, email, name, metadata, created_at"
)
DONATION_COLUMNS = (
    ACCEPTED_COLUMNS + ", idempotency_key, gateway_reference, failure_reason, succeeded_at,"
    " failed_at, receipt_sent_at"
)


@dataclass(frozen=True, slots=True)
class AcceptedDonation:
    """A donation as the response to POST …/donations describes it (``ACCEPTED_COLUMNS``)."""

    id: int
    campaign_id: int
    status: str
    amount: int
    currency: str
    email: str
    name: str | None
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DonationToReplay(AcceptedDonation):
    """The donation an Idempotency-Key already made, with the hash of its request."""

    request_hash: bytes


@dataclass(frozen=True, slots=True)
class DonationRow(AcceptedDonation):
    """A donation as staff see it (``DONATION_COLUMNS``)."""

    idempotency_key: str
    gateway_reference: str | None
    failure_reason: str | None
    succeeded_at: datetime | None
    failed_at: datetime | None
    receipt_sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class FinishedDonation(DonationRow):
    """A donation the charge job just made final, with its organisation."""

    organization_id: int


@dataclass(frozen=True, slots=True)
class DonationToCharge:
    """A row of ``donation_to_charge``."""

    id: int
    organization_id: int
    campaign_id: int
    status: str
    amount_minor: int
    currency: str
    #: Null once the donation is final: the single-use token is dropped with the charge.
    token: str | None
    idempotency_key: str
    campaign_name: str


@dataclass(frozen=True, slots=True)
class DonationToReceipt:
    """A row of ``donation_to_receipt``."""

    id: int
    organization_id: int
    status: str
    amount: int
    currency: str
    email: str
    name: str | None
    gateway_reference: str | None
    succeeded_at: datetime | None
    receipt_sent_at: datetime | None
    receipt_error: str | None
    campaign_name: str
    organization_name: str


@dataclass(frozen=True, slots=True)
class TotalsRow:
    """A row of ``public_totals``: a campaign and its totals in one currency, or, when it
    has received nothing yet, the one row of the campaign with currency and sums null."""

    id: int
    campaign_currency: str | None
    goal: int | None
    currency: str | None
    raised: int | None
    donations: int | None
    as_of: datetime


async def _one(conn: Conn, row: type[Row], sql: str, params: Any) -> Row | None:
    cur = conn.cursor(row_factory=class_row(row))
    await cur.execute(sql, params)
    return await cur.fetchone()


async def insert_donation(conn: Conn, values: dict[str, Any]) -> AcceptedDonation | None:
    """The new donation, or None when the organisation already used this idempotency key.

    A concurrent insert with the same key waits for the first transaction and then does
    nothing: exactly one of 100 simultaneous requests gets a row back.
    """
    return await _one(
        conn,
        AcceptedDonation,
        "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
        " amount_minor, currency, email, name, metadata, token) values (%(org)s,"
        " %(campaign_id)s, %(key)s, %(hash)s, %(amount)s, %(currency)s, %(email)s, %(name)s,"
        " %(metadata)s, %(token)s)"
        " on conflict (organization_id, idempotency_key) do nothing"
        f" returning {ACCEPTED_COLUMNS}",
        {**values, "metadata": Jsonb(values["metadata"])},
    )


async def donation_by_key(conn: Conn, org: int, key: str) -> DonationToReplay | None:
    return await _one(
        conn,
        DonationToReplay,
        f"select {ACCEPTED_COLUMNS}, request_hash from donations"
        " where organization_id = %s and idempotency_key = %s",
        [org, key],
    )


async def get_donation(conn: Conn, org: int, donation_id: int) -> DonationRow | None:
    return await _one(
        conn,
        DonationRow,
        f"select {DONATION_COLUMNS} from donations where organization_id = %s and id = %s",
        [org, donation_id],
    )


async def page_donations(
    conn: Conn,
    org: int,
    after: int,
    limit: int,
    *,
    campaign_id: int | None = None,
    status: str | None = None,
    email: str | None = None,
) -> list[DonationRow]:
    """One keyset page of the organisation's donations, in id order, filtered."""
    cur = conn.cursor(row_factory=class_row(DonationRow))
    await cur.execute(
        f"select {DONATION_COLUMNS} from donations"
        " where organization_id = %(org)s and id > %(after)s"
        " and (%(campaign)s::bigint is null or campaign_id = %(campaign)s)"
        " and (%(status)s::text is null or status = %(status)s)"
        " and (%(email)s::text is null or lower(email) = lower(%(email)s))"
        " order by id limit %(limit)s",
        {
            "org": org,
            "after": after,
            "campaign": campaign_id,
            "status": status,
            "email": email,
            "limit": limit,
        },
    )
    return await cur.fetchall()


async def donation_to_charge(conn: Conn, donation_id: int) -> DonationToCharge | None:
    """What the charge job needs, with the campaign's name for the charge description."""
    return await _one(
        conn,
        DonationToCharge,
        "select d.id, d.organization_id, d.campaign_id, d.status, d.amount_minor, d.currency,"
        " d.token, d.idempotency_key, c.name as campaign_name"
        " from donations d join campaigns c on c.id = d.campaign_id where d.id = %s",
        [donation_id],
    )


async def finish_donation(
    conn: Conn, donation_id: int, status: str, reference: str | None, reason: str | None
) -> FinishedDonation | None:
    """Move a pending donation to ``status`` (locking it); None if it was final already.

    The token is dropped: it is single-use and the charge is done.
    """
    return await _one(
        conn,
        FinishedDonation,
        "update donations set status = %(status)s, gateway_reference = %(reference)s,"
        " failure_reason = %(reason)s, token = null,"
        " succeeded_at = case when %(status)s = 'succeeded' then now() end,"
        " failed_at = case when %(status)s = 'failed' then now() end"
        " where id = %(id)s and status = 'pending'"
        f" returning {DONATION_COLUMNS}, organization_id",
        {"id": donation_id, "status": status, "reference": reference, "reason": reason},
    )


async def add_to_totals(conn: Conn, donation: FinishedDonation) -> None:
    """Add one succeeded donation to its shard of the campaign's totals."""
    await conn.execute(
        "insert into campaign_totals (campaign_id, currency, shard, organization_id,"
        " raised_minor, donations) values (%s, %s, %s, %s, %s, 1)"
        " on conflict (campaign_id, currency, shard) do update set"
        " raised_minor = campaign_totals.raised_minor + excluded.raised_minor,"
        " donations = campaign_totals.donations + 1, updated_at = now()",
        [
            donation.campaign_id,
            donation.currency,
            donation.id % SHARDS,
            donation.organization_id,
            donation.amount,
        ],
    )


async def public_totals(conn: Conn, campaign_id: int) -> list[TotalsRow]:
    """The campaign and its totals per currency; [] if there is no such campaign.

    Deliberately not filtered by organisation: the totals page is public and knows only
    the campaign id. It reads nothing but the goal, currency and sums.
    """
    cur = conn.cursor(row_factory=class_row(TotalsRow))
    await cur.execute(
        "select c.id, c.currency as campaign_currency, c.goal_minor as goal,"
        " t.currency, t.raised, t.donations, now() as as_of"
        " from campaigns c left join lateral ("
        "   select currency, sum(raised_minor)::bigint as raised,"
        "     sum(donations)::bigint as donations"
        "   from campaign_totals where campaign_id = c.id group by currency"
        " ) t on true where c.id = %s order by t.currency",
        [campaign_id],
    )
    return await cur.fetchall()


async def donation_to_receipt(conn: Conn, donation_id: int) -> DonationToReceipt | None:
    """A donation with what its receipt shows: the campaign's and organisation's names."""
    return await _one(
        conn,
        DonationToReceipt,
        "select d.id, d.organization_id, d.status, d.amount_minor as amount, d.currency,"
        " d.email, d.name, d.gateway_reference, d.succeeded_at, d.receipt_sent_at, d.receipt_error,"
        " c.name as campaign_name, o.name as organization_name"
        " from donations d join campaigns c on c.id = d.campaign_id"
        " join organizations o on o.id = d.organization_id where d.id = %s",
        [donation_id],
    )


async def record_receipt(conn: Conn, donation_id: int, error: str | None) -> None:
    """The receipt was sent (``error`` None) or refused for good (``error`` says why)."""
    await conn.execute(
        "update donations set receipt_sent_at = case when %s::text is null then now() end,"
        " receipt_error = %s where id = %s",
        [error, error, donation_id],
    )
