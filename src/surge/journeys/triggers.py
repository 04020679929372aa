"""Triggers: how contacts enter journeys, in batches, each trigger read once.

- **Event**: a consumer of the events stream (``ingest/consumers.py``: exactly once, in
  (xid, id) order); each batch enrols the contacts its events name, by id or address, in
  the running journeys of their organisation and type, received since first activation.
- **Joined a list** and **donation succeeded**: a keyset cursor per journey over
  ``list_members (confirmed_at, contact_id)`` and ``donations (succeeded_at, id)``, moved in
  the transaction that enrols (``journey_cursors``). A row's time is its writer's ``now()``,
  the start of its transaction, so rows commit out of time order; a batch reads only rows
  older than the oldest transaction still open (``store.HORIZON``), which nothing can
  overtake any more.
- **Date**: once per UTC day per journey (``journey_cursors.last_day``), one INSERT … SELECT
  of the contacts whose date comes round.

Journeys enrol while active or paused (a paused journey holds its contacts, it does not
lose them); a trigger read twice (a replay, a retried job) enrols nobody twice, because an
enrolment remembers the trigger time it entered by.
"""

from __future__ import annotations

import calendar
import logging
import random
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import msgspec
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from surge.ingest.consumers import Consumer
from surge.ingest.store import Event
from surge.journeys import steps, store
from surge.journeys.runner import definition
from surge.journeys.schemas import (
    DateReached,
    DonationSucceeded,
    EventArrived,
    JoinedList,
    Trigger,
)
from surge.journeys.store import Conn, JourneyRow

log = logging.getLogger(__name__)

#: Rows a list or donation trigger reads per batch (one transaction).
BATCH_SIZE = 5000
#: Seconds one trigger job keeps reading before it leaves the rest to the next one.
RUN_BUDGET = 10.0
ENROLLING = ("active", "paused")

_trigger = msgspec.json.Decoder(Trigger)


async def _enrol(conn: Conn, row: JourneyRow, source: sql.Composable) -> int:
    """Enrol ``source``'s (contact, time) rows in ``row``'s journey, counting them in."""
    journey = definition(row)
    entered = await store.enrol(
        conn, row.id, row.organization_id, row.reentry, steps.delay(journey.steps, 0), source
    )
    if entered:
        shard = random.randrange(store.SHARDS)
        await store.add_stats(conn, row.organization_id, row.id, shard, {0: [entered, 0, 0]})
    return entered


# -- list and donation cursors ---------------------------------------------------------------


async def read_batch(conn: Conn, row: JourneyRow, limit: int) -> int | None:
    """Read and enrol the next batch of ``row``'s list or donation trigger; the rows read,
    or None if another reader holds the journey's cursor."""
    async with conn.transaction():
        cursor = await store.lock_cursor(conn, row.id)
        if cursor is None:
            return None
        if await store.share_status(conn, row.id) not in ENROLLING:
            return 0
        horizon = await store.horizon(conn)
        trigger = _trigger.decode(row.trigger)
        org = row.organization_id
        if isinstance(trigger, JoinedList):
            members = await store.joined(conn, org, trigger.list_id, cursor, horizon, limit)
            if not members:
                return 0
            ids, times = [m[0] for m in members], [m[1] for m in members]
            read, last_at, last_id = len(members), members[-1][1], members[-1][0]
        else:
            assert isinstance(trigger, DonationSucceeded)
            filters = {
                "campaign": trigger.campaign_id,
                "min": trigger.min_amount,
                "currency": trigger.currency,
            }
            found = await store.donations(conn, org, cursor, horizon, filters, limit)
            if not found:
                return 0
            # A donor who is not a contact enters nothing; the cursor moves past them.
            ids = [d.contact_id for d in found if d.contact_id is not None]
            times = [d.succeeded_at for d in found if d.contact_id is not None]
            read, last_at, last_id = len(found), found[-1].succeeded_at, found[-1].id
        if ids:
            await _enrol(conn, row, store.from_arrays(ids, times))
        await store.move_cursor(conn, row.id, last_at, last_id)
        return read


async def read_cursors(
    pool: AsyncConnectionPool, *, limit: int = BATCH_SIZE, budget: float = RUN_BUDGET
) -> int:
    """Every running list and donation journey's trigger, in batches while they come
    full (or until ``budget`` seconds); returns the rows read."""
    async with pool.connection() as conn:
        pending = await store.running(conn, ("list", "donation"), ENROLLING)
    deadline = time.monotonic() + budget
    total = 0
    while pending:
        full = []
        for row in pending:
            async with pool.connection() as conn:
                read = await read_batch(conn, row, limit)
            total += read or 0
            if read == limit:
                full.append(row)
        if time.monotonic() > deadline:
            break
        pending = full
    return total


# -- dates -----------------------------------------------------------------------------------


def days_matching(day: date) -> list[str]:
    """The 'MM-DD' that come round on ``day``: 29 February's on 28 February when the year
    has none."""
    found = [day.strftime("%m-%d")]
    if day.month == 2 and day.day == 28 and not calendar.isleap(day.year):
        found.append("02-29")
    return found


