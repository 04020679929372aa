"""What a succeeded gift adds to, in the transaction that makes it succeed: one statement.

Every rollup a giving-day page reads is kept here, so that a charge, an offline gift, a
recurring period and a refund all count the same way:
- ``campaign_totals``: raised, donations and (distinct) donors, in 16 shards;
- ``fundraiser_totals`` and ``team_totals`` when the gift names them, in 4 shards;
- ``match_totals`` of each windowed match or challenge open when the gift was made
  (``created_at`` within its window), with its own distinct donors.

A shard is a striped counter, not a partition: what a row holds means nothing alone, only
the sum of a key's shards does, so any transaction may add (or take away) in any shard. A
single gift uses shard ``id % 16`` (``id % 4``); a batch (``count_many``) puts all of its
gifts in one shard drawn at random, so that concurrent batches each lock one row per key
and seldom the same one. (Spread by gift id, every batch of consecutive ids locked most of
the shards and the batches queued behind each other's commits.)

A donor is ``sha256(organisation, lower(email))`` (``donor_key``): a row per campaign (and
windowed match) and donor in ``campaign_donors`` (``match_donors``), whose insert finds out
whether this is the donor's first gift there, in the same statement that adds to the
counts. A gift without an address (cash) is its own donor.

``uncount`` takes a refund back out of the same rows (donors stay counted: they gave).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection, sql

from surge.donations.peer_store import SHARDS as PAGE_SHARDS
from surge.donations.store import SHARDS

Conn = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Gift:
    """What the rollups need to know of a succeeded donation."""

    id: int
    organization_id: int
    campaign_id: int
    amount: int
    currency: str
    email: str | None
    created_at: datetime
    fundraiser_id: int | None = None
    team_id: int | None = None


def donor_key(org: int, email: str | None, donation_id: int) -> bytes:
    """The donor a gift counts for: its address within the organisation, else itself."""
    who = f"{org}:{email.lower()}" if email else f"{org}:donation:{donation_id}"
    return hashlib.sha256(who.encode()).digest()


def _add_to_page(page: str, amount: str, donations: str) -> str:
    """A CTE's statement adding to the shard row of the fundraiser or team (``page``) that
    the gift names, if it names one: ``amount`` and ``donations`` are SQL expressions."""
    return f"""
    insert into {page}_totals ({page}_id, currency, shard, organization_id, campaign_id,
        raised_minor, donations)
    select %({page})s, %(currency)s, %(page_shard)s, %(org)s, %(campaign)s, {amount},
        {donations}
    where %({page})s::bigint is not null
    on conflict ({page}_id, currency, shard) do update set
        raised_minor = {page}_totals.raised_minor + excluded.raised_minor,
        donations = {page}_totals.donations + excluded.donations, updated_at = now()"""


COUNT = f"""
with donor as (
    insert into campaign_donors (campaign_id, donor, first_donation_id)
    values (%(campaign)s, %(donor)s, %(id)s) on conflict do nothing returning 1
), campaign as (
    insert into campaign_totals (campaign_id, currency, shard, organization_id, raised_minor,
        donations, donors)
    values (%(campaign)s, %(currency)s, %(shard)s, %(org)s, %(amount)s, 1,
        (select count(*) from donor))
    on conflict (campaign_id, currency, shard) do update set
        raised_minor = campaign_totals.raised_minor + excluded.raised_minor,
        donations = campaign_totals.donations + 1,
        donors = campaign_totals.donors + excluded.donors, updated_at = now()
), fundraiser as ({_add_to_page("fundraiser", "%(amount)s", "1")}
), team as ({_add_to_page("team", "%(amount)s", "1")}
), open_matches as (
    -- campaign_matches_campaign_idx; a campaign has a handful of matches at most.
    select id, organization_id from campaign_matches
    where campaign_id = %(campaign)s and starts_at is not null and starts_at <= %(at)s
        and (ends_at is null or %(at)s < ends_at)
), match_donor as (
    insert into match_donors (match_id, donor) select id, %(donor)s from open_matches
    on conflict do nothing returning match_id
)
insert into match_totals (match_id, shard, organization_id, raised_minor, donations, donors)
select m.id, %(shard)s, m.organization_id, %(amount)s, 1, (d.match_id is not null)::int
from open_matches m left join match_donor d on d.match_id = m.id
on conflict (match_id, shard) do update set
    raised_minor = match_totals.raised_minor + excluded.raised_minor,
    donations = match_totals.donations + 1,
    donors = match_totals.donors + excluded.donors
