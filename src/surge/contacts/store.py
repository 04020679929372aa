"""SQL for contacts, lists, members and imports. Every statement filters by organization_id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import class_row, dict_row

from surge.fields import like_escape

Conn = AsyncConnection[Any]
Row = dict[str, Any]

CONTACT_COLUMNS = "id, email, first_name, last_name, status, attributes, created_at, updated_at"

# The one merge rule shared by POST /v1/contacts and CSV imports. ``{source}`` yields
# (ord, email, first_name, last_name, status, attributes); a null field means "not given":
# it keeps the stored value (or the default, for a new contact).
#
# Strict by default (%(resubscribe)s false): an explicit "subscribed" does not change a
# contact who unsubscribed, bounced or complained (``kept`` names those rows), and an
# address whose contact was deleted, merged away or erased, with no contact now, is not
# created again (``blocked``). With %(resubscribe)s the statuses are written as given, such
# addresses are created (their tombstones go) and list members who left the list rejoin it.
_MERGE = """
with incoming as (
    select distinct on (lower(s.email)) s.*
    from {source} as s
    order by lower(s.email), s.ord desc              -- duplicates in one batch: last wins
), blocked as (
    -- Both guards are constant, so an organisation without tombstones (nearly all) hashes
    -- nothing: a one-time filter skips the join.
    select i.ord, t.reason, coalesce(t.merged_into, t.contact_id) as contact_id
    from incoming as i
    join contact_tombstones as t
        on t.organization_id = %(org)s and t.email_hash = contact_email_hash(%(org)s, i.email)
    where not %(resubscribe)s
        and exists (select from contact_tombstones where organization_id = %(org)s)
        and not exists (
            select from contacts as e
            where e.organization_id = %(org)s and lower(e.email) = lower(i.email))
), source as (
    select i.* from incoming as i where not exists (select from blocked as b where b.ord = i.ord)
), kept as ({kept}
), merged as (
    insert into contacts as c
        (organization_id, email, first_name, last_name, status, attributes)
    select %(org)s, s.email, s.first_name, s.last_name, {status}, coalesce(s.attributes, '{{}}')
    from source as s {join}
    on conflict (organization_id, lower(email)) do update set
        email = excluded.email,
        first_name = coalesce(excluded.first_name, c.first_name),
        last_name = coalesce(excluded.last_name, c.last_name),
        status = {status_update},
        attributes = c.attributes || excluded.attributes,
        updated_at = now()
    returning c.id, c.email, (c.xmax = 0) as created
), members as (
    insert into list_members as m (organization_id, list_id, contact_id)
    select %(org)s, %(list)s, id from merged where %(list)s::bigint is not null
    on conflict (organization_id, list_id, contact_id) {rejoin}
), revived as (
    delete from contact_tombstones as t using merged
    where %(resubscribe)s and t.organization_id = %(org)s
        and t.email_hash = contact_email_hash(%(org)s, merged.email)
)
"""
# ``excluded.status`` cannot tell "not given" from the default, so when a batch gives
# statuses the stored ones are read with a join; without statuses (most imports) the join,
# a third of the merge's time, is skipped, and no status can be kept.
_WITH_STATUS = {
    "status": sql.SQL("coalesce(s.status, e.status, 'subscribed')"),
    "join": sql.SQL(
        "left join contacts as e on e.organization_id = %(org)s and lower(e.email) = lower(s.email)"
    ),
    "status_update": sql.SQL(
        "case when excluded.status = 'subscribed' and c.status <> 'subscribed'"
        " and not %(resubscribe)s then c.status else excluded.status end"
    ),
    "kept": sql.SQL(
        "select s.ord from source as s join contacts as e"
        " on e.organization_id = %(org)s and lower(e.email) = lower(s.email)"
        " where s.status = 'subscribed' and e.status <> 'subscribed' and not %(resubscribe)s"
    ),
}
_WITHOUT_STATUS = {
    "status": sql.SQL("'subscribed'"),
    "join": sql.SQL(""),
    "status_update": sql.SQL("c.status"),
    "kept": sql.SQL("select null::bigint as ord where false"),
}


# Members who left the list rejoin it only with resubscribe; otherwise an existing member
# is left alone (and unlocked: "do update … where false" would still lock the row).
_REJOIN = sql.SQL("do update set unsubscribed_at = null where m.unsubscribed_at is not null")
_KEEP_MEMBER = sql.SQL("do nothing")


def _merge(source: sql.Composable, tail: str, with_status: bool, resubscribe: bool) -> sql.Composed:
    parts = _WITH_STATUS if with_status else _WITHOUT_STATUS
    rejoin = _REJOIN if resubscribe else _KEEP_MEMBER
    return sql.SQL(_MERGE + tail).format(source=source, rejoin=rejoin, **parts)


_UNNEST = """unnest(
    %(ord)s::int[], %(email)s::text[], %(first_name)s::text[], %(last_name)s::text[],
    %(status)s::text[], %(attributes)s::jsonb[]
) as t(ord, email, first_name, last_name, status, attributes)"""


@dataclass(frozen=True, slots=True)
class Blocked:
    """A row not written: its address belonged to a contact deleted, merged away or erased."""

    ord: int
    #: deleted | merged | erased
    reason: str
    #: The contact it belonged to (merged: the one it was merged into).
    contact_id: int


@dataclass(frozen=True, slots=True)
class Merged:
    """What one merge did: the contacts written, the rows blocked, the statuses kept."""

    written: list[Row]
    blocked: list[Blocked]
    kept: list[int]


_UPSERT_TAIL = """
select 'written' as kind, id, email, created, null::bigint as ord, null as reason from merged
union all select 'blocked', contact_id, null, null, ord, reason from blocked
union all select 'kept', null, null, null, ord, null from kept
"""


async def upsert_contacts(
    conn: Conn, org: int, rows: dict[str, list[Any]], resubscribe: bool = False
) -> Merged:
    """Merge a batch given as parallel arrays: (id, email, created) per distinct email
    written, the rows blocked and the positions (``ord``) whose status was kept."""
    source = sql.SQL("(select * from {unnest})").format(unnest=sql.SQL(_UNNEST))
    with_status = any(s is not None for s in rows["status"])
    query = _merge(source, _UPSERT_TAIL, with_status, resubscribe)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, {"org": org, "list": None, "resubscribe": resubscribe, **rows})
    written, blocked, kept = [], [], []
    for r in await cur.fetchall():
        kind = r.pop("kind")
        if kind == "written":
            r.pop("ord"), r.pop("reason")
            written.append(r)
        elif kind == "blocked":
            blocked.append(Blocked(int(r["ord"]), r["reason"], int(r["id"])))
        else:
            kept.append(int(r["ord"]))
    return Merged(written, blocked, kept)


STAGING_TABLE = """
create temp table import_rows (
    ord bigint not null, email text not null, first_name text, last_name text,
    status text, attributes jsonb
) on commit drop
"""
STAGING_COPY = "copy import_rows (ord, email, first_name, last_name, status, attributes) from stdin"


_IMPORT_TAIL = """
select (select count(*) from merged),
    (select count(*) from kept),
    (select coalesce(array_agg(array[ord, contact_id] order by ord), '{{}}') from blocked),
    (select coalesce(array_agg(reason order by ord), '{{}}') from blocked)
