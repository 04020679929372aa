"""SQL for donations and campaign totals. Every query filters by organization_id, except
the public totals read and the jobs' reads by donation id (the job carries no key to check).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import class_row

Conn = AsyncConnection[Any]
Row = TypeVar("Row")

#: Shards of a campaign's totals (striped counters: see ``counting``).
SHARDS = 16

ACCEPTED_COLUMNS = (
    "id, campaign_id, status, amount_minor as amount, currency, email, name, metadata, created_at,"
    " fee_minor as fee, fundraiser_id, team_id, public_name, recurring"
)
DONATION_COLUMNS = (
    ACCEPTED_COLUMNS + ", idempotency_key, gateway_reference, failure_reason, succeeded_at,"
    " failed_at, receipt_sent_at, offline_method is not null as offline, offline_method,"
    " recurring_gift_id"
)


@dataclass(frozen=True, slots=True)
class AcceptedDonation:
    """A donation as the response to POST …/donations describes it (``ACCEPTED_COLUMNS``)."""

    id: int
    campaign_id: int
    status: str
    amount: int
    currency: str
    #: Null only for an offline gift entered without an address.
    email: str | None
    name: str | None
    metadata: dict[str, Any]
    created_at: datetime
    fee: int
    fundraiser_id: int | None
    team_id: int | None
    public_name: bool
    recurring: str | None


@dataclass(frozen=True, slots=True)
class DonationToReplay(AcceptedDonation):
    """The donation an Idempotency-Key already made, with the hash of its request."""

    request_hash: bytes
    organization_id: int
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class DonationRow(AcceptedDonation):
    """A donation as staff see it (``DONATION_COLUMNS``)."""

    idempotency_key: str
    gateway_reference: str | None
    failure_reason: str | None
    succeeded_at: datetime | None
    failed_at: datetime | None
    receipt_sent_at: datetime | None
    offline: bool
    offline_method: str | None
    recurring_gift_id: int | None


@dataclass(frozen=True, slots=True)
class FinishedDonation(DonationRow):
    """A donation the charge job just made final, with its organisation and the payment
    token it was charged with (dropped from the row by that same update)."""

    organization_id: int
    payment_token: str | None


@dataclass(frozen=True, slots=True)
class DonationToCharge:
    """A row of ``donation_to_charge``."""

    id: int
    organization_id: int
    campaign_id: int
    status: str
    amount_minor: int
    #: Added by a donor who covers the processing fee: the gateway charges amount + fee.
    fee_minor: int
    currency: str
    #: Null once the donation is final: the single-use token is dropped with the charge.
    token: str | None
    idempotency_key: str
    campaign_name: str
    #: The recurring gift's status when this is one of its periods, else None.
    gift_status: str | None = None


@dataclass(frozen=True, slots=True)
class DonationToReceipt:
    """A row of ``donation_to_receipt``."""

    id: int
    organization_id: int
    status: str
    amount: int
    currency: str
    #: Null only for an offline gift without an address (it gets no receipt).
    email: str | None
    name: str | None
    gateway_reference: str | None
    succeeded_at: datetime | None
    receipt_sent_at: datetime | None
    receipt_error: str | None
    campaign_name: str
    organization_name: str
    #: The processing fee the donor covered (charged on top of ``amount``).
    fee: int = 0
    #: How staff received an offline gift; None for a gift charged online.
    offline_method: str | None = None
    #: weekly | monthly | yearly when the gift repeats (it started or belongs to one).
    frequency: str | None = None
    recurring_gift_id: int | None = None


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
    donors: int | None = None
    #: The campaign's matches and challenges, each with its own window's counts (the same
    #: list on every row of the campaign): ``MatchRow`` fields, as JSON.
    matches: list[dict[str, Any]] | None = None


async def _one(conn: Conn, row: type[Row], sql: str, params: Any) -> Row | None:
    cur = conn.cursor(row_factory=class_row(row))
    await cur.execute(sql, params)
    return await cur.fetchone()


@dataclass(frozen=True, slots=True)
class NewDonation:
    """A donation to insert (``insert_donations``), pending its charge."""

    organization_id: int
    campaign_id: int
    idempotency_key: str
    request_hash: bytes
    amount: int
    fee: int
    currency: str
    email: str
    name: str | None
    metadata: dict[str, Any]
    token: str
    fundraiser_id: int | None = None
    team_id: int | None = None
    public_name: bool = False
    recurring: str | None = None
    recurring_gift_id: int | None = None


@dataclass(frozen=True, slots=True)
class InsertedDonation:
    """What the database decided of a new donation: its id, team and creation time."""

    id: int
    organization_id: int
    idempotency_key: str
    team_id: int | None
    created_at: datetime


# One statement for a whole group-commit flush. A donation on a fundraiser's page is
# credited to the fundraiser's team as it is when the row is written.
INSERT_DONATIONS = """
insert into donations (organization_id, campaign_id, idempotency_key, request_hash,
    amount_minor, fee_minor, currency, email, name, metadata, token, fundraiser_id, team_id,
    public_name, recurring, recurring_gift_id)
