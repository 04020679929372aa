"""SQL for donations and campaign totals. Every query filters by organization_id, except
the public totals read and the jobs' reads by donation id (the job carries no key to check).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

Conn = AsyncConnection[Any]

#: Shards of a campaign's totals; a donation adds to shard ``id % SHARDS``.
SHARDS = 16

ACCEPTED_COLUMNS = (
    "id, campaign_id, status, amount_minor as amount, currency, email, name, metadata, created_at"
)
DONATION_COLUMNS = (
    ACCEPTED_COLUMNS + ", idempotency_key, gateway_reference, failure_reason, succeeded_at,"
    " failed_at, receipt_sent_at"
)


async def _one(conn: Conn, sql: str, params: Any) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(sql, params)
    return await cur.fetchone()


async def insert_donation(conn: Conn, values: dict[str, Any]) -> dict[str, Any] | None:
    """The new donation, or None when the organisation already used this idempotency key.

    A concurrent insert with the same key waits for the first transaction and then does
    nothing: exactly one of 100 simultaneous requests gets a row back.
    """
    return await _one(
        conn,
        "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
        " amount_minor, currency, email, name, metadata, token) values (%(org)s,"
        " %(campaign_id)s, %(key)s, %(hash)s, %(amount)s, %(currency)s, %(email)s, %(name)s,"
        " %(metadata)s, %(token)s)"
        " on conflict (organization_id, idempotency_key) do nothing"
        f" returning {ACCEPTED_COLUMNS}",
        {**values, "metadata": Jsonb(values["metadata"])},
    )


async def donation_by_key(conn: Conn, org: int, key: str) -> dict[str, Any] | None:
    return await _one(
        conn,
        f"select {ACCEPTED_COLUMNS}, request_hash from donations"
        " where organization_id = %s and idempotency_key = %s",
        [org, key],
    )


async def get_donation(conn: Conn, org: int, donation_id: int) -> dict[str, Any] | None:
    return await _one(
        conn,
        f"select {DONATION_COLUMNS} from donations where organization_id = %s and id = %s",
        [org, donation_id],
    )


async def donation_to_charge(conn: Conn, donation_id: int) -> dict[str, Any] | None:
    """What the charge job needs, with the campaign's name for the charge description."""
    return await _one(
        conn,
        "select d.id, d.organization_id, d.campaign_id, d.status, d.amount_minor, d.currency,"
        " d.token, d.idempotency_key, c.name as campaign_name"
        " from donations d join campaigns c on c.id = d.campaign_id where d.id = %s",
        [donation_id],
    )


async def finish_donation(
    conn: Conn, donation_id: int, status: str, reference: str | None, reason: str | None
) -> dict[str, Any] | None:
    """Move a pending donation to ``status`` (locking it); None if it was final already.

    The token is dropped: it is single-use and the charge is done.
    """
    return await _one(
        conn,
        "update donations set status = %(status)s, gateway_reference = %(reference)s,"
        " failure_reason = %(reason)s, token = null,"
        " succeeded_at = case when %(status)s = 'succeeded' then now() end,"
        " failed_at = case when %(status)s = 'failed' then now() end"
        " where id = %(id)s and status = 'pending'"
        f" returning {DONATION_COLUMNS}, organization_id",
        {"id": donation_id, "status": status, "reference": reference, "reason": reason},
    )


async def add_to_totals(conn: Conn, org: int, donation: dict[str, Any]) -> None:
    """Add one succeeded donation to its shard of the campaign's totals."""
    await conn.execute(
        "insert into campaign_totals (campaign_id, currency, shard, organization_id,"
        " raised_minor, donations) values (%s, %s, %s, %s, %s, 1)"
        " on conflict (campaign_id, currency, shard) do update set"
        " raised_minor = campaign_totals.raised_minor + excluded.raised_minor,"
        " donations = campaign_totals.donations + 1, updated_at = now()",
        [
            donation["campaign_id"],
            donation["currency"],
            donation["id"] % SHARDS,
            org,
            donation["amount"],
        ],
    )


async def public_totals(conn: Conn, campaign_id: int) -> list[dict[str, Any]]:
    """The campaign and its totals per currency; [] if there is no such campaign.

    Deliberately not filtered by organisation: the totals page is public and knows only
    the campaign id. It reads nothing but the goal, currency and sums.
    """
    cur = conn.cursor(row_factory=dict_row)
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


async def donation_to_receipt(conn: Conn, donation_id: int) -> dict[str, Any] | None:
    """A donation with what its receipt shows: the campaign's and organisation's names."""
    return await _one(
        conn,
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
