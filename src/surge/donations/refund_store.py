"""SQL of refunds and disputes, of what they change in donations, and of the Stripe gateway's
PaymentIntents and webhook events (the totals are ``counting.py``'s). Every query filters by
organization_id, except the jobs' reads by refund or event id (a job carries no key to
check) and the lookups by a gateway's own reference (unique across organisations)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg.rows import class_row

Conn = AsyncConnection[Any]
Row = TypeVar("Row")

REFUND_COLUMNS = (
    "id, donation_id, campaign_id, status, amount_minor as amount, currency, reason, note,"
    " origin, requested_by, gateway_reference, failure_reason, created_at, succeeded_at,"
    " failed_at"
)
DONATION_COLUMNS = (
    "id, organization_id, campaign_id, status, amount_minor as amount, fee_minor as fee,"
    " currency, failure_reason, gateway_reference, offline_method is not null as offline,"
    " email, created_at, fundraiser_id, team_id"
)


@dataclass(frozen=True, slots=True)
class LockedDonation:
    """A donation, locked (``for update``) by the transaction that reads it."""

    id: int
    organization_id: int
    campaign_id: int
    status: str
    #: The gift, counted in the totals; ``fee`` the processing fee the donor covered. The
    #: gateway charged both: ``charged``.
    amount: int
    fee: int
    currency: str
    failure_reason: str | None
    gateway_reference: str | None
    #: Entered by staff, with no charge at a gateway.
    offline: bool
    email: str | None
    created_at: datetime
    fundraiser_id: int | None
    team_id: int | None

    @property
    def charged(self) -> int:
        return self.amount + self.fee


@dataclass(frozen=True, slots=True)
class RefundRow:
    """A refund as the API shows it (``REFUND_COLUMNS``)."""

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


@dataclass(frozen=True, slots=True)
class RefundToReplay(RefundRow):
    request_hash: bytes


@dataclass(frozen=True, slots=True)
class RefundToSend:
    """What the refund job needs: the refund, its organisation and the charge's reference."""

    id: int
    organization_id: int
    donation_id: int
    status: str
    amount: int
    reason: str
    charge_reference: str | None


@dataclass(frozen=True, slots=True)
class RefundSums:
    """A donation's refunds: succeeded and pending sums (minor units), and how many."""

    refunded: int
    pending: int
    count: int


@dataclass(frozen=True, slots=True)
class StripeEvent:
    id: str
    type: str
    payload: dict[str, Any]
    handled_at: datetime | None


async def _one(conn: Conn, row: type[Row], sql: str, params: Any) -> Row | None:
    cur = conn.cursor(row_factory=class_row(row))
    await cur.execute(sql, params)
    return await cur.fetchone()


# -- donations ------------------------------------------------------------------------------


async def lock_donation(conn: Conn, org: int, donation_id: int) -> LockedDonation | None:
    """One of the organisation's donations, locked until the transaction ends: refunds of
    one donation take turns, so their sum is checked against it one at a time."""
    return await _one(
        conn,
        LockedDonation,
        f"select {DONATION_COLUMNS} from donations"
        " where organization_id = %s and id = %s for update",
        [org, donation_id],
    )


async def lock_donation_by_key(conn: Conn, org: int, key: str) -> LockedDonation | None:
    """The donation of an organisation's Idempotency-Key, locked (the webhooks' lookup)."""
    return await _one(
        conn,
        LockedDonation,
        f"select {DONATION_COLUMNS} from donations"
        " where organization_id = %s and idempotency_key = %s for update",
        [org, key],
    )


async def mark_refunded(conn: Conn, donation_id: int) -> bool:
    """A succeeded donation becomes ``refunded``; False if it was not succeeded."""
    cur = await conn.execute(
        "update donations set status = 'refunded' where id = %s and status = 'succeeded'",
        [donation_id],
    )
    return cur.rowcount == 1


async def reopen_donation(conn: Conn, donation_id: int) -> bool:
    """A donation failed for want of the gateway's answer becomes ``pending`` again, so the
    charge's outcome the gateway reports later can be recorded as any charge's is."""
    cur = await conn.execute(
        "update donations set status = 'pending', failure_reason = null, failed_at = null"
        " where id = %s and status = 'failed' and failure_reason = 'gateway_unavailable'",
        [donation_id],
    )
    return cur.rowcount == 1