"""


@dataclass(frozen=True, slots=True)
class StagedMerge:
    """What merging one import batch did."""

    written: int
    kept: int
    blocked: list[Blocked]


async def merge_staged(
    conn: Conn, org: int, list_id: int | None, with_status: bool, resubscribe: bool = False
) -> StagedMerge:
    """Merge the rows COPYed into ``import_rows``: contacts written, statuses kept, and
    the rows blocked (addresses deleted, merged away or erased before)."""
    query = _merge(sql.Identifier("import_rows"), _IMPORT_TAIL, with_status, resubscribe)
    cur = await conn.execute(query, {"org": org, "list": list_id, "resubscribe": resubscribe})
    row = await cur.fetchone()
    assert row is not None
    written, kept, pairs, reasons = row
    blocked = [
        Blocked(int(ord_), reason, int(contact))
        for (ord_, contact), reason in zip(pairs, reasons, strict=True)
    ]
    return StagedMerge(int(written), int(kept), blocked)


async def set_status(conn: Conn, org: int, ids: Sequence[int], status: str) -> int:
    """Uses contacts' primary key (organization_id, id); unchanged rows are not rewritten."""
    cur = await conn.execute(
        "update contacts set status = %s, updated_at = now()"
        " where organization_id = %s and id = any(%s::bigint[]) and status <> %s",
        [status, org, list(ids), status],
    )
    return cur.rowcount


