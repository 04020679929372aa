"""Segment rules: a small JSON language, checked as it is decoded and compiled to one SQL
predicate over ``contacts c``.

A rule is an object with a ``kind``::

    {"kind": "all", "rules": [
        {"kind": "attribute", "name": "city", "op": "eq", "value": "Leeds"},
        {"kind": "list", "list_id": 12},
        {"kind": "event", "type": "Donate Clicked", "within_days": 30, "min_count": 2},
        {"kind": "donated", "since": "2025-01-01", "before": "2026-01-01"},
        {"kind": "not", "rule": {"kind": "donated", "since": "2026-01-01"}}
    ]}

The predicate is evaluated by PostgreSQL wherever the segment is used: a count preview is one
``SELECT count(*)``, a message to a segment one ``INSERT … SELECT`` (dispatch), never a
contact at a time in Python. Event rules read the ``contact_activity`` rollup (events per
contact, type and day, kept by a consumer: ``segments/activity.py``), not the events table.

Values reach SQL only as bound literals (``psycopg.sql.Literal``); names of attributes are
values too (``attributes -> %s``), so no rule can inject SQL. Nesting and size are bounded
so that a rule cannot make a query planner's day.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal

import msgspec
from psycopg import sql

from surge.errors import Invalid
from surge.fields import Amount, Id, like_escape

#: Rules in one segment, counting every node, and how deep they may nest.
MAX_RULES = 50
MAX_DEPTH = 5
#: Days of per-contact activity kept (segments/activity.py): how far an event rule looks.
ACTIVITY_DAYS = 400

Scalar = str | int | float | bool
AttributeName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Text = Annotated[str, msgspec.Meta(max_length=1000)]


class Attribute(msgspec.Struct, tag="attribute", tag_field="kind", forbid_unknown_fields=True):
    """A contact attribute compared with a value (``exists`` takes none)."""

    name: AttributeName
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "contains", "exists", "in"]
    value: Scalar | Annotated[list[Scalar], msgspec.Meta(max_length=100)] | None = None


class InList(msgspec.Struct, tag="list", tag_field="kind", forbid_unknown_fields=True):
    """A confirmed member of the list."""

    list_id: Id


class Status(msgspec.Struct, tag="status", tag_field="kind", forbid_unknown_fields=True):
    statuses: Annotated[
        list[Literal["subscribed", "unsubscribed", "bounced", "complained"]],
        msgspec.Meta(min_length=1, max_length=4),
    ]


class DidEvent(msgspec.Struct, tag="event", tag_field="kind", forbid_unknown_fields=True):
    """At least ``min_count`` events of ``type`` in the last ``within_days`` days (UTC)."""

    type: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    within_days: Annotated[int, msgspec.Meta(ge=1, le=ACTIVITY_DAYS)] = 30
    min_count: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1


class Donated(msgspec.Struct, tag="donated", tag_field="kind", forbid_unknown_fields=True):
    """Succeeded donations from the contact's address in [since, before), at least
    ``min_amount`` minor units together (in ``currency`` if given)."""

    since: date | None = None
    before: date | None = None
    min_amount: Amount = 1
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")] | None = None


class All(msgspec.Struct, tag="all", tag_field="kind", forbid_unknown_fields=True):
    rules: Annotated[list[Rule], msgspec.Meta(min_length=1, max_length=MAX_RULES)]


class AnyOf(msgspec.Struct, tag="any", tag_field="kind", forbid_unknown_fields=True):
    rules: Annotated[list[Rule], msgspec.Meta(min_length=1, max_length=MAX_RULES)]


class Not(msgspec.Struct, tag="not", tag_field="kind", forbid_unknown_fields=True):
    rule: Rule


Rule = Attribute | InList | Status | DidEvent | Donated | All | AnyOf | Not

_COMPARE = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def check(rule: Rule, field: str = "rules") -> None:
    """Bounds msgspec cannot express: total size, depth, values that fit the operator."""
    count = _check(rule, field, 1)
    if count > MAX_RULES:
        raise Invalid(field, f"at most {MAX_RULES} rules in a segment (found {count})")


def _check(rule: Rule, field: str, depth: int) -> int:
    if depth > MAX_DEPTH:
        raise Invalid(field, f"rules nest at most {MAX_DEPTH} deep")
    if isinstance(rule, All | AnyOf):
        return 1 + sum(
            _check(r, f"{field}.rules[{i}]", depth + 1) for i, r in enumerate(rule.rules)
        )
    if isinstance(rule, Not):
        return 1 + _check(rule.rule, f"{field}.rule", depth + 1)
    if isinstance(rule, Attribute):
        _check_attribute(rule, field)
    if isinstance(rule, Donated) and rule.since and rule.before and rule.since >= rule.before:
        raise Invalid(f"{field}.before", "must be after since")
    return 1


def _check_attribute(rule: Attribute, field: str) -> None:
    value = rule.value
    if "\x00" in rule.name or (isinstance(value, str) and "\x00" in value):
        raise Invalid(field, "text may not contain the NUL character")
    if rule.op == "exists":
        if value is not None:
            raise Invalid(f"{field}.value", "exists takes no value")
    elif rule.op == "in":
        if not isinstance(value, list) or not value:
            raise Invalid(f"{field}.value", "in takes a non-empty list of values")
        if any(isinstance(v, str) and "\x00" in v for v in value):
            raise Invalid(f"{field}.value", "text may not contain the NUL character")
    elif rule.op == "contains":
        if not isinstance(value, str) or not value:
            raise Invalid(f"{field}.value", "contains takes a non-empty string")
    elif value is None or isinstance(value, list):
        raise Invalid(f"{field}.value", f"{rule.op} takes one value")
    elif rule.op in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
        raise Invalid(f"{field}.value", f"{rule.op} compares numbers or text")


def predicate(rule: Rule, org: int, today: date) -> sql.Composable:
    """The rule as a boolean SQL expression over ``contacts c`` of organisation ``org``."""
    if isinstance(rule, All | AnyOf):
        joiner = sql.SQL(" and " if isinstance(rule, All) else " or ")
        return sql.SQL("({})").format(joiner.join(predicate(r, org, today) for r in rule.rules))
    if isinstance(rule, Not):
        # A NULL (attribute missing) is "not matching", so NOT keeps it a plain boolean.
        return sql.SQL("not coalesce({}, false)").format(predicate(rule.rule, org, today))
    if isinstance(rule, Attribute):
        return _attribute(rule)
    if isinstance(rule, InList):
        return sql.SQL(
            "exists (select 1 from list_members m where m.organization_id = c.organization_id"
            " and m.list_id = {} and m.contact_id = c.id and m.confirmed_at is not null)"
        ).format(sql.Literal(rule.list_id))
    if isinstance(rule, Status):
        return sql.SQL("c.status = any({})").format(sql.Literal(list(rule.statuses)))
    if isinstance(rule, DidEvent) and rule.min_count == 1:
        since = today - timedelta(days=rule.within_days - 1)
        return sql.SQL(
            "c.id in (select l.contact_id from contact_last_activity l"
            " where l.organization_id = {org} and l.type = {type} and l.last_day >= {since})"
        ).format(org=sql.Literal(org), type=sql.Literal(rule.type), since=sql.Literal(since))
    if isinstance(rule, DidEvent):
        since = today - timedelta(days=rule.within_days - 1)
        return sql.SQL(
            "c.id in (select a.contact_id from contact_activity a"
            " where a.organization_id = {org} and a.type = {type} and a.day >= {since}"
            " group by a.contact_id having sum(a.events) >= {count})"
        ).format(
            org=sql.Literal(org),
            type=sql.Literal(rule.type),
            since=sql.Literal(since),
            count=sql.Literal(rule.min_count),
        )
    return _donated(rule, org)


def _attribute(rule: Attribute) -> sql.Composable:
    name, value = sql.Literal(rule.name), rule.value
    if rule.op == "exists":
        return sql.SQL("(c.attributes ? {})").format(name)
    if rule.op == "contains":
        assert isinstance(value, str)
        pattern = "%" + like_escape(value) + "%"
        return sql.SQL("(c.attributes ->> {} ilike {})").format(name, sql.Literal(pattern))
    if rule.op == "in":
        assert isinstance(value, list)
        return sql.SQL("(c.attributes -> {} = any({}::jsonb[]))").format(
            name, sql.Literal([msgspec.json.encode(v).decode() for v in value])
        )
    json_value = sql.Literal(msgspec.json.encode(value).decode())
    if rule.op == "eq":
        # Containment can use a GIN index on attributes, should an organisation add one.
        document = msgspec.json.encode({rule.name: value}).decode()
        return sql.SQL("(c.attributes @> {}::jsonb)").format(sql.Literal(document))
    if rule.op == "ne":
        return sql.SQL("(c.attributes -> {} is distinct from {}::jsonb)").format(name, json_value)
    # jsonb orders numbers as numbers and strings as text; only same-typed values compare.
    same_type = sql.Literal("number" if isinstance(value, int | float) else "string")
    return sql.SQL(
        "(jsonb_typeof(c.attributes -> {n}) = {t} and c.attributes -> {n} {op} {v}::jsonb)"
    ).format(n=name, t=same_type, op=sql.SQL(_COMPARE[rule.op]), v=json_value)


def _donated(rule: Donated, org: int) -> sql.Composable:
    conditions = [
        sql.SQL("d.organization_id = {}").format(sql.Literal(org)),
        sql.SQL("d.status = 'succeeded'"),
    ]
    if rule.since:
        conditions.append(sql.SQL("d.succeeded_at >= {}").format(sql.Literal(rule.since)))
    if rule.before:
        conditions.append(sql.SQL("d.succeeded_at < {}").format(sql.Literal(rule.before)))
    if rule.currency:
        conditions.append(sql.SQL("d.currency = {}").format(sql.Literal(rule.currency)))
    return sql.SQL(
        "lower(c.email) in (select lower(d.email) from donations d where {}"
        " group by lower(d.email) having sum(d.amount_minor) >= {})"
    ).format(sql.SQL(" and ").join(conditions), sql.Literal(rule.min_amount))