select u.org, u.campaign, u.key, u.hash, u.amount, u.fee, u.currency, u.email, u.name,
    u.metadata::jsonb, u.token, u.fundraiser, coalesce(f.team_id, u.team), u.public_name,
    u.recurring, u.gift
from unnest(%s::bigint[], %s::bigint[], %s::text[], %s::bytea[], %s::bigint[], %s::bigint[],
    %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[],
    %s::boolean[], %s::text[], %s::bigint[])
    as u(org, campaign, key, hash, amount, fee, currency, email, name, metadata, token,
         fundraiser, team, public_name, recurring, gift)
left join fundraisers f on f.id = u.fundraiser
on conflict (organization_id, idempotency_key) do nothing
returning id, organization_id, idempotency_key, team_id, created_at
"""


async def insert_donations(conn: Conn, rows: Sequence[NewDonation]) -> list[InsertedDonation]:
    """Insert ``rows`` (their keys distinct) in one statement; those whose idempotency key
    the organisation already used are skipped (the returned list lacks them).

    A concurrent insert of the same key by another process waits for that transaction and
    then does nothing: exactly one of many simultaneous requests gets a row back.
    """
    encode = msgspec.json.encode
    columns: list[list[Any]] = [
        [r.organization_id for r in rows],
        [r.campaign_id for r in rows],
        [r.idempotency_key for r in rows],
        [r.request_hash for r in rows],
        [r.amount for r in rows],
        [r.fee for r in rows],
        [r.currency for r in rows],
        [r.email for r in rows],
        [r.name for r in rows],
        [encode(r.metadata).decode() for r in rows],
        [r.token for r in rows],
        [r.fundraiser_id for r in rows],
        [r.team_id for r in rows],
        [r.public_name for r in rows],
        [r.recurring for r in rows],
        [r.recurring_gift_id for r in rows],
    ]
    cur = conn.cursor(row_factory=class_row(InsertedDonation))
    await cur.execute(INSERT_DONATIONS, columns)
    return await cur.fetchall()


async def donations_by_keys(conn: Conn, keys: Sequence[tuple[int, str]]) -> list[DonationToReplay]:
    """The donations of these (organisation, Idempotency-Key) pairs that exist."""
    cur = conn.cursor(row_factory=class_row(DonationToReplay))
    await cur.execute(
        f"select {ACCEPTED_COLUMNS}, request_hash, organization_id, idempotency_key"
        " from donations where (organization_id, idempotency_key) in"
        " (select * from unnest(%s::bigint[], %s::text[]))",
        [[k[0] for k in keys], [k[1] for k in keys]],
    )
    return await cur.fetchall()


async def donation_by_key(conn: Conn, org: int, key: str) -> DonationToReplay | None:
    return await _one(
        conn,
        DonationToReplay,
        f"select {ACCEPTED_COLUMNS}, request_hash, organization_id, idempotency_key"
        " from donations where organization_id = %s and idempotency_key = %s",
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
    fundraiser_id: int | None = None,
    offline: bool | None = None,
) -> list[DonationRow]:
    """One keyset page of the organisation's donations, in id order, filtered."""
    cur = conn.cursor(row_factory=class_row(DonationRow))
    await cur.execute(
        f"select {DONATION_COLUMNS} from donations"
        " where organization_id = %(org)s and id > %(after)s"
        " and (%(campaign)s::bigint is null or campaign_id = %(campaign)s)"
        " and (%(status)s::text is null or status = %(status)s)"
        " and (%(email)s::text is null or lower(email) = lower(%(email)s))"
        " and (%(fundraiser)s::bigint is null or fundraiser_id = %(fundraiser)s)"
        " and (%(offline)s::boolean is null or (offline_method is not null) = %(offline)s)"
        " order by id limit %(limit)s",
        {
            "org": org,
            "after": after,
            "campaign": campaign_id,
            "status": status,
            "email": email,
            "fundraiser": fundraiser_id,
            "offline": offline,
            "limit": limit,
        },
    )
    return await cur.fetchall()


@dataclass(frozen=True, slots=True)
class OfflineDonation(DonationRow):
    """An offline gift as inserted, with its organisation (what the rollups need)."""

    organization_id: int


