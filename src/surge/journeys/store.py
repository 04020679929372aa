"""SQL of journeys: the definitions, trigger cursors, enrolments and the per-step rollup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import args_row, class_row

Conn = AsyncConnection[Any]

COLUMNS = (
    "id, organization_id, name, status, trigger::text as trigger, steps::text as steps,"
    " exit_rules::text as exit_rules, reentry, trigger_kind, activated_at, created_at,"
    " updated_at, last_error, last_error_at"
)
#: Shards of each step's counters (journey_step_stats.shard).
SHARDS = 8


@dataclass(frozen=True, slots=True)
class JourneyRow:
    id: int
    organization_id: int
    name: str
    status: str
    #: The definition as JSON text, decoded by the service into the schema types.
    trigger: str
    steps: str
    exit_rules: str
    reentry: bool
    trigger_kind: str
    activated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_error: str | None
    last_error_at: datetime | None


async def insert(conn: Conn, org: int, values: dict[str, Any]) -> JourneyRow:
    cur = conn.cursor(row_factory=class_row(JourneyRow))
    await cur.execute(
        "insert into journeys (organization_id, name, trigger, steps, exit_rules, reentry,"
        " trigger_kind) values (%(org)s, %(name)s, %(trigger)s::jsonb, %(steps)s::jsonb,"
        f" %(exit_rules)s::jsonb, %(reentry)s, %(trigger_kind)s) returning {COLUMNS}",
        {"org": org, **values},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def get(conn: Conn, org: int, journey_id: int, *, lock: bool = False) -> JourneyRow | None:
    """A journey of ``org``; ``lock`` holds its row until the transaction ends (for updates)."""
    cur = conn.cursor(row_factory=class_row(JourneyRow))
    await cur.execute(
        f"select {COLUMNS} from journeys where organization_id = %s and id = %s"
        + (" for update" if lock else ""),
        [org, journey_id],
    )
    return await cur.fetchone()


async def update(conn: Conn, org: int, journey_id: int, values: dict[str, Any]) -> JourneyRow:
    """Set the given columns (None: unchanged) of a journey the caller has locked."""
    cur = conn.cursor(row_factory=class_row(JourneyRow))
    await cur.execute(
        "update journeys set name = coalesce(%(name)s, name),"
        " trigger = coalesce(%(trigger)s::jsonb, trigger),"
        " steps = coalesce(%(steps)s::jsonb, steps),"
        " exit_rules = coalesce(%(exit_rules)s::jsonb, exit_rules),"
        " reentry = coalesce(%(reentry)s, reentry),"
        " trigger_kind = coalesce(%(trigger_kind)s, trigger_kind), updated_at = now()"
        f" where organization_id = %(org)s and id = %(id)s returning {COLUMNS}",
        {"org": org, "id": journey_id, **values},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def set_status(conn: Conn, journey_id: int, status: str) -> None:
    """Move a journey (locked by the caller) to ``status``; the first activation is stamped."""
    await conn.execute(
        "update journeys set status = %(s)s, updated_at = now(),"
        " activated_at = case when %(s)s = 'active' then coalesce(activated_at, now())"
        " else activated_at end where id = %(id)s",
        {"s": status, "id": journey_id},
    )


async def page(conn: Conn, org: int, after: int, limit: int) -> list[JourneyRow]:
    cur = conn.cursor(row_factory=class_row(JourneyRow))
    await cur.execute(
        f"select {COLUMNS} from journeys where organization_id = %s and id > %s"
        " order by id limit %s",
        [org, after, limit],
    )
    return await cur.fetchall()


async def running(conn: Conn, kinds: Sequence[str], statuses: Sequence[str]) -> list[JourneyRow]:
    """Journeys of any organisation with a trigger of ``kinds`` in ``statuses``."""
    cur = conn.cursor(row_factory=class_row(JourneyRow))
    await cur.execute(
        f"select {COLUMNS} from journeys where trigger_kind = any(%s)"
        " and status = any(%s) order by id",
        [list(kinds), list(statuses)],
    )
    return await cur.fetchall()


async def share_status(conn: Conn, journey_id: int) -> str | None:
    """The journey's status, its row share-locked until the transaction ends: a pause or an
    archive waits for the batches running, and no batch starts on a stale status."""
    cur = await conn.execute("select status from journeys where id = %s for share", [journey_id])
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def record_error(conn: Conn, journey_id: int, error: str | None) -> None:
    await conn.execute(
        "update journeys set last_error = %s,"
        " last_error_at = case when %s::text is null then last_error_at else now() end"
        " where id = %s",
        [error, error, journey_id],
    )


# -- trigger cursors --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    journey_id: int
    at: datetime
    id: int
    last_day: date | None


async def start_cursor(conn: Conn, journey_id: int, yesterday: date) -> None:
    """Triggers read from now on (list, donation) and from today (date); kept if it exists."""
    await conn.execute(
        "insert into journey_cursors (journey_id, at, last_day) values (%s, now(), %s)"
        " on conflict (journey_id) do nothing",
        [journey_id, yesterday],
    )


async def lock_cursor(conn: Conn, journey_id: int) -> Cursor | None:
    """The journey's cursor, locked until the transaction ends; None if another reader has it."""
    cur = conn.cursor(row_factory=class_row(Cursor))
    await cur.execute(
        "select journey_id, at, id, last_day from journey_cursors where journey_id = %s"
        " for update skip locked",
        [journey_id],
    )
    return await cur.fetchone()