def dated_contacts(trigger: DateReached, org: int, today: date) -> sql.Composable:
    """(contact id, the date as a time) of ``org``'s contacts whose date comes round today
    (``days_before`` ahead). Attribute values are compared as text ('YYYY-MM-DD…'), so an
    attribute that is not a date matches nothing and fails nothing."""
    day = today + timedelta(days=trigger.days_before)
    stamp = sql.Literal(datetime(day.year, day.month, day.day, tzinfo=UTC))
    if trigger.first_donation:
        return sql.SQL(
            "select c.id, {stamp} from contacts c join ("
            " select lower(d.email) as email from donations d"
            " where d.organization_id = {org} and d.status = 'succeeded'"
            " group by lower(d.email)"
            " having to_char(min(d.succeeded_at) at time zone 'UTC', 'MM-DD') = any({days})"
            " and min(d.succeeded_at) < {year}) f on lower(c.email) = f.email"
            " where c.organization_id = {org}"
        ).format(
            stamp=stamp,
            org=sql.Literal(org),
            days=sql.Literal(days_matching(day)),
            year=sql.Literal(datetime(day.year, 1, 1, tzinfo=UTC)),
        )
    assert trigger.attribute is not None
    value = sql.SQL("(c.attributes ->> {})").format(sql.Literal(trigger.attribute))
    match: sql.Composable
    if trigger.annual:
        match = sql.SQL(
            "{v} ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}' and substr({v}, 6, 5) = any({d})"
        ).format(v=value, d=sql.Literal(days_matching(day)))
    else:
        match = sql.SQL("left({}, 10) = {}").format(value, sql.Literal(day.isoformat()))
    return sql.SQL("select c.id, {} from contacts c where c.organization_id = {} and {}").format(
        stamp, sql.Literal(org), match
    )


async def enrol_dates(pool: AsyncConnectionPool, today: date) -> int:
    """Enrol today's contacts in every running date journey not yet run today."""
    async with pool.connection() as conn:
        rows = await store.running(conn, ("date",), ENROLLING)
    total = 0
    for row in rows:
        async with pool.connection() as conn, conn.transaction():
            cursor = await store.lock_cursor(conn, row.id)
            if cursor is None or (cursor.last_day is not None and cursor.last_day >= today):
                continue
            if await store.share_status(conn, row.id) not in ENROLLING:
                continue
            trigger = _trigger.decode(row.trigger)
            assert isinstance(trigger, DateReached)
            source = dated_contacts(trigger, row.organization_id, today)
            total += await _enrol(conn, row, source)
            await store.set_last_day(conn, row.id, today)
    return total


# -- events ------------------------------------------------------------------------------------


def _resolved(org: int, events: list[Event]) -> sql.Composable:
    """(contact id, received at) of the organisation's contacts the events name: by id, or
    by address (two index lookups each, never a scan)."""
    ids = [e.contact_id for e in events if e.contact_id is not None]
    id_times = [e.received_at for e in events if e.contact_id is not None]
    emails = [(e.contact_email or "").lower() for e in events if e.contact_id is None]
    email_times = [e.received_at for e in events if e.contact_id is None]
    return sql.SQL(
        "select c.id, v.at from unnest({ids}::bigint[], {id_times}::timestamptz[]) v(id, at)"
        " join contacts c on c.organization_id = {org} and c.id = v.id"
        " union all"
        " select c.id, v.at from unnest({emails}::text[], {email_times}::timestamptz[])"
        " v(email, at) join contacts c on c.organization_id = {org} and lower(c.email) = v.email"
    ).format(
        ids=sql.Literal(ids),
        id_times=sql.Literal(id_times),
        org=sql.Literal(org),
        emails=sql.Literal(emails),
        email_times=sql.Literal(email_times),
    )


async def enrol_from_events(conn: Conn, events: list[Event]) -> None:
    """The consumer's handler: enrol the contacts of a batch of events, in its transaction."""
    journeys = await store.running(conn, ("event",), ENROLLING)
    if not journeys:
        return
    wanted: dict[tuple[int, str], list[JourneyRow]] = defaultdict(list)
    for row in journeys:
        trigger = _trigger.decode(row.trigger)
        assert isinstance(trigger, EventArrived)
        wanted[(row.organization_id, trigger.type)].append(row)
    matched: dict[int, list[Event]] = defaultdict(list)
    for event in events:
        if event.contact_id is None and not event.contact_email:
            continue
        for row in wanted.get((event.organization_id, event.type), ()):
            if row.activated_at is not None and event.received_at >= row.activated_at:
                matched[row.id].append(event)
    by_id = {row.id: row for row in journeys}
    for journey_id, mine in matched.items():
        row = by_id[journey_id]
        await _enrol(conn, row, _resolved(row.organization_id, mine))


JOURNEY_EVENTS = Consumer("journeys", enrol_from_events, payload=False)