async def insert_offline(conn: Conn, values: dict[str, Any]) -> OfflineDonation | None:
    """Insert a gift staff received offline, succeeded at once; None when the organisation
    already used this Idempotency-Key (a concurrent insert waits, then does nothing)."""
    return await _one(
        conn,
        OfflineDonation,
        "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
        " amount_minor, currency, email, name, metadata, fundraiser_id, team_id, public_name,"
        " offline_method, status, succeeded_at)"
        " select %(org)s, %(campaign_id)s, %(key)s, %(hash)s, %(amount)s, %(currency)s,"
        " %(email)s, %(name)s, %(metadata)s::jsonb, %(fundraiser_id)s,"
        " coalesce(f.team_id, %(team_id)s), %(public_name)s, %(method)s, 'succeeded', now()"
        " from (select) one left join fundraisers f on f.id = %(fundraiser_id)s"
        " on conflict (organization_id, idempotency_key) do nothing"
        f" returning {DONATION_COLUMNS}, organization_id",
        {**values, "metadata": msgspec.json.encode(values["metadata"]).decode()},
    )


async def donations_to_charge(conn: Conn, ids: Sequence[int]) -> list[DonationToCharge]:
    """``donation_to_charge`` of many donations in one query (a batch's charges)."""
    cur = conn.cursor(row_factory=class_row(DonationToCharge))
    await cur.execute(
        "select d.id, d.organization_id, d.campaign_id, d.status, d.amount_minor,"
        " d.fee_minor, d.currency, d.token, d.idempotency_key, c.name as campaign_name,"
        " g.status as gift_status"
        " from donations d join campaigns c on c.id = d.campaign_id"
        " left join recurring_gifts g on g.id = d.recurring_gift_id"
        " where d.id = any(%s) order by d.id",
        [list(ids)],
    )
    return await cur.fetchall()


async def donation_to_charge(conn: Conn, donation_id: int) -> DonationToCharge | None:
    """What the charge job needs, with the campaign's name for the charge description."""
    found = await donations_to_charge(conn, [donation_id])
    return found[0] if found else None


async def finish_donation(
    conn: Conn, donation_id: int, status: str, reference: str | None, reason: str | None
) -> FinishedDonation | None:
    """Move a pending donation to ``status`` (locking it); None if it was final already.

    The token is dropped: it is single-use and the charge is done.
    """
    rows = await finish_donations(conn, [(donation_id, status, reference, reason)])
    return rows[0] if rows else None


async def finish_donations(
    conn: Conn, decisions: Sequence[tuple[int, str, str | None, str | None]]
) -> list[FinishedDonation]:
    """``finish_donation`` of many in one statement: (id, status, reference, reason) each.
    The rows are locked in id order (concurrent batches never wait in a cycle); those final
    already are left out. Returned in id order."""
    if not decisions:
        return []
    ids, statuses, references, reasons = (list(c) for c in zip(*decisions, strict=True))
    cur = conn.cursor(row_factory=class_row(FinishedDonation))
    await cur.execute(
        # `locked` takes the row locks in id order and reads each token before the update
        # drops it (a recurring gift keeps it); materialized, so no plan reorders the locks.
        "with locked as materialized ("
        "  select id as locked_id, token as old_token from donations"
        "  where id = any(%(ids)s) and status = 'pending' order by id for update"
        "), decided as ("
        "  select * from unnest(%(ids)s::bigint[], %(statuses)s::text[],"
        "    %(references)s::text[], %(reasons)s::text[]) as v(decided_id, new_status,"
        "    new_reference, new_reason)"
        ")"
        " update donations set status = new_status, gateway_reference = new_reference,"
        " failure_reason = new_reason, token = null,"
        " succeeded_at = case when new_status = 'succeeded' then now() end,"
        " failed_at = case when new_status = 'failed' then now() end"
        " from decided join locked on locked_id = decided_id"
        " where id = decided_id and status = 'pending'"
        f" returning {DONATION_COLUMNS}, organization_id, old_token as payment_token",
        {"ids": ids, "statuses": statuses, "references": references, "reasons": reasons},
    )
    return sorted(await cur.fetchall(), key=lambda row: row.id)


async def public_totals(conn: Conn, campaign_id: int) -> list[TotalsRow]:
    """The campaign and its totals per currency; [] if there is no such campaign.

    Deliberately not filtered by organisation: the totals page is public and knows only
    the campaign id. It reads nothing but the goal, currency and sums.
    """
    cur = conn.cursor(row_factory=class_row(TotalsRow))
    await cur.execute(PUBLIC_TOTALS, [campaign_id])
    return await cur.fetchall()


