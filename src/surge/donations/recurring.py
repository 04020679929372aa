"""Recurring gifts: a donation that asked to repeat (``recurring``: weekly, monthly, yearly)
becomes a gift charged every period, each period exactly once, until it is cancelled.

- **Made** by the first donation's successful charge, in its transaction (``start_gift``):
  the gift keeps the amount, fee, donor, page and the reusable payment method; its periods
  are ``anchor_at + n`` weeks, months or years, anchored on the first donation's time (a
  31st clamps to the month's last day: 31 Jan, 28 Feb, 31 Mar).
- **Charged** by the periodic ``donations.recurring`` job (critical queue): in one
  transaction per batch it locks the due gifts (``for update skip locked``: two runs never
  take the same gift), inserts each period's donation under the Idempotency-Key
  ``recurring:<gift>:<period>`` with its ``donations.charge`` job (the usual charge: the
  gateway key derives from that key, so a re-run, a killed worker or a duplicate job never
  charges a period twice), and moves the gift to its next period. After an outage longer
  than a period only the latest due period is charged: missed ones are skipped, never
  charged in a burst.
- **Receipted** like any donation; the receipt has the donor's link to see and cancel the
  gift (``links.py``). Three periods declined in a row end the gift ``failed``.
- **Cancelled** by the donor's link (``POST /v1/recurring/{token}/cancel``) or by staff:
  no later period is charged; a period's charge not yet made when the gift is cancelled is
  declined ``recurring_cancelled`` without asking the gateway.
"""

from __future__ import annotations

import calendar
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from surge.donations import recurring_store as store
from surge.donations.intake import batch_jobs
from surge.donations.links import RecurringLinks
from surge.donations.schemas import (
    DonorRecurringGift,
    RecurringGift,
    RecurringGiftPage,
    RecurringPeriod,
)
from surge.donations.store import FinishedDonation, NewDonation, insert_donations
from surge.errors import NotFound
from surge.fields import MAX_BIGINT, check_choice, decode_cursor, next_cursor
from surge.jobs.enqueue import enqueue_many
from surge.webhooks.service import emit

Conn = store.Conn

#: Periods declined in a row before a gift ends ``failed``.
MAX_FAILURES = 3
#: Gifts one transaction of the periodic job charges.
BATCH = 200
STATUSES = ("active", "cancelled", "failed")
#: Periods shown on the donor's page.
HISTORY = 12


# -- periods -----------------------------------------------------------------------------------


def period_start(anchor: datetime, frequency: str, n: int) -> datetime:
    """When period ``n`` of a gift anchored at ``anchor`` is due (period 0 is the first gift)."""
    if frequency == "weekly":
        return anchor + timedelta(weeks=n)
    months = n if frequency == "monthly" else 12 * n
    year, month = divmod(anchor.month - 1 + months, 12)
    year += anchor.year
    day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
    return anchor.replace(year=year, month=month + 1, day=day)


def latest_due(anchor: datetime, frequency: str, first: int, now: datetime) -> int | None:
    """The latest period from ``first`` on that is due at ``now``; None if ``first`` is not."""
    if period_start(anchor, frequency, first) > now:
        return None
    n = first
    # Rarely more than one step: only after an outage longer than a period.
    while period_start(anchor, frequency, n + 1) <= now:
        n += 1
    return n


def period_key(gift_id: int, period: int) -> str:
    """The Idempotency-Key of a period's donation: one donation, one charge per period."""
    return f"recurring:{gift_id}:{period}"


# -- making and charging -----------------------------------------------------------------------


async def start_gift(conn: Conn, first: FinishedDonation) -> store.GiftRow | None:
    """Make the recurring gift a first donation asked for, inside the transaction that
    records its successful charge; None if it made one already or asked for none."""
    if first.recurring is None or first.recurring_gift_id is not None:
        return None
    anchor = first.created_at
    row = await store.insert_gift(
        conn,
        {
            "org": first.organization_id,
            "campaign_id": first.campaign_id,
            "first_donation_id": first.id,
            "fundraiser_id": first.fundraiser_id,
            "team_id": first.team_id,
            "amount": first.amount,
            "fee": first.fee,
            "currency": first.currency,
            "email": first.email,
            "name": first.name,
            "public_name": first.public_name,
            "frequency": first.recurring,
            "token": first.payment_token,
            "anchor_at": anchor,
            "next_run_at": period_start(anchor, first.recurring, 1),
        },
    )
    if row is not None:
        await emit(conn, row.organization_id, "recurring.created", _event(row))
    return row


async def charge_due(conn: Conn, *, charge_attempts: int, now: datetime | None = None) -> int:
    """One batch of the periodic job, in the caller's transaction: for each due gift, its
    latest due period's donation and charge job, and the gift moved to the next period.
    Returns how many gifts it took (``BATCH`` means: run again)."""
    now = now or datetime.now(UTC)
    due = await store.claim_due(conn, BATCH)
    donations: list[NewDonation] = []
    moves: list[tuple[int, int, datetime]] = []
    for gift in due:
        period = latest_due(gift.anchor_at, gift.frequency, gift.next_period, now)
        if period is None:  # next_run_at was ahead of the periods (clock): just re-aim it
            period = gift.next_period - 1
        else:
            donations.append(_period_donation(gift, period))
        moves.append(
            (gift.id, period + 1, period_start(gift.anchor_at, gift.frequency, period + 1))
        )
    if donations:
        inserted = await insert_donations(conn, donations)
        # A period already inserted (a re-run) inserts nothing and gets no second charge.
        charges = [(row.organization_id, row.id) for row in inserted]
        if charges:
            await enqueue_many(conn, batch_jobs("donations.charge", charges, charge_attempts))
    if moves:
        await store.advance(conn, moves)
    return len(due)


