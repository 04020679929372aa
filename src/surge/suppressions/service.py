"""The suppression list: who is on it, why, and how Surge's own findings put them there.

Dispatch skips a suppressed address at send time (its chunk query joins this table) and
reports its findings here: a hard bounce suppresses at once, soft bounces (temporary
failures that outlasted every retry) after ``SURGE_SUPPRESS_AFTER_SOFT_BOUNCES`` of them
within ``SOFT_BOUNCE_WINDOW_DAYS``. Staff add addresses (``manual``) or a previous
provider's list (``imported``) through the API or ``surge suppressions``; removing one is
how staff let mail through again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

from surge.errors import Invalid, NotFound
from surge.fields import check_email, decode_cursor, next_cursor
from surge.suppressions import store
from surge.suppressions.schemas import (
    MAX_BATCH,
    Added,
    Suppression,
    SuppressionBatch,
    SuppressionPage,
)

Conn = AsyncConnection[Any]

#: Soft bounces count within this many days of the first one.
SOFT_BOUNCE_WINDOW_DAYS = 30


async def add(conn: Conn, org: int, body: SuppressionBatch) -> Added:
    """Suppress up to MAX_BATCH addresses; those already suppressed keep their reason."""
    items = body.suppressions
    if not 1 <= len(items) <= MAX_BATCH:
        raise Invalid("suppressions", f"send 1 to {MAX_BATCH} addresses")
    emails = [check_email(f"suppressions[{i}].email", s.email).lower() for i, s in enumerate(items)]
    unique = dict.fromkeys(emails)
    first = {email: items[emails.index(email)] for email in unique}
    added = await store.insert(
        conn,
        org,
        list(unique),
        [first[e].reason for e in unique],
        [first[e].detail for e in unique],
    )
    return Added(added=added, existing=len(unique) - added)


async def suppress(conn: Conn, org: int, emails: Sequence[str], reason: str, detail: str) -> int:
    """Surge's own finding (a bounce, a complaint): suppress ``emails``, in the caller's
    transaction. Returns how many were not suppressed before."""
    if not emails:
        return 0
    lowered = [e.lower() for e in emails]
    return await store.insert(conn, org, lowered, [reason] * len(lowered), [detail] * len(lowered))


async def soft_bounced(
    conn: Conn, org: int, emails: Sequence[str], threshold: int, detail: str
) -> int:
    """Count a soft bounce for each address; suppress those at ``threshold``. Returns how many
    were suppressed now."""
    if not emails:
        return 0
    counts = await store.count_soft_bounces(
        conn, org, [e.lower() for e in emails], SOFT_BOUNCE_WINDOW_DAYS
    )
    reached = [email for email, n in counts if n >= threshold]
    return await suppress(conn, org, reached, "soft_bounce", detail)


async def page(
    conn: Conn, org: int, *, after: str | None, limit: int, email: str | None
) -> SuppressionPage:
    if not 1 <= limit <= MAX_BATCH:
        raise Invalid("limit", f"limit must be between 1 and {MAX_BATCH}")
    address = check_email("email", email).lower() if email is not None else None
    rows = await store.page(conn, org, decode_cursor(after), limit, address)
    data = [Suppression(r.email, r.reason, r.detail, r.created_at) for r in rows]
    return SuppressionPage(data, next_cursor([r.id for r in rows], limit))


async def remove(conn: Conn, org: int, email: str) -> None:
    """Take the address off the list: mail to it goes out again."""
    address = check_email("email", email).lower()
    if not await store.delete(conn, org, address):
        raise NotFound(f"{address} is not suppressed")
