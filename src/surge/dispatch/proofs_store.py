"""SQL of test sends (``message_test_sends``, migration 0036). Every query a tenant can
reach filters by organization_id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import class_row

Conn = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Proof:
    """A test mail as the composer shows it."""

    id: int
    to_email: str
    status: str
    reply: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ProofToSend:
    """What the ``dispatch.test_send`` job needs of its row."""

    id: int
    organization_id: int
    to_email: str
    contact_id: int | None
    subject: str
    html: str | None
    text_body: str | None
    from_email: str
    from_name: str | None
    reply_to: str | None
    sender: str | None
    status: str


INSERT = """
insert into message_test_sends (organization_id, campaign_id, to_email, contact_id, subject,
    html, text_body, from_email, from_name, reply_to, sender, requested_by)
values (%(org)s, %(campaign)s, %(to)s, %(contact)s, %(subject)s, %(html)s, %(text)s,
    %(from_email)s, %(from_name)s, %(reply_to)s, %(sender)s, %(requested_by)s)
returning id
"""

# message_test_sends_organization_idx: the tests of the last hour, a few dozen at most.
RECENT = """
select count(*) from message_test_sends
where organization_id = %s and created_at > now() - make_interval(secs => %s)
"""

# message_test_sends_organization_idx: rows past their keeping time, a few at a time.
PRUNE = """
delete from message_test_sends where id in (
    select id from message_test_sends
    where organization_id = %s and created_at < now() - make_interval(days => %s)
    limit 100
)
"""


async def insert(conn: Conn, values: dict[str, Any]) -> int:
    cur = await conn.execute(INSERT, values)
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def recent(conn: Conn, org: int, seconds: float) -> int:
    """How many tests the organisation asked for in the last ``seconds``."""
    cur = await conn.execute(RECENT, [org, seconds])
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def prune(conn: Conn, org: int, days: int) -> None:
    await conn.execute(PRUNE, [org, days])


async def test_sends(conn: Conn, org: int, ids: Sequence[int]) -> list[Proof]:
    cur = conn.cursor(row_factory=class_row(Proof))
    await cur.execute(
        "select id, to_email, status, reply, created_at, finished_at from message_test_sends"
        " where organization_id = %s and id = any(%s) order by id",
        [org, list(ids)],
    )
    return await cur.fetchall()


async def to_send(conn: Conn, test_id: int) -> ProofToSend | None:
    cur = conn.cursor(row_factory=class_row(ProofToSend))
    await cur.execute(
        "select id, organization_id, to_email, contact_id, subject, html, text_body,"
        " from_email, from_name, reply_to, sender, status from message_test_sends"
        " where id = %s",
        [test_id],
    )
    return await cur.fetchone()


async def finish(conn: Conn, test_id: int, status: str, reply: str) -> None:
    """Record the outcome and drop the templates: the row stays as the record of the test."""
    await conn.execute(
        "update message_test_sends set status = %s, reply = %s, finished_at = now(),"
        " html = null, text_body = null where id = %s and status = 'queued'",
        [status, reply[:500], test_id],
    )