def _period_donation(gift: store.DueGift, period: int) -> NewDonation:
    key = period_key(gift.id, period)
    return NewDonation(
        organization_id=gift.organization_id,
        campaign_id=gift.campaign_id,
        idempotency_key=key,
        request_hash=hashlib.sha256(key.encode()).digest(),
        amount=gift.amount,
        fee=gift.fee,
        currency=gift.currency,
        email=gift.email,
        name=gift.name,
        metadata={"recurring_gift_id": gift.id, "period": period},
        token=gift.payment_token or "",
        fundraiser_id=gift.fundraiser_id,
        team_id=gift.team_id,
        public_name=gift.public_name,
        recurring=None,
        recurring_gift_id=gift.id,
    )


async def record_period(conn: Conn, donation: FinishedDonation) -> None:
    """A period's charge was decided (in its transaction): a success resets the gift's
    failures; a decline counts one, and the ``MAX_FAILURES``th in a row ends the gift."""
    if donation.recurring_gift_id is None:
        return
    ended = await store.record_period(
        conn, donation.recurring_gift_id, donation.status == "succeeded", MAX_FAILURES
    )
    if ended is not None:
        gift = await store.get(conn, donation.organization_id, donation.recurring_gift_id)
        if gift is not None:
            await emit(conn, gift.organization_id, "recurring.failed", _event(gift))


# -- the donor's link ------------------------------------------------------------------------


async def gift_by_token(conn: Conn, links: RecurringLinks, token: str) -> DonorRecurringGift:
    """What the donor's link shows; NotFound for a token we did not sign."""
    gift_id = links.verify(token)
    found = await store.view(conn, gift_id) if gift_id is not None else None
    if found is None:
        raise NotFound("no such recurring gift")
    history = await store.periods(conn, found, HISTORY)
    return DonorRecurringGift(
        campaign_name=found.campaign_name,
        organization_name=found.organization_name,
        amount=found.amount,
        fee=found.fee,
        currency=found.currency,
        frequency=found.frequency,
        status=found.status,
        name=found.name,
        email_hint=email_hint(found.email),
        next_charge_at=found.next_run_at if found.status == "active" else None,
        created_at=found.created_at,
        cancelled_at=found.cancelled_at,
        periods=[
            RecurringPeriod(p.amount, p.fee, p.currency, p.status, p.succeeded_at or p.created_at)
            for p in history
        ],
    )


async def cancel_by_token(conn: Conn, links: RecurringLinks, token: str) -> DonorRecurringGift:
    """The donor cancels their gift (cancelling one that has ended changes nothing)."""
    gift_id = links.verify(token)
    if gift_id is None:
        raise NotFound("no such recurring gift")
    await _cancel(conn, gift_id, "donor")
    return await gift_by_token(conn, links, token)


def email_hint(email: str) -> str:
    """``ada@example.org`` → ``a**@example.org``: enough to recognise, not to harvest."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}{'*' * max(len(local) - 1, 1)}@{domain}"


# -- staff -------------------------------------------------------------------------------------


async def page_gifts(
    conn: Conn,
    org: int,
    *,
    after: str | None,
    limit: int,
    campaign_id: int | None = None,
    status: str | None = None,
) -> RecurringGiftPage:
    """The organisation's recurring gifts, one keyset page at a time."""
    check_choice("status", status, STATUSES)
    rows = await store.page(conn, org, decode_cursor(after), limit, campaign_id, status)
    return RecurringGiftPage([_staff(r) for r in rows], next_cursor([r.id for r in rows], limit))


async def get_gift(conn: Conn, org: int, gift_id: int) -> RecurringGift:
    found = await store.get(conn, org, gift_id) if gift_id <= MAX_BIGINT else None
    if found is None:
        raise NotFound(f"recurring gift {gift_id} not found")
    return _staff(found)


async def cancel_gift(conn: Conn, org: int, gift_id: int) -> RecurringGift:
    """Staff cancel a gift (at the donor's request by phone, say)."""
    await get_gift(conn, org, gift_id)
    await _cancel(conn, gift_id, "staff")
    return await get_gift(conn, org, gift_id)


async def _cancel(conn: Conn, gift_id: int, by: str) -> None:
    async with conn.transaction():
        row = await store.cancel(conn, gift_id, f"cancelled by {by}")
        if row is not None:
            await emit(conn, row.organization_id, "recurring.cancelled", _event(row))


def _staff(row: store.GiftRow) -> RecurringGift:
    return RecurringGift(
        id=row.id,
        campaign_id=row.campaign_id,
        first_donation_id=row.first_donation_id,
        fundraiser_id=row.fundraiser_id,
        team_id=row.team_id,
        amount=row.amount,
        fee=row.fee,
        currency=row.currency,
        email=row.email,
        name=row.name,
        public_name=row.public_name,
        frequency=row.frequency,
        status=row.status,
        next_period=row.next_period,
        next_charge_at=row.next_run_at if row.status == "active" else None,
        failures=row.failures,
        created_at=row.created_at,
        cancelled_at=row.cancelled_at,
        ended_reason=row.ended_reason,
    )


def _event(row: store.GiftRow) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(_staff(row))
    return data