async def one_snapshot(conn: Conn) -> None:
    """Make the transaction just begun on ``conn`` read one snapshot (repeatable read)."""
    await conn.execute("set transaction isolation level repeatable read")


# -- refunds --------------------------------------------------------------------------------


async def refund_sums(conn: Conn, donation_id: int) -> RefundSums:
    return await _one(
        conn,
        RefundSums,
        "select coalesce(sum(amount_minor) filter (where status = 'succeeded'), 0)::bigint"
        " as refunded,"
        " coalesce(sum(amount_minor) filter (where status = 'pending'), 0)::bigint as pending,"
        " count(*) as count from donation_refunds where donation_id = %s",
        [donation_id],
    ) or RefundSums(0, 0, 0)


async def insert_refund(conn: Conn, values: dict[str, Any]) -> RefundRow | None:
    """The new pending refund; None when the organisation already used its Idempotency-Key."""
    return await _one(
        conn,
        RefundRow,
        "insert into donation_refunds (organization_id, donation_id, campaign_id,"
        " amount_minor, currency, reason, note, requested_by, idempotency_key, request_hash)"
        " values (%(org)s, %(donation_id)s, %(campaign_id)s, %(amount)s, %(currency)s,"
        " %(reason)s, %(note)s, %(requested_by)s, %(key)s, %(hash)s)"
        " on conflict (organization_id, idempotency_key) where idempotency_key is not null"
        f" do nothing returning {REFUND_COLUMNS}",
        values,
    )


async def insert_gateway_refund(conn: Conn, values: dict[str, Any]) -> RefundRow | None:
    """A refund made at the gateway, recorded as succeeded; None if its reference is known."""
    return await _one(
        conn,
        RefundRow,
        "insert into donation_refunds (organization_id, donation_id, campaign_id,"
        " amount_minor, currency, reason, note, status, origin, gateway_reference,"
        " succeeded_at) values (%(org)s, %(donation_id)s, %(campaign_id)s, %(amount)s,"
        " %(currency)s, %(reason)s, %(note)s, 'succeeded', 'gateway', %(reference)s, now())"
        " on conflict (gateway_reference) where gateway_reference is not null"
        f" do nothing returning {REFUND_COLUMNS}",
        values,
    )


async def refund_by_key(conn: Conn, org: int, key: str) -> RefundToReplay | None:
    return await _one(
        conn,
        RefundToReplay,
        f"select {REFUND_COLUMNS}, request_hash from donation_refunds"
        " where organization_id = %s and idempotency_key = %s",
        [org, key],
    )


async def refund_by_id(conn: Conn, org: int, refund_id: int) -> RefundRow | None:
    return await _one(
        conn,
        RefundRow,
        f"select {REFUND_COLUMNS} from donation_refunds where organization_id = %s and id = %s",
        [org, refund_id],
    )


async def refund_by_reference(conn: Conn, reference: str) -> RefundRow | None:
    return await _one(
        conn,
        RefundRow,
        f"select {REFUND_COLUMNS} from donation_refunds where gateway_reference = %s",
        [reference],
    )


async def refunds_of(conn: Conn, org: int, donation_id: int) -> list[RefundRow]:
    """A donation's refunds, oldest first."""
    cur = conn.cursor(row_factory=class_row(RefundRow))
    await cur.execute(
        f"select {REFUND_COLUMNS} from donation_refunds"
        " where organization_id = %s and donation_id = %s order by id",
        [org, donation_id],
    )
    return await cur.fetchall()


async def refund_to_send(conn: Conn, refund_id: int) -> RefundToSend | None:
    return await _one(
        conn,
        RefundToSend,
        "select r.id, r.organization_id, r.donation_id, r.status, r.amount_minor as amount,"
        " r.reason, d.gateway_reference as charge_reference"
        " from donation_refunds r join donations d on d.id = r.donation_id where r.id = %s",
        [refund_id],
    )