async def move_cursor(conn: Conn, journey_id: int, at: datetime, last_id: int) -> None:
    await conn.execute(
        "update journey_cursors set at = %s, id = %s where journey_id = %s",
        [at, last_id, journey_id],
    )


async def set_last_day(conn: Conn, journey_id: int, day: date) -> None:
    await conn.execute(
        "update journey_cursors set last_day = %s where journey_id = %s", [day, journey_id]
    )


# Rows older than the oldest transaction still open can no longer appear: a row's time is
# its writer's now(), i.e. the start of that transaction. Client backends only (autovacuum
# writes no list members); a margin covers a transaction that has taken its start time but
# not yet published it.
HORIZON = """
select least(now(), coalesce(min(xact_start), now())) - interval '2 seconds'
from pg_stat_activity
where datname = current_database() and backend_type = 'client backend'
  and xact_start is not null and pid <> pg_backend_pid()
"""


async def horizon(conn: Conn) -> datetime:
    """Rows stamped before this time are all committed (see HORIZON)."""
    cur = await conn.execute(HORIZON)
    row = await cur.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


# list_members_joined_idx (0025): one list's members in (confirmed_at, contact_id) order.
JOINED = """
select contact_id, confirmed_at from list_members
where organization_id = %(org)s and list_id = %(list)s and confirmed_at is not null
  and (confirmed_at, contact_id) > (%(at)s, %(id)s) and confirmed_at < %(horizon)s
order by confirmed_at, contact_id limit %(limit)s
"""


async def joined(
    conn: Conn, org: int, list_id: int, cursor: Cursor, before: datetime, limit: int
) -> list[tuple[int, datetime]]:
    """Members who joined ``list_id`` after the cursor and before ``before``, in order."""
    cur = await conn.execute(
        JOINED,
        {
            "org": org,
            "list": list_id,
            "at": cursor.at,
            "id": cursor.id,
            "horizon": before,
            "limit": limit,
        },
    )
    return [(int(r[0]), r[1]) for r in await cur.fetchall()]


@dataclass(frozen=True, slots=True)
class Donation:
    id: int
    succeeded_at: datetime
    #: The organisation's contact with the donor's address, if there is one.
    contact_id: int | None


# donations_succeeded_idx (0025) for the range; contacts_organization_email_key for the donor.
DONATIONS = """
select d.id, d.succeeded_at, c.id as contact_id from donations d
left join contacts c on c.organization_id = d.organization_id and lower(c.email) = lower(d.email)
where d.organization_id = %(org)s and d.succeeded_at is not null
  and (d.succeeded_at, d.id) > (%(at)s, %(id)s) and d.succeeded_at < %(horizon)s
  and (%(campaign)s::bigint is null or d.campaign_id = %(campaign)s)
  and d.amount_minor >= %(min)s and (%(currency)s::text is null or d.currency = %(currency)s)
order by d.succeeded_at, d.id limit %(limit)s
"""


async def donations(
    conn: Conn, org: int, cursor: Cursor, before: datetime, filters: dict[str, Any], limit: int
) -> list[Donation]:
    """Donations that succeeded after the cursor and before ``before``, with their donor."""
    cur = conn.cursor(row_factory=class_row(Donation))
    await cur.execute(
        DONATIONS,
        {"org": org, "at": cursor.at, "id": cursor.id, "horizon": before, "limit": limit} | filters,
    )
    return await cur.fetchall()


# -- enrolments -----------------------------------------------------------------------------

# One statement enrols a batch: new rows, or (re-entry allowed) a finished row of an earlier
# entry made active again, but only for a newer trigger than the one it entered by, so a
# trigger read twice enrols nobody twice. A contact twice in the source enters once.
ENROL = """
insert into journey_enrolments as e
    (journey_id, contact_id, organization_id, next_run_at, triggered_at)
select {journey}, t.contact_id, {org}, now() + {delay} * interval '1 second', t.at
from (select distinct on (contact_id) contact_id, at from ({source}) s(contact_id, at)
      order by contact_id, at) t
on conflict (journey_id, contact_id) do update set
    step = 0, state = 'active', entries = e.entries + 1, triggered_at = excluded.triggered_at,
    entered_at = now(), next_run_at = excluded.next_run_at, exit_reason = null,
    updated_at = now()
where {reentry} and e.state <> 'active' and excluded.triggered_at > e.triggered_at
"""
FROM_ARRAYS = sql.SQL("select * from unnest({}::bigint[], {}::timestamptz[])")


