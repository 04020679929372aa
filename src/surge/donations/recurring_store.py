"""SQL of recurring gifts. Staff reads filter by organisation; the donor's link and the
periodic job find a gift by id (the signed token, the job's own claim)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg.rows import class_row

Conn = AsyncConnection[Any]

GIFT_COLUMNS = (
    "g.id, g.organization_id, g.campaign_id, g.first_donation_id, g.fundraiser_id, g.team_id,"
    " g.amount_minor as amount, g.fee_minor as fee, g.currency, g.email, g.name,"
    " g.public_name, g.frequency, g.status, g.anchor_at, g.next_period, g.next_run_at,"
    " g.failures, g.created_at, g.cancelled_at, g.ended_reason"
)


@dataclass(frozen=True, slots=True)
class GiftRow:
    id: int
    organization_id: int
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
    anchor_at: datetime
    next_period: int
    next_run_at: datetime
    failures: int
    created_at: datetime
    cancelled_at: datetime | None
    ended_reason: str | None


@dataclass(frozen=True, slots=True)
class DueGift(GiftRow):
    """A gift the periodic job charges: with its payment method."""

    payment_token: str | None


@dataclass(frozen=True, slots=True)
class GiftView(GiftRow):
    """A gift as its donor sees it: with its campaign's and organisation's names."""

    campaign_name: str
    organization_name: str


@dataclass(frozen=True, slots=True)
class PeriodRow:
    id: int
    amount: int
    fee: int
    currency: str
    status: str
    created_at: datetime
    succeeded_at: datetime | None


Row = TypeVar("Row")


async def _one(conn: Conn, row: type[Row], query: str, params: Any) -> Row | None:
    cur = conn.cursor(row_factory=class_row(row))
    await cur.execute(query, params)
    return await cur.fetchone()


async def insert_gift(conn: Conn, values: dict[str, Any]) -> GiftRow | None:
    """Make the gift a first donation asked for; None if that donation already made one."""
    return await _one(
        conn,
        GiftRow,
        "insert into recurring_gifts as g (organization_id, campaign_id, first_donation_id,"
        " fundraiser_id, team_id, amount_minor, fee_minor, currency, email, name, public_name,"
        " frequency, payment_token, anchor_at, next_period, next_run_at) values (%(org)s,"
        " %(campaign_id)s, %(first_donation_id)s, %(fundraiser_id)s, %(team_id)s, %(amount)s,"
        " %(fee)s, %(currency)s, %(email)s, %(name)s, %(public_name)s, %(frequency)s,"
        " %(token)s, %(anchor_at)s, 1, %(next_run_at)s)"
        f" on conflict (first_donation_id) do nothing returning {GIFT_COLUMNS}",
        values,
    )


async def claim_due(conn: Conn, limit: int) -> list[DueGift]:
    """Active gifts whose next period is due, oldest first, locked (``recurring_gifts_due_idx``);
    rows another run holds are skipped, so two runs never take the same gift."""
    cur = conn.cursor(row_factory=class_row(DueGift))
    await cur.execute(
        f"select {GIFT_COLUMNS}, g.payment_token from recurring_gifts g"
        " where g.status = 'active' and g.next_run_at <= now()"
        " order by g.next_run_at limit %s for update skip locked",
        [limit],
    )
    return await cur.fetchall()


async def advance(conn: Conn, moves: Sequence[tuple[int, int, datetime]]) -> None:
    """Set each (gift id, next period, next run) in one statement."""
    await conn.execute(
        "update recurring_gifts g set next_period = m.period, next_run_at = m.run_at"
        " from unnest(%s::bigint[], %s::int[], %s::timestamptz[]) as m(id, period, run_at)"
        " where g.id = m.id",
        [[m[0] for m in moves], [m[1] for m in moves], [m[2] for m in moves]],
    )


async def record_period(conn: Conn, gift_id: int, succeeded: bool, max_failures: int) -> str | None:
    """A period's charge succeeded (failures back to 0) or was declined (one more; at
    ``max_failures`` the gift ends ``failed`` and forgets its payment method). Returns the
    gift's status when this ended it, else None."""
    cur = await conn.execute(
        "update recurring_gifts set"
        " failures = case when %(ok)s then 0 else failures + 1 end,"
        " status = case when not %(ok)s and failures + 1 >= %(max)s then 'failed' else status end,"
        " payment_token = case when not %(ok)s and failures + 1 >= %(max)s then null"
        "   else payment_token end,"
        " ended_reason = case when not %(ok)s and failures + 1 >= %(max)s"
        "   then 'declined' else ended_reason end"
        " where id = %(id)s and status = 'active' returning status",
        {"ok": succeeded, "max": max_failures, "id": gift_id},
    )
    row = await cur.fetchone()
    return "failed" if row is not None and row[0] == "failed" else None


async def cancel(conn: Conn, gift_id: int, reason: str) -> GiftRow | None:
    """End an active gift (its payment method is dropped); None if it was not active."""
    return await _one(
        conn,
        GiftRow,
        "update recurring_gifts g set status = 'cancelled', cancelled_at = now(),"
        " payment_token = null, ended_reason = %s where id = %s and status = 'active'"
        f" returning {GIFT_COLUMNS}",
        [reason, gift_id],
    )


async def view(conn: Conn, gift_id: int) -> GiftView | None:
    """A gift by id with its campaign's and organisation's names (the donor's link)."""
    return await _one(
        conn,
        GiftView,
        f"select {GIFT_COLUMNS}, c.name as campaign_name, o.name as organization_name"
        " from recurring_gifts g join campaigns c on c.id = g.campaign_id"
        " join organizations o on o.id = g.organization_id where g.id = %s",
        [gift_id],
    )


async def get(conn: Conn, org: int, gift_id: int) -> GiftRow | None:
    return await _one(
        conn,
        GiftRow,
        f"select {GIFT_COLUMNS} from recurring_gifts g where g.organization_id = %s and g.id = %s",
        [org, gift_id],
    )


async def page(
    conn: Conn,
    org: int,
    after: int,
    limit: int,
    campaign_id: int | None,
    status: str | None,
) -> list[GiftRow]:
    """One keyset page of the organisation's gifts (``recurring_gifts_organization_idx``)."""
    cur = conn.cursor(row_factory=class_row(GiftRow))
    await cur.execute(
        f"select {GIFT_COLUMNS} from recurring_gifts g"
        " where g.organization_id = %(org)s and g.id > %(after)s"
        " and (%(campaign)s::bigint is null or g.campaign_id = %(campaign)s)"
        " and (%(status)s::text is null or g.status = %(status)s)"
        " order by g.id limit %(limit)s",
        {"org": org, "after": after, "campaign": campaign_id, "status": status, "limit": limit},
    )
    return await cur.fetchall()


async def periods(conn: Conn, gift: GiftRow, limit: int) -> list[PeriodRow]:
    """The gift's donations, newest first: its periods and the first gift
    (``donations_recurring_gift_idx``, and the first by primary key)."""
    cur = conn.cursor(row_factory=class_row(PeriodRow))
    await cur.execute(
        "select id, amount_minor as amount, fee_minor as fee, currency, status, created_at,"
        " succeeded_at from ((select * from donations where recurring_gift_id = %s"
        "   order by id desc limit %s) union all (select * from donations where id = %s)) d"
        " order by id desc limit %s",
        [gift.id, limit, gift.first_donation_id, limit],
    )
    return await cur.fetchall()