async def finish_refund(
    conn: Conn,
    refund_id: int,
    status: str,
    reference: str | None,
    reason: str | None,
    *,
    reopen: bool = False,
) -> RefundRow | None:
    """Make a pending refund final; None if it was final already (a duplicate run).

    ``reopen`` also lets a refund that failed for want of the gateway's answer become what
    the gateway later reports it was.
    """
    return await _one(
        conn,
        RefundRow,
        "update donation_refunds set status = %(status)s, gateway_reference = %(reference)s,"
        " failure_reason = %(reason)s,"
        " succeeded_at = case when %(status)s = 'succeeded' then now() end,"
        " failed_at = case when %(status)s = 'failed' then now() end"
        " where id = %(id)s and (status = 'pending' or (%(reopen)s and status = 'failed'"
        "   and failure_reason = 'gateway_unavailable'))"
        f" returning {REFUND_COLUMNS}",
        {
            "id": refund_id,
            "status": status,
            "reference": reference,
            "reason": reason,
            "reopen": reopen,
        },
    )


# -- disputes -------------------------------------------------------------------------------


async def insert_dispute(conn: Conn, values: dict[str, Any]) -> bool:
    """Record a dispute once per gateway reference; False if it was recorded already."""
    cur = await conn.execute(
        "insert into donation_disputes (organization_id, donation_id, gateway_reference,"
        " amount_minor, currency, reason, status) values (%(org)s, %(donation_id)s,"
        " %(reference)s, %(amount)s, %(currency)s, %(reason)s, %(status)s)"
        " on conflict (gateway_reference) do nothing",
        values,
    )
    return cur.rowcount == 1


# -- the Stripe gateway's PaymentIntents ---------------------------------------------------


async def known_intent(conn: Conn, key: str) -> tuple[str, int, str] | None:
    """(PaymentIntent id, amount, currency) recorded for a charge key, if any."""
    cur = await conn.execute(
        "select payment_intent, amount_minor, currency from stripe_payment_intents"
        " where idempotency_key = %s",
        [key],
    )
    row = await cur.fetchone()
    return (str(row[0]), int(row[1]), str(row[2])) if row else None


async def remember_intent(conn: Conn, key: str, intent: str, amount: int, currency: str) -> str:
    """Record ``intent`` for ``key`` unless one is already; returns the one recorded."""
    await conn.execute(
        "insert into stripe_payment_intents (idempotency_key, payment_intent, amount_minor,"
        " currency) values (%s, %s, %s, %s) on conflict (idempotency_key) do nothing",
        [key, intent, amount, currency],
    )
    found = await known_intent(conn, key)
    assert found is not None  # inserted above, or by whoever won the race
    return found[0]


async def key_of_intent(conn: Conn, intent: str) -> str | None:
    """The charge key a PaymentIntent was made for; None if Surge did not make it."""
    cur = await conn.execute(
        "select idempotency_key from stripe_payment_intents where payment_intent = %s", [intent]
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


# -- Stripe's webhook events ----------------------------------------------------------------


async def insert_stripe_event(
    conn: Conn, event_id: str, event_type: str, payload: str, outcome: str | None
) -> bool:
    """Store a received event once; False if its id was received before (a replay).
    An ``outcome`` given now marks it handled (a type Surge does not act on)."""
    cur = await conn.execute(
        "insert into stripe_events (id, type, payload, handled_at, outcome)"
        " values (%s, %s, %s::jsonb, case when %s::text is null then null else now() end, %s)"
        " on conflict (id) do nothing",
        [event_id, event_type, payload, outcome, outcome],
    )
    return cur.rowcount == 1


async def stripe_event(conn: Conn, event_id: str) -> StripeEvent | None:
    return await _one(
        conn,
        StripeEvent,
        "select id, type, payload, handled_at from stripe_events where id = %s",
        [event_id],
    )


async def mark_stripe_event(conn: Conn, event_id: str, outcome: str) -> None:
    await conn.execute(
        "update stripe_events set handled_at = now(), outcome = %s where id = %s",
        [outcome[:500], event_id],
    )


async def prune_stripe_events(conn: Conn, days: int) -> int:
    """Forget handled events older than ``days`` (Stripe resends for 3 days at most)."""
    cur = await conn.execute(
        "delete from stripe_events where received_at < now() - make_interval(days => %s)"
        " and handled_at is not null",
        [days],
    )
    return cur.rowcount