"""


async def count(conn: Conn, gift: Gift) -> None:
    """Add a succeeded gift to every rollup it belongs to (inside the caller's transaction)."""
    await conn.execute(
        COUNT,
        {
            "id": gift.id,
            "org": gift.organization_id,
            "campaign": gift.campaign_id,
            "currency": gift.currency,
            "amount": gift.amount,
            "shard": gift.id % SHARDS,
            "page_shard": gift.id % PAGE_SHARDS,
            "fundraiser": gift.fundraiser_id,
            "team": gift.team_id,
            "at": gift.created_at,
            "donor": donor_key(gift.organization_id, gift.email, gift.id),
        },
    )


# Upserts, not updates: the gift may have been counted in another shard (a batch's), whose
# row this shard need not have.
UNCOUNT = f"""
with campaign as (
    insert into campaign_totals (campaign_id, currency, shard, organization_id, raised_minor,
        donations, donors)
    values (%(campaign)s, %(currency)s, %(shard)s, %(org)s, %(less)s, %(fewer)s, 0)
    on conflict (campaign_id, currency, shard) do update set
        raised_minor = campaign_totals.raised_minor + excluded.raised_minor,
        donations = campaign_totals.donations + excluded.donations, updated_at = now()
), fundraiser as ({_add_to_page("fundraiser", "%(less)s", "%(fewer)s")}
), team as ({_add_to_page("team", "%(less)s", "%(fewer)s")}
)
insert into match_totals (match_id, shard, organization_id, raised_minor, donations, donors)
select m.id, %(shard)s, m.organization_id, %(less)s, %(fewer)s, 0
from campaign_matches m
where m.campaign_id = %(campaign)s and m.starts_at is not null and m.starts_at <= %(at)s
    and (m.ends_at is null or %(at)s < m.ends_at)
on conflict (match_id, shard) do update set
    raised_minor = match_totals.raised_minor + excluded.raised_minor,
    donations = match_totals.donations + excluded.donations
"""


async def uncount(conn: Conn, gift: Gift, amount: int, *, whole: bool) -> None:
    """Take ``amount`` of a refunded gift back out of the sums ``count`` added it to (inside
    the caller's transaction); ``whole`` (a full refund) also takes the gift out of the
    donation counts. Donor counts stay: the donor gave."""
    await conn.execute(
        UNCOUNT,
        {
            "org": gift.organization_id,
            "campaign": gift.campaign_id,
            "currency": gift.currency,
            "less": -amount,
            "fewer": -int(whole),
            "shard": gift.id % SHARDS,
            "page_shard": gift.id % PAGE_SHARDS,
            "fundraiser": gift.fundraiser_id,
            "team": gift.team_id,
            "at": gift.created_at,
        },
    )


async def uncount_donation(conn: Conn, donation_id: int, amount: int, *, whole: bool) -> None:
    """``uncount`` for a refund of donation ``donation_id`` (read here): what the refund
    path calls, in its transaction, instead of touching ``campaign_totals`` alone, so that
    fundraisers, teams and windowed matches give the refund back too."""
    cur = await conn.execute(
        "select id, organization_id, campaign_id, amount_minor, currency, email, created_at,"
        " fundraiser_id, team_id from donations where id = %s",
        [donation_id],
    )
    row = await cur.fetchone()
    if row is None:
        return
    await uncount(conn, Gift(*row), amount, whole=whole)


# -- a batch of gifts --------------------------------------------------------------------------
# A batch's transaction adds many gifts, all in one shard drawn for the batch (see the module
# docstring). Gift by gift, two batches would lock rows in different orders and deadlock; so
# a batch sums its increments per row first and writes each table once, its rows sorted by
# key, in the order a single gift writes them (donors, campaign, fundraisers, teams,
# matches). Every transaction then takes its row locks in one global order, and none waits
# in a cycle.

_DONORS = """
insert into campaign_donors (campaign_id, donor, first_donation_id)
select * from unnest(%s::bigint[], %s::bytea[], %s::bigint[]) order by 1, 2
on conflict do nothing returning campaign_id, donor
"""
_CAMPAIGN = """
insert into campaign_totals (campaign_id, currency, shard, organization_id, raised_minor,
    donations, donors)
select * from unnest(%s::bigint[], %s::text[], %s::smallint[], %s::bigint[], %s::bigint[],
    %s::bigint[], %s::bigint[]) order by 1, 2, 3
on conflict (campaign_id, currency, shard) do update set
    raised_minor = campaign_totals.raised_minor + excluded.raised_minor,
    donations = campaign_totals.donations + excluded.donations,
    donors = campaign_totals.donors + excluded.donors, updated_at = now()
"""
_PAGES = """
insert into {table} ({key}, currency, shard, organization_id, campaign_id, raised_minor,
    donations)
select * from unnest(%s::bigint[], %s::text[], %s::smallint[], %s::bigint[], %s::bigint[],
    %s::bigint[], %s::bigint[]) order by 1, 2, 3
on conflict ({key}, currency, shard) do update set
    raised_minor = {table}.raised_minor + excluded.raised_minor,
    donations = {table}.donations + excluded.donations, updated_at = now()
"""
_OPEN_MATCHES = """
select id, organization_id, campaign_id, starts_at, ends_at from campaign_matches
where campaign_id = any(%s) and starts_at is not null
"""
_MATCH_DONORS = """
insert into match_donors (match_id, donor)
select * from unnest(%s::bigint[], %s::bytea[]) order by 1, 2
on conflict do nothing returning match_id, donor
"""
_MATCHES = """
insert into match_totals (match_id, shard, organization_id, raised_minor, donations, donors)
select * from unnest(%s::bigint[], %s::smallint[], %s::bigint[], %s::bigint[], %s::bigint[],
    %s::bigint[]) order by 1, 2
on conflict (match_id, shard) do update set
    raised_minor = match_totals.raised_minor + excluded.raised_minor,
    donations = match_totals.donations + excluded.donations,
    donors = match_totals.donors + excluded.donors
"""


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


async def count_many(conn: Conn, gifts: list[Gift]) -> None:
    """``count`` for a batch of succeeded gifts, deadlock-free (see above): the same rows
    end with the same values as if each gift had been counted alone."""
    if not gifts:
        return
    gifts = sorted(gifts, key=lambda g: g.id)
    shard, page_shard = random.randrange(SHARDS), random.randrange(PAGE_SHARDS)
    donors = {g.id: donor_key(g.organization_id, g.email, g.id) for g in gifts}
    # The first gift of each (campaign, donor) in the batch is the one that may be new.
    first: dict[tuple[int, bytes], Gift] = {}
    for g in gifts:
        first.setdefault((g.campaign_id, donors[g.id]), g)
    cur = await conn.execute(
        _DONORS,
        _columns([(c, d, g.id) for (c, d), g in sorted(first.items(), key=lambda kv: kv[0])]),
    )
    new = {(row[0], bytes(row[1])) for row in await cur.fetchall()}
    new_by_gift = {g.id for key, g in first.items() if key in new}

    campaign: dict[tuple[int, str, int], list[int]] = {}
    for g in gifts:
        row = campaign.setdefault((g.campaign_id, g.currency, shard), [g.organization_id, 0, 0, 0])
        row[1] += g.amount
        row[2] += 1
        row[3] += int(g.id in new_by_gift)
    await conn.execute(
        _CAMPAIGN, _columns([(*key, *values) for key, values in sorted(campaign.items())])
    )
    for kind, attribute, key_column in (
        ("fundraiser_totals", "fundraiser_id", "fundraiser_id"),
        ("team_totals", "team_id", "team_id"),
    ):
        pages: dict[tuple[int, str, int], list[int]] = {}
        for g in gifts:
            page_id = getattr(g, attribute)
            if page_id is None:
                continue
            row = pages.setdefault(
                (page_id, g.currency, page_shard), [g.organization_id, g.campaign_id, 0, 0]
            )
            row[2] += g.amount
            row[3] += 1
        if pages:
            query = sql.SQL(_PAGES).format(
                table=sql.Identifier(kind), key=sql.Identifier(key_column)
            )
            await conn.execute(
                query, _columns([(*key, *values) for key, values in sorted(pages.items())])
            )
    await _count_matches(conn, gifts, donors, shard)


async def _count_matches(
    conn: Conn, gifts: list[Gift], donors: dict[int, bytes], shard: int
) -> None:
    cur = await conn.execute(_OPEN_MATCHES, [sorted({g.campaign_id for g in gifts})])
    matches = await cur.fetchall()
    if not matches:
        return
    counted: list[tuple[int, int, Gift]] = []  # (match id, its organisation, gift)
    for match_id, org, campaign_id, starts_at, ends_at in matches:
        for g in gifts:
            made = g.created_at
            if (
                g.campaign_id == campaign_id
                and starts_at <= made
                and (ends_at is None or made < ends_at)
            ):
                counted.append((match_id, org, g))
    if not counted:
        return
    first: dict[tuple[int, bytes], int] = {}
    for match_id, _, g in counted:
        first.setdefault((match_id, donors[g.id]), g.id)
    cur = await conn.execute(_MATCH_DONORS, _columns(sorted(first)))
    new = {(row[0], bytes(row[1])) for row in await cur.fetchall()}
    new_by = {(m, gift_id) for (m, d), gift_id in first.items() if (m, d) in new}
    totals: dict[tuple[int, int], list[int]] = {}
    for match_id, org, g in counted:
        row = totals.setdefault((match_id, shard), [org, 0, 0, 0])
        row[1] += g.amount
        row[2] += 1
        row[3] += int((match_id, g.id) in new_by)
    await conn.execute(
        _MATCHES, _columns([(*key, *values) for key, values in sorted(totals.items())])
    )