# One statement, so one snapshot: the campaign's sums and every match's terms and own sums
# are read together, and the shares computed from them reconcile with the totals shown.
PUBLIC_TOTALS = """
select c.id, c.currency as campaign_currency, c.goal_minor as goal, t.currency, t.raised,
    t.donations, t.donors, now() as as_of, m.matches
from campaigns c
left join lateral (
    select currency, sum(raised_minor)::bigint as raised, sum(donations)::bigint as donations,
        sum(donors)::bigint as donors
    from campaign_totals where campaign_id = c.id group by currency
) t on true
left join lateral (
    select json_agg(json_build_object('id', m.id, 'sponsor', m.sponsor, 'kind', m.kind,
        'ratio_percent', m.ratio_percent, 'cap', m.cap_minor,
        'threshold_kind', m.threshold_kind, 'threshold', m.threshold,
        'starts_at', m.starts_at, 'ends_at', m.ends_at,
        'raised', coalesce(o.raised, 0), 'donations', coalesce(o.donations, 0),
        'donors', coalesce(o.donors, 0)) order by m.id) as matches
    from campaign_matches m
    left join lateral (
        select sum(raised_minor)::bigint as raised, sum(donations)::bigint as donations,
            sum(donors)::bigint as donors
        from match_totals where match_id = m.id
    ) o on true
    where m.campaign_id = c.id
) m on true
where c.id = %s order by t.currency
"""


@dataclass(frozen=True, slots=True)
class RecentRow:
    name: str | None
    public_name: bool
    amount: int
    currency: str
    succeeded_at: datetime
    fundraiser_id: int | None
    team_id: int | None


async def recent_donations(
    conn: Conn, campaign_id: int, limit: int, fundraiser_id: int | None = None
) -> list[RecentRow]:
    """A campaign's (or one of its fundraisers') latest succeeded gifts, newest first:
    ``donations_recent_idx`` (``donations_fundraiser_recent_idx``) read backwards from now,
    refunded gifts skipped. Public: the campaign id is all the page knows."""
    cur = conn.cursor(row_factory=class_row(RecentRow))
    if fundraiser_id is None:
        where = "campaign_id = %(campaign)s"
    else:
        where = "fundraiser_id = %(fundraiser)s and campaign_id = %(campaign)s"
    await cur.execute(
        "select name, public_name, amount_minor as amount, currency, succeeded_at,"
        " fundraiser_id, team_id from donations"
        f" where {where} and succeeded_at is not null and status = 'succeeded'"
        " order by succeeded_at desc limit %(limit)s",
        {"campaign": campaign_id, "fundraiser": fundraiser_id, "limit": limit},
    )
    return await cur.fetchall()


_TO_RECEIPT = (
    "select d.id, d.organization_id, d.status, d.amount_minor as amount, d.currency,"
    " d.email, d.name, d.gateway_reference, d.succeeded_at, d.receipt_sent_at, d.receipt_error,"
    " c.name as campaign_name, o.name as organization_name, d.fee_minor as fee,"
    " d.offline_method, coalesce(g.frequency, d.recurring) as frequency,"
    " g.id as recurring_gift_id"
    " from donations d join campaigns c on c.id = d.campaign_id"
    " join organizations o on o.id = d.organization_id"
    # The gift a period belongs to, or the one this first gift started (two index
    # lookups: the primary key, the unique first_donation_id).
    " left join lateral (select id, frequency from recurring_gifts"
    "   where id = d.recurring_gift_id union all select id, frequency"
    "   from recurring_gifts where first_donation_id = d.id limit 1) g on true"
)


async def donations_to_receipt(conn: Conn, ids: Sequence[int]) -> list[DonationToReceipt]:
    """``donation_to_receipt`` of many donations in one query (a batch's receipts)."""
    cur = conn.cursor(row_factory=class_row(DonationToReceipt))
    await cur.execute(_TO_RECEIPT + " where d.id = any(%s) order by d.id", [list(ids)])
    return await cur.fetchall()


async def record_receipts(conn: Conn, sent: Sequence[int], refused: dict[int, str]) -> None:
    """``record_receipt`` of many: ``sent`` went out, ``refused`` were refused for good."""
    if sent:
        await conn.execute(
            "update donations set receipt_sent_at = now(), receipt_error = null where id = any(%s)",
            [list(sent)],
        )
    if refused:
        await conn.execute(
            "update donations d set receipt_sent_at = null, receipt_error = r.error"
            " from unnest(%s::bigint[], %s::text[]) as r(id, error) where d.id = r.id",
            [list(refused), list(refused.values())],
        )


async def donation_to_receipt(conn: Conn, donation_id: int) -> DonationToReceipt | None:
    """A donation with what its receipt shows: the campaign's and organisation's names."""
    found = await donations_to_receipt(conn, [donation_id])
    return found[0] if found else None


async def record_receipt(conn: Conn, donation_id: int, error: str | None) -> None:
    """The receipt was sent (``error`` None) or refused for good (``error`` says why)."""
    await conn.execute(
        "update donations set receipt_sent_at = case when %s::text is null then now() end,"
        " receipt_error = %s where id = %s",
        [error, error, donation_id],
    )
