"""The SELECT of each export kind, run as ``COPY (SELECT …) TO STDOUT WITH (FORMAT csv, HEADER)``.

The columns of each kind are a public contract (docs/exports.md): add columns at the end,
never rename or reorder. Every table in every query is filtered by the organisation, so
tenancy holds in the SQL itself whatever the filters say. Values are composed as
``sql.Literal`` (psycopg quotes them): COPY takes no bound parameters, and a literal
holding ``%`` must not be read as a placeholder.

Exports read other domains' tables directly: they are read-only projections, and going
through each domain's service would mean loading rows into Python, which COPY avoids.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from surge.exports.schemas import Filters

#: Text cells a spreadsheet would run as a formula start with one of these: = + - @ and
#: tab or CR (OWASP's list). ``ascii()`` reads the first character as a number, the
#: cheapest test PostgreSQL has (``left(x, 1) in (…)`` cost 0.8 s more per million rows).
_FORMULA_STARTS = "61, 43, 45, 64, 9, 13"


@dataclass(frozen=True, slots=True)
class Column:
    """One CSV column: its header, its SQL expression, and whether it is free text."""

    name: str
    expression: str
    text: bool = False


CONTACTS = (
    Column("id", "c.id"),
    Column("email", "c.email", text=True),
    Column("first_name", "c.first_name", text=True),
    Column("last_name", "c.last_name", text=True),
    Column("status", "c.status"),
    Column("attributes", "c.attributes"),
    Column("created_at", "c.created_at"),
    Column("updated_at", "c.updated_at"),
)
#: With a list filter: when the contact joined it, and confirmed (double opt-in lists).
LIST_MEMBERSHIP = (
    Column("list_added_at", "m.added_at"),
    Column("list_confirmed_at", "m.confirmed_at"),
)
DELIVERIES = (
    Column("message_id", "d.message_id"),
    Column("contact_id", "d.contact_id"),
    Column("email", "c.email", text=True),
    Column("status", "d.status"),
    Column("attempts", "d.attempts"),
    Column("last_error", "d.last_error", text=True),
    Column("sent_at", "d.sent_at"),
    Column("opened_at", "d.opened_at"),
    Column("clicked_at", "d.clicked_at"),
    Column("bounced_at", "d.bounced_at"),
    Column("complained_at", "d.complained_at"),
    Column("machine_opened_at", "d.machine_opened_at"),
    Column("machine_clicked_at", "d.machine_clicked_at"),
)
DONATIONS = (
    Column("id", "d.id"),
    Column("campaign_id", "d.campaign_id"),
    Column("amount_minor", "d.amount_minor"),
    Column("currency", "d.currency"),
    Column("status", "d.status"),
    Column("email", "d.email", text=True),
    Column("name", "d.name", text=True),
    Column("metadata", "d.metadata"),
    Column("gateway_reference", "d.gateway_reference", text=True),
    Column("failure_reason", "d.failure_reason", text=True),
    Column("created_at", "d.created_at"),
    Column("succeeded_at", "d.succeeded_at"),
    Column("failed_at", "d.failed_at"),
    Column("receipt_sent_at", "d.receipt_sent_at"),
    # Giving-day fields (docs/donations.md): the fee a donor covered, offline gifts (their
    # method: cheque, cash, bank_transfer, other), the page and recurring gift of each.
    Column("fee_minor", "d.fee_minor"),
    Column("offline", "case when d.offline_method is null then 'false' else 'true' end"),
    Column("offline_method", "d.offline_method", text=True),
    Column("fundraiser_id", "d.fundraiser_id"),
    Column("team_id", "d.team_id"),
    Column("recurring_gift_id", "d.recurring_gift_id"),
)
EVENTS = (
    Column("id", "e.id"),
    Column("type", "e.type", text=True),
    Column("campaign_id", "e.campaign_id"),
    Column("contact_id", "e.contact_id"),
    Column("contact_email", "e.contact_email", text=True),
    Column("payload", "e.payload"),
    Column("occurred_at", "e.occurred_at"),
    Column("received_at", "e.received_at"),
)

FIXED = {
    "contacts": CONTACTS,
    "deliveries": DELIVERIES,
    "donations": DONATIONS,
    "events": EVENTS,
}


def _neutralised(value: sql.Composable) -> sql.Composable:
    # Parenthesised: || binds as tightly as ->>, so the quote would be concatenated to the
    # jsonb of ``c.attributes ->> 'k'`` before the key is taken.
    return sql.SQL("case when ascii(({v})) in ({starts}) then '''' || ({v}) else ({v}) end").format(
        v=value, starts=sql.SQL(_FORMULA_STARTS)
    )


def _cell(column: Column, safe: bool) -> sql.Composable:
    value = sql.SQL(column.expression)
    return _neutralised(value) if safe and column.text else value


def _columns(kind: str, filters: Filters, safe: bool) -> list[tuple[str, sql.Composable]]:
    columns = [(c.name, _cell(c, safe)) for c in FIXED[kind]]
    if kind == "contacts":
        if filters.list_id is not None:
            columns += [(c.name, _cell(c, safe)) for c in LIST_MEMBERSHIP]
        for name in filters.attribute_columns or ():
            # ->> gives JSON strings unquoted and other values as JSON text.
            value = sql.SQL("c.attributes ->> {}").format(sql.Literal(name))
            columns.append((name, _neutralised(value) if safe else value))
    return columns


def _select(columns: list[tuple[str, sql.Composable]]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{} as {}").format(value, sql.Identifier(name)) for name, value in columns
    )


def select(
    kind: str,
    org: int,
    filters: Filters,
    *,
    safe: bool,
    segment: sql.Composable | None = None,
) -> sql.Composed:
    """The SELECT whose rows are the export, in a stable order (events: storage order).

    ``segment`` is the saved segment's predicate over ``contacts c`` (segments.service), when
    the filters name one.
    """
    columns = _select(_columns(kind, filters, safe))
    where, source, order = _scope(kind, org, filters, segment)
    return sql.SQL("select {columns} from {source} where {where}{order}").format(
        columns=columns,
        source=source,
        where=sql.SQL(" and ").join(where),
        order=order,
    )


def count(
    kind: str, org: int, filters: Filters, segment: sql.Composable | None = None
) -> sql.Composed:
    """How many rows ``select`` returns: the same scope, no columns, no order."""
    where, source, _ = _scope(kind, org, filters, segment)
    return sql.SQL("select count(*) from {source} where {where}").format(
        source=source, where=sql.SQL(" and ").join(where)
    )


def copy(select_query: sql.Composable) -> sql.Composed:
    """The COPY statement that streams ``select_query`` as CSV with a header row."""
    return sql.SQL("copy ({}) to stdout with (format csv, header)").format(select_query)


Scope = tuple[list[sql.Composable], sql.Composable, sql.Composable]


def _scope(kind: str, org: int, f: Filters, segment: sql.Composable | None) -> Scope:
    """(conditions, FROM clause, ORDER BY) of an export; the organisation comes first."""
    lit = sql.Literal
    cond = sql.SQL
    if kind == "contacts":
        where: list[sql.Composable] = [cond("c.organization_id = {}").format(lit(org))]
        if f.status is not None:
            where.append(cond("c.status = {}").format(lit(f.status)))
        if segment is not None:
            where.append(segment)
        if f.list_id is not None:
            # Members in contact order: the primary key of list_members, then contacts'.
            where += [
                cond("m.organization_id = {}").format(lit(org)),
                cond("m.list_id = {}").format(lit(f.list_id)),
            ]
            source = cond(
                "list_members m join contacts c"
                " on c.organization_id = m.organization_id and c.id = m.contact_id"
            )
            return where, source, cond(" order by m.contact_id")
        return where, cond("contacts c"), cond(" order by c.id")
    if kind == "deliveries":
        where = [cond("d.organization_id = {}").format(lit(org))]
        if f.message_id is not None:
            where.append(cond("d.message_id = {}").format(lit(f.message_id)))
        if f.campaign_id is not None:
            where.append(
                cond(
                    "d.message_id in (select id from messages"
                    " where organization_id = {} and campaign_id = {})"
                ).format(lit(org), lit(f.campaign_id))
            )
        if f.status is not None:
            where.append(cond("d.status = {}").format(lit(f.status)))
        # A delivery's contact may have been deleted since: the row stays, without email.
        source = cond(
            "deliveries d left join contacts c"
            " on c.organization_id = d.organization_id and c.id = d.contact_id"
        )
        return where, source, cond(" order by d.message_id, d.contact_id")
    if kind == "donations":
        where = [cond("d.organization_id = {}").format(lit(org))]
        if f.campaign_id is not None:
            where.append(cond("d.campaign_id = {}").format(lit(f.campaign_id)))
        if f.status is not None:
            where.append(cond("d.status = {}").format(lit(f.status)))
        where += _range("d.created_at", f)
        return where, cond("donations d"), cond(" order by d.id")
    assert kind == "events", kind
    where = [cond("e.organization_id = {}").format(lit(org))]
    if f.type is not None:
        where.append(cond("e.type = {}").format(lit(f.type)))
    if f.campaign_id is not None:
        where.append(cond("e.campaign_id = {}").format(lit(f.campaign_id)))
    # received_at is the partition key: a range reads only its days' partitions.
    where += _range("e.received_at", f)
    # No ORDER BY: sorting millions of events would spill to disk; the partitions are read
    # day by day, so rows come close to arrival order.
    return where, cond("events e"), cond("")


def _range(column: str, f: Filters) -> list[sql.Composable]:
    out: list[sql.Composable] = []
    if f.since is not None:
        out.append(sql.SQL(column + " >= {}").format(sql.Literal(f.since)))
    if f.until is not None:
        out.append(sql.SQL(column + " < {}").format(sql.Literal(f.until)))
    return out
