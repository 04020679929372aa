"""The audit log: who changed what, written in the same transaction as the change.

Every console change and every change to users and API keys calls ``audit`` on the
connection that makes the change, inside its transaction: the entry and the change commit
together or not at all. Entries are read back newest first, in keyset pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a signed-in person, or an operator at the command line (``user_id`` None)."""

    organization_id: int
    user_id: int | None
    name: str
    client_addr: str | None = None

    @classmethod
    def cli(cls, organization_id: int) -> Actor:
        """An operator running ``surge`` on a server."""
        return cls(organization_id, None, "cli")


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    client_addr: str | None
    at: datetime


INSERT = """
insert into audit_log (organization_id, actor_user_id, actor, action, subject, detail, client_addr)
values (%s, %s, %s, %s, %s, %s, %s)
"""

# The audit page; audit_log_organization_idx (organization_id, id desc).
PAGE = """
select id, actor, action, subject, detail, client_addr, at from audit_log
where organization_id = %(org)s and (%(before)s::bigint is null or id < %(before)s::bigint)
order by id desc
limit %(limit)s
"""


async def audit(
    conn: AsyncConnection[Any],
    actor: Actor,
    action: str,
    subject: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record that ``actor`` did ``action`` to ``subject``; call it inside the change's
    transaction. ``detail`` holds what changed (never a secret)."""
    await conn.execute(
        INSERT,
        [
            actor.organization_id,
            actor.user_id,
            actor.name,
            action,
            subject,
            Jsonb(detail or {}),
            actor.client_addr,
        ],
    )


async def entries(
    conn: AsyncConnection[Any], organization_id: int, before: int | None, limit: int
) -> list[Entry]:
    """An organisation's entries older than id ``before`` (all if None), newest first."""
    cur = await conn.execute(PAGE, {"org": organization_id, "before": before, "limit": limit})
    return [Entry(*row) for row in await cur.fetchall()]