async def enrol(
    conn: Conn, journey_id: int, org: int, reentry: bool, delay: int, source: sql.Composable
) -> int:
    """Enrol the contacts of ``source`` (a query of (contact_id, triggered_at) rows) at
    step 0, due in ``delay`` seconds; returns how many entered."""
    query = sql.SQL(ENROL).format(
        journey=sql.Literal(journey_id),
        org=sql.Literal(org),
        delay=sql.Literal(delay),
        source=source,
        reentry=sql.Literal(reentry),
    )
    cur = await conn.execute(query)
    return cur.rowcount


def from_arrays(contact_ids: list[int], times: list[datetime]) -> sql.Composable:
    return FROM_ARRAYS.format(sql.Literal(contact_ids), sql.Literal(times))


@dataclass(frozen=True, slots=True)
class Claimed:
    """An enrolment the runner holds for this batch."""

    contact_id: int
    step: int
    entries: int
    entered_at: datetime


# journey_enrolments_due_idx: this journey's active enrolments, due first.
CLAIM = """
select contact_id, step, entries, entered_at from journey_enrolments
where journey_id = %s and state = 'active' and next_run_at <= now()
order by next_run_at limit %s
for update skip locked
"""


async def claim(conn: Conn, journey_id: int, limit: int) -> list[Claimed]:
    cur = conn.cursor(row_factory=args_row(Claimed))
    await cur.execute(CLAIM, [journey_id, limit])
    return await cur.fetchall()


MOVE = """
update journey_enrolments e set step = v.step, state = v.state,
    next_run_at = now() + v.delay * interval '1 second', exit_reason = v.reason,
    updated_at = now()
from unnest(%s::bigint[], %s::smallint[], %s::text[], %s::integer[], %s::text[])
    as v(contact_id, step, state, delay, reason)
where e.journey_id = %s and e.contact_id = v.contact_id
"""


@dataclass(slots=True)
class Moves:
    """Where each enrolment of a batch ends up, written with one statement."""

    contact_ids: list[int]
    steps: list[int]
    states: list[str]
    delays: list[int]
    reasons: list[str | None]


async def move(conn: Conn, journey_id: int, moves: Moves) -> None:
    await conn.execute(
        MOVE,
        [moves.contact_ids, moves.steps, moves.states, moves.delays, moves.reasons, journey_id],
    )


async def exit_active(conn: Conn, journey_id: int, reason: str, limit: int) -> dict[int, int]:
    """Up to ``limit`` active enrolments leave (archive); returns how many left per step."""
    cur = await conn.execute(
        "with gone as (update journey_enrolments e set state = 'exited', exit_reason = %s,"
        " updated_at = now() from (select contact_id from journey_enrolments"
        "  where journey_id = %s and state = 'active' limit %s for update) s"
        " where e.journey_id = %s and e.contact_id = s.contact_id returning e.step)"
        " select step, count(*) from gone group by step",
        [reason, journey_id, limit, journey_id],
    )
    return {int(r[0]): int(r[1]) for r in await cur.fetchall()}


@dataclass(frozen=True, slots=True)
class EnrolmentRow:
    contact_id: int
    step: int
    state: str
    next_run_at: datetime | None
    entries: int
    entered_at: datetime
    updated_at: datetime
    exit_reason: str | None


async def enrolments(
    conn: Conn, org: int, journey_id: int, state: str | None, after: int, limit: int
) -> list[EnrolmentRow]:
    """One keyset page of a journey's enrolments (its primary key), optionally of one state."""
    cur = conn.cursor(row_factory=class_row(EnrolmentRow))
    await cur.execute(
        "select contact_id, step, state,"
        " case when state = 'active' then next_run_at end as next_run_at, entries,"
        " entered_at, updated_at, exit_reason from journey_enrolments"
        " where journey_id = %s and organization_id = %s and contact_id > %s"
        " and (%s::text is null or state = %s) order by contact_id limit %s",
        [journey_id, org, after, state, state, limit],
    )
    return await cur.fetchall()


# -- set-based reads the steps and exit rules make over a batch -------------------------------


async def matching(
    conn: Conn, org: int, contact_ids: list[int], predicate: sql.Composable
) -> set[int]:
    """Those of ``contact_ids`` for whom ``predicate`` (over ``contacts c``) holds."""
    query = sql.SQL(
        "select c.id from contacts c where c.organization_id = {} and c.id = any({}) and {}"
    ).format(sql.Literal(org), sql.Literal(contact_ids), predicate)
    cur = await conn.execute(query)
    return {int(r[0]) for r in await cur.fetchall()}