async def get_contact(conn: Conn, org: int, contact_id: int) -> Row | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {CONTACT_COLUMNS} from contacts where organization_id = %s and id = %s",
        [org, contact_id],
    )
    return await cur.fetchone()


async def list_contacts(
    conn: Conn, org: int, after: int, limit: int, email: str | None
) -> list[Row]:
    """One keyset page, by the primary key (organization_id, id)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {CONTACT_COLUMNS} from contacts"
        " where organization_id = %(org)s and id > %(after)s"
        " and (%(email)s::text is null or lower(email) = lower(%(email)s::text))"
        " order by id limit %(limit)s",
        {"org": org, "after": after, "limit": limit, "email": email},
    )
    return await cur.fetchall()


async def count_contacts(conn: Conn, org: int, cap: int) -> int:
    """An organisation's contacts counted up to ``cap`` + 1 (a bounded primary-key range)."""
    cur = await conn.execute(
        "select count(*) from (select from contacts where organization_id = %s limit %s) c",
        [org, cap + 1],
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def estimate_contacts(conn: Conn, org: int) -> int:
    """The planner's estimate of an organisation's contacts (statistics kept by ANALYZE;
    no row is read): what a page shows instead of a count(*) of a million rows."""
    cur = await conn.execute(
        "explain (format json) select from contacts where organization_id = %s", [org]
    )
    row = await cur.fetchone()
    return int(row[0][0]["Plan"]["Plan Rows"]) if row else 0


LIST_COLUMNS = "id, name, created_at, double_opt_in, confirm_from"


async def insert_list(
    conn: Conn, org: int, name: str, double_opt_in: bool, confirm_from: str | None
) -> Row:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "insert into lists (organization_id, name, double_opt_in, confirm_from)"
        f" values (%s, %s, %s, %s) returning {LIST_COLUMNS}",
        [org, name, double_opt_in, confirm_from],
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def page_lists(conn: Conn, org: int, after: int, limit: int, name: str | None) -> list[Row]:
    """A keyset page of lists; ``name`` matches anywhere in the name, case-insensitively."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {LIST_COLUMNS} from lists where organization_id = %(org)s and id > %(after)s"
        " and (%(name)s::text is null or name ilike '%%' || %(name)s || '%%')"
        " order by id limit %(limit)s",
        {"org": org, "after": after, "limit": limit, "name": name and like_escape(name)},
    )
    return await cur.fetchall()


async def get_list(conn: Conn, org: int, list_id: int) -> Row | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {LIST_COLUMNS} from lists where organization_id = %s and id = %s",
        [org, list_id],
    )
    return await cur.fetchone()


async def add_members(
    conn: Conn,
    org: int,
    list_id: int,
    ids: Sequence[int],
    emails: Sequence[str],
    confirmed: bool = True,
    rejoin: bool = False,
) -> tuple[list[Row], list[int]]:
    """Add this organisation's contacts found by id or email; (found contacts, added ids).

    ``confirmed`` false adds them pending (a double opt-in list). Members who left the list
    stay out unless ``rejoin`` (then they count as added).
    """
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """
        with found as (
            select id, lower(email) as email from contacts
            where organization_id = %(org)s and id = any(%(ids)s::bigint[])
            union
            select id, lower(email) from contacts
            where organization_id = %(org)s and lower(email) = any(%(emails)s::text[])
        ), added as (
            insert into list_members as m (organization_id, list_id, contact_id, confirmed_at)
            select distinct %(org)s, %(list)s::bigint, id,
                case when %(confirmed)s then now() end from found
            on conflict (organization_id, list_id, contact_id) do update
                set unsubscribed_at = null where %(rejoin)s and m.unsubscribed_at is not null
            returning contact_id
        )
        select id, email, (select array_agg(contact_id) from added) as added from found
        """,
        {
            "org": org,
            "list": list_id,
            "ids": list(ids),
            "emails": list(emails),
            "confirmed": confirmed,
            "rejoin": rejoin,
        },
    )
    rows = await cur.fetchall()
    added = [int(i) for i in (rows[0]["added"] or [])] if rows else []
    return rows, added


async def rename_list(conn: Conn, org: int, list_id: int, name: str) -> Row | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"update lists set name = %s where organization_id = %s and id = %s"
        f" returning {LIST_COLUMNS}",
        [name, org, list_id],
    )
    return await cur.fetchone()


async def remove_members(
    conn: Conn, org: int, list_id: int, ids: Sequence[int], emails: Sequence[str]
) -> list[Row]:
    """Take these contacts (by id or lower-cased address) off the list; (id, email) of each
    one that was on it. Uses list_members' primary key, one probe per contact."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        """
        with found as (
            select id, email from contacts
            where organization_id = %(org)s and id = any(%(ids)s::bigint[])
            union
            select id, email from contacts
            where organization_id = %(org)s and lower(email) = any(%(emails)s::text[])
        )
        delete from list_members m using found
        where m.organization_id = %(org)s and m.list_id = %(list)s and m.contact_id = found.id
        returning found.id, found.email
        """,
        {"org": org, "list": list_id, "ids": list(ids), "emails": list(emails)},
    )
    return await cur.fetchall()


async def count_members(conn: Conn, org: int, list_id: int, cap: int) -> int:
    """Members of a list who did not leave it, counted up to ``cap`` + 1 (a bounded range
    of list_members' primary key)."""
    cur = await conn.execute(
        "select count(*) from (select from list_members where organization_id = %s"
        " and list_id = %s and unsubscribed_at is null limit %s) as m",
        [org, list_id, cap + 1],
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def estimate_members(conn: Conn, org: int, list_id: int) -> int:
    """The planner's estimate of a list's memberships (from the table's statistics, kept
    by autovacuum's ANALYZE): no row is read."""
    cur = await conn.execute(
        "explain (format json) select from list_members"
        " where organization_id = %s and list_id = %s",
        [org, list_id],
    )
    row = await cur.fetchone()
    return int(row[0][0]["Plan"]["Plan Rows"]) if row else 0


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A pending member to send the confirmation mail to."""

    contact_id: int
    email: str
    list_name: str
    confirm_from: str


async def pending_confirmations(
    conn: Conn, org: int, list_id: int, contact_ids: Sequence[int]
) -> list[Confirmation]:
    cur = conn.cursor(row_factory=class_row(Confirmation))
    await cur.execute(
        "select m.contact_id, c.email, l.name as list_name, l.confirm_from"
        " from list_members m join contacts c"
        " on c.organization_id = m.organization_id and c.id = m.contact_id"
        " join lists l on l.organization_id = m.organization_id and l.id = m.list_id"
        " where m.organization_id = %s and m.list_id = %s and m.contact_id = any(%s)"
        " and m.confirmed_at is null and m.confirm_sent_at is null and m.unsubscribed_at is null"
        " and c.status = 'subscribed'",
        [org, list_id, list(contact_ids)],
    )
    return await cur.fetchall()


async def confirmation_sent(conn: Conn, org: int, list_id: int, contact_id: int) -> None:
    await conn.execute(
        "update list_members set confirm_sent_at = now()"
        " where organization_id = %s and list_id = %s and contact_id = %s",
        [org, list_id, contact_id],
    )


async def confirm_member(conn: Conn, list_id: int, contact_id: int) -> bool | None:
    """Confirm a pending member: True now, False if confirmed before, None if not a member."""
    cur = await conn.execute(
        "update list_members m set confirmed_at = coalesce(m.confirmed_at, now())"
        " from lists l where l.id = %(list)s and m.organization_id = l.organization_id"
        " and m.list_id = l.id and m.contact_id = %(contact)s"
        " returning (m.confirmed_at = now())",
        {"list": list_id, "contact": contact_id},
    )
    row = await cur.fetchone()
    return None if row is None else bool(row[0])


async def list_members(conn: Conn, org: int, list_id: int, after: int, limit: int) -> list[Row]:
    """One keyset page of members, by list_members' primary key; members who left the list
    (preference centre) are not members any more."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {', '.join('c.' + c for c in CONTACT_COLUMNS.split(', '))}"
        " from list_members m"
        " join contacts c on c.organization_id = m.organization_id and c.id = m.contact_id"
        " where m.organization_id = %s and m.list_id = %s and m.contact_id > %s"
        " and m.unsubscribed_at is null order by m.contact_id limit %s",
        [org, list_id, after, limit],
    )
    return await cur.fetchall()


async def organization_exists(conn: Conn, org: int) -> bool:
    cur = await conn.execute("select 1 from organizations where id = %s", [org])
    return await cur.fetchone() is not None


# -- imports ------------------------------------------------------------------------------

IMPORT_COLUMNS = (
    "id, list_id, status, filename, bytes_total, rows_total, rows_processed, rows_imported,"
    " rows_failed, errors, error, created_at, started_at, finished_at, resubscribe,"
    " rows_status_kept, bytes_processed"
)


async def insert_import(
    conn: Conn,
    org: int,
    list_id: int | None,
    filename: str | None,
    key: str | None,
    resubscribe: bool = False,
) -> int | None:
    """A new queued import; None if ``key`` already names one of this organisation's."""
    cur = await conn.execute(
        "insert into imports (organization_id, list_id, filename, idempotency_key, resubscribe)"
        " values (%s, %s, %s, %s, %s)"
        " on conflict (organization_id, idempotency_key) where idempotency_key is not null"
        " do nothing returning id",
        [org, list_id, filename, key, resubscribe],
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def import_by_key(conn: Conn, org: int, key: str) -> int | None:
    cur = await conn.execute(
        "select id from imports where organization_id = %s and idempotency_key = %s", [org, key]
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def insert_chunk(conn: Conn, org: int, import_id: int, seq: int, data: bytes) -> None:
    await conn.execute(
        "insert into import_chunks (organization_id, import_id, seq, data) values (%s, %s, %s, %s)",
        [org, import_id, seq, data],
    )


async def set_uploaded(conn: Conn, org: int, import_id: int, chunks: int, size: int) -> None:
    await conn.execute(
        "update imports set chunks_total = %s, bytes_total = %s"
        " where organization_id = %s and id = %s",
        [chunks, size, org, import_id],
    )


async def read_chunk(conn: Conn, org: int, import_id: int, seq: int) -> bytes:
    cur = await conn.execute(
        "select data from import_chunks where organization_id = %s and import_id = %s and seq = %s",
        [org, import_id, seq],
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"import {import_id} has no chunk {seq}")
    return bytes(row[0])


async def page_imports(
    conn: Conn, org: int, after: int, limit: int, status: str | None
) -> list[Row]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {IMPORT_COLUMNS} from imports where organization_id = %(org)s"
        " and id > %(after)s and (%(status)s::text is null or status = %(status)s)"
        " order by id limit %(limit)s",
        {"org": org, "after": after, "limit": limit, "status": status},
    )
    return await cur.fetchall()


async def get_import(conn: Conn, org: int, import_id: int) -> Row | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {IMPORT_COLUMNS}, chunks_total from imports"
        " where organization_id = %s and id = %s",
        [org, import_id],
    )
    return await cur.fetchone()


@dataclass(frozen=True, slots=True)
class ImportToRun:
    """What the import job needs of the import it just started."""

    list_id: int | None
    chunks_total: int
    resubscribe: bool


async def start_import(conn: Conn, org: int, import_id: int) -> ImportToRun | None:
    """Mark running and reset progress: a re-run after a crash starts again from row one."""
    cur = conn.cursor(row_factory=class_row(ImportToRun))
    await cur.execute(
        "update imports set status = 'running', started_at = now(), finished_at = null,"
        " attempts = attempts + 1, rows_total = null, rows_processed = 0, rows_imported = 0,"
        " rows_failed = 0, rows_status_kept = 0, errors = '[]', error = null,"
        " bytes_processed = 0, header = null"
        " where organization_id = %s and id = %s and status in ('queued', 'running')"
        " returning list_id, chunks_total, resubscribe",
        [org, import_id],
    )
    started = await cur.fetchone()
    if started is not None:
        await conn.execute(
            "delete from import_rejects where organization_id = %s and import_id = %s",
            [org, import_id],
        )
    return started


async def set_header(conn: Conn, org: int, import_id: int, header: list[str]) -> None:
    await conn.execute(
        "update imports set header = %s where organization_id = %s and id = %s",
        [header, org, import_id],
    )


async def staged_rows(conn: Conn, ords: Sequence[int]) -> dict[int, Row]:
    """Rows of ``import_rows`` (this transaction's staging table) by ``ord``."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "select ord, email, first_name, last_name, status, attributes from import_rows"
        " where ord = any(%s::bigint[])",
        [list(ords)],
    )
    return {int(r["ord"]): r for r in await cur.fetchall()}


async def insert_rejects(
    conn: Conn, org: int, import_id: int, rejects: Sequence[tuple[int, str, list[str] | None]]
) -> None:
    """The refused rows of one batch: (row, reason, record)."""
    async with conn.cursor().copy(
        "copy import_rejects (organization_id, import_id, row, reason, record) from stdin"
    ) as copy:
        for row, reason, record in rejects:
            await copy.write_row((org, import_id, row, reason, record))


@dataclass(frozen=True, slots=True)
class RejectRow:
    row: int
    reason: str
    record: list[str] | None


async def rejects(
    conn: Conn, org: int, import_id: int, after_row: int, limit: int
) -> list[RejectRow]:
    """A page of an import's refused rows, in row order (the primary key)."""
    cur = conn.cursor(row_factory=class_row(RejectRow))
    await cur.execute(
        "select row, reason, record from import_rejects"
        " where organization_id = %s and import_id = %s and row > %s order by row limit %s",
        [org, import_id, after_row, limit],
    )
    return await cur.fetchall()


async def import_header(conn: Conn, org: int, import_id: int) -> list[str] | None:
    cur = await conn.execute(
        "select header from imports where organization_id = %s and id = %s", [org, import_id]
    )
    row = await cur.fetchone()
    return None if row is None else row[0]


async def imports_newest_first(conn: Conn, org: int, before: int | None, limit: int) -> list[Row]:
    """A keyset page of imports, newest first (the primary key, backwards)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {IMPORT_COLUMNS} from imports where organization_id = %(org)s"
        " and (%(before)s::bigint is null or id < %(before)s) order by id desc limit %(limit)s",
        {"org": org, "before": before, "limit": limit},
    )
    return await cur.fetchall()


async def record_progress(
    conn: Conn,
    org: int,
    import_id: int,
    processed: int,
    imported: int,
    failed: int,
    errors: str,
    status_kept: int = 0,
    bytes_processed: int = 0,
) -> None:
    """Progress after one batch; ``errors`` is the JSON array of the first failed rows."""
    await conn.execute(
        "update imports set rows_processed = %s, rows_imported = %s, rows_failed = %s,"
        " errors = %s::jsonb, rows_status_kept = %s, bytes_processed = %s"
        " where organization_id = %s and id = %s",
        [processed, imported, failed, errors, status_kept, bytes_processed, org, import_id],
    )


async def finish_import(
    conn: Conn,
    org: int,
    import_id: int,
    status: str,
    rows_total: int | None,
    error: str | None,
) -> None:
    """Final status; the uploaded chunks are no longer needed."""
    await conn.execute(
        "update imports set status = %s, rows_total = %s, error = %s, finished_at = now()"
        " where organization_id = %s and id = %s",
        [status, rows_total, error, org, import_id],
    )
    await conn.execute(
        "delete from import_chunks where organization_id = %s and import_id = %s",
        [org, import_id],
    )
