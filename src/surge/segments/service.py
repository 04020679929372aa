"""Segments: saved, checked rules; counts; the predicate dispatch plans a message with."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection, errors, sql

from surge.contacts import service as contacts
from surge.errors import Conflict, Invalid, NotFound, Overloaded
from surge.fields import decode_cursor, next_cursor
from surge.segments import rules as rule_types
from surge.segments import store
from surge.segments.rules import InList, Rule
from surge.segments.schemas import (
    MAX_PAGE,
    Count,
    Segment,
    SegmentIn,
    SegmentPage,
    SegmentPatch,
)

Conn = AsyncConnection[Any]

#: Longest a count preview may run: a segment costly enough to pass it is refused (503),
#: not left to hold a connection and a core.
COUNT_TIMEOUT_MS = 10_000


def today() -> date:
    return datetime.now(UTC).date()


async def check_rules(conn: Conn, org: int, rule: Rule, field: str = "rules") -> None:
    """Bounds, and every list a rule names belongs to the organisation."""
    rule_types.check(rule, field)
    for path, node in _walk(rule, field):
        if isinstance(node, InList):
            try:
                await contacts.get_list(conn, org, node.list_id)
            except NotFound:
                raise Invalid(f"{path}.list_id", f"list {node.list_id} not found") from None


def _walk(rule: Rule, path: str) -> list[tuple[str, Rule]]:
    found: list[tuple[str, Rule]] = [(path, rule)]
    if isinstance(rule, rule_types.All | rule_types.AnyOf):
        for i, child in enumerate(rule.rules):
            found += _walk(child, f"{path}.rules[{i}]")
    elif isinstance(rule, rule_types.Not):
        found += _walk(rule.rule, f"{path}.rule")
    return found


def _segment(row: store.SegmentRow) -> Segment:
    rules = msgspec.json.decode(row.rules, type=Rule)
    return Segment(row.id, row.name, rules, row.created_at, row.updated_at)


async def create(conn: Conn, org: int, body: SegmentIn) -> Segment:
    await check_rules(conn, org, body.rules)
    row = await store.insert(conn, org, body.name, msgspec.json.encode(body.rules).decode())
    return _segment(row)


async def get(conn: Conn, org: int, segment_id: int) -> Segment:
    row = await store.get(conn, org, segment_id)
    if row is None:
        raise NotFound(f"segment {segment_id} not found")
    return _segment(row)


async def update(conn: Conn, org: int, segment_id: int, body: SegmentPatch) -> Segment:
    if body.rules is not None:
        await check_rules(conn, org, body.rules)
    encoded = msgspec.json.encode(body.rules).decode() if body.rules is not None else None
    row = await store.update(conn, org, segment_id, body.name, encoded)
    if row is None:
        raise NotFound(f"segment {segment_id} not found")
    return _segment(row)


async def delete(conn: Conn, org: int, segment_id: int) -> None:
    async with conn.transaction():
        if await store.in_use(conn, org, segment_id):
            raise Conflict(f"segment {segment_id} is used by a message; it cannot be deleted")
        if not await store.delete(conn, org, segment_id):
            raise NotFound(f"segment {segment_id} not found")


async def page(conn: Conn, org: int, *, after: str | None, limit: int) -> SegmentPage:
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid("limit", f"limit must be between 1 and {MAX_PAGE}")
    rows = await store.page(conn, org, decode_cursor(after), limit)
    return SegmentPage([_segment(r) for r in rows], next_cursor([r.id for r in rows], limit))


async def predicate(conn: Conn, org: int, segment_id: int) -> sql.Composable:
    """The SQL predicate over ``contacts c`` of a saved segment, as of today."""
    segment = await get(conn, org, segment_id)
    return rule_types.predicate(segment.rules, org, today())


async def count(conn: Conn, org: int, rule: Rule) -> Count:
    """How many contacts ``rule`` matches now (checked first, like a saved segment)."""
    await check_rules(conn, org, rule)
    started = time.perf_counter()
    try:
        async with conn.transaction():
            await conn.execute(f"set local statement_timeout = {COUNT_TIMEOUT_MS}")
            matching, subscribed = await store.count(
                conn, org, rule_types.predicate(rule, org, today())
            )
    except errors.QueryCanceled:
        raise Overloaded(
            f"counting this segment took more than {COUNT_TIMEOUT_MS // 1000} s; simplify it"
        ) from None
    took = round((time.perf_counter() - started) * 1000, 1)
    return Count(matching, subscribed, took)