# The range of donations_succeeded_idx from the batch's earliest entry, hash-joined to the
# batch's addresses (uncorrelated: one scan of the range, not one per enrolment), then each
# donation compared with its enrolment's entry.
DONATED_SINCE_ENTRY = """
select distinct e.contact_id from journey_enrolments e
join contacts c on c.organization_id = e.organization_id and c.id = e.contact_id
join donations d on d.organization_id = %(org)s and lower(d.email) = lower(c.email)
  and d.succeeded_at >= %(since)s and d.status = 'succeeded'
  and (%(campaign)s::bigint is null or d.campaign_id = %(campaign)s)
where e.journey_id = %(journey)s and e.contact_id = any(%(ids)s)
  and d.succeeded_at >= e.entered_at
"""


async def donated_since_entry(
    conn: Conn,
    org: int,
    journey_id: int,
    contact_ids: list[int],
    since: datetime,
    campaign_id: int | None,
) -> set[int]:
    """Those of ``contact_ids`` with a succeeded donation after they entered the journey."""
    cur = await conn.execute(
        DONATED_SINCE_ENTRY,
        {
            "journey": journey_id,
            "ids": contact_ids,
            "org": org,
            "since": since,
            "campaign": campaign_id,
        },
    )
    return {int(r[0]) for r in await cur.fetchall()}


@dataclass(frozen=True, slots=True)
class Person:
    id: int
    email: str
    first_name: str | None
    last_name: str | None


async def people(conn: Conn, org: int, contact_ids: list[int]) -> list[Person]:
    cur = conn.cursor(row_factory=class_row(Person))
    await cur.execute(
        "select id, email, first_name, last_name from contacts"
        " where organization_id = %s and id = any(%s) order by id",
        [org, contact_ids],
    )
    return await cur.fetchall()


# -- send steps' messages -------------------------------------------------------------------


async def journey_message(conn: Conn, journey_id: int, step: int, generation: int) -> int | None:
    cur = await conn.execute(
        "select message_id from journey_messages"
        " where journey_id = %s and step = %s and generation = %s",
        [journey_id, step, generation],
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def lock_journey_message(conn: Conn, journey_id: int, step: int, generation: int) -> None:
    """Serialise the creation of one step's message for one generation (transaction lock)."""
    await conn.execute(
        "select pg_advisory_xact_lock(hashtextextended(%s, 0))",
        [f"journey_message:{journey_id}:{step}:{generation}"],
    )


async def add_journey_message(
    conn: Conn, org: int, journey_id: int, step: int, generation: int, message_id: int
) -> None:
    await conn.execute(
        "insert into journey_messages (journey_id, step, generation, organization_id,"
        " message_id) values (%s, %s, %s, %s, %s)",
        [journey_id, step, generation, org, message_id],
    )


async def journey_messages(conn: Conn, journey_id: int) -> list[tuple[int, int]]:
    """(step, message id) of every message the journey's send steps made."""
    cur = await conn.execute(
        "select step, message_id from journey_messages where journey_id = %s"
        " order by step, generation",
        [journey_id],
    )
    return [(int(r[0]), int(r[1])) for r in await cur.fetchall()]


# -- per-step counts --------------------------------------------------------------------------

ADD_STATS = """
insert into journey_step_stats as s
    (journey_id, step, shard, organization_id, entered, done, exited)
select %s, v.step, %s, %s, v.entered, v.done, v.exited
from unnest(%s::smallint[], %s::bigint[], %s::bigint[], %s::bigint[])
    as v(step, entered, done, exited)
on conflict (journey_id, step, shard) do update set
    entered = s.entered + excluded.entered, done = s.done + excluded.done,
    exited = s.exited + excluded.exited
"""


async def add_stats(
    conn: Conn, org: int, journey_id: int, shard: int, counts: dict[int, list[int]]
) -> None:
    """Add ``counts`` (step → [entered, done, exited]) to one shard of the rollup."""
    if not counts:
        return
    steps = sorted(counts)
    columns = [[counts[s][i] for s in steps] for i in range(3)]
    await conn.execute(ADD_STATS, [journey_id, shard, org, steps, *columns])


async def stats(conn: Conn, journey_id: int) -> dict[int, tuple[int, int, int]]:
    """step → (entered, done, exited), summed over the shards (≤ 8 rows per step)."""
    cur = await conn.execute(
        "select step, sum(entered), sum(done), sum(exited) from journey_step_stats"
        " where journey_id = %s group by step",
        [journey_id],
    )
    return {int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in await cur.fetchall()}
