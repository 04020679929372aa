"""Console sessions in PostgreSQL: any API process serves any signed-in browser.

The cookie holds 32 random bytes; the table holds only their sha256, so a copy of the
database signs nobody in. A session ends at ``expires_at`` (absolute) or after ``idle``
seconds without a request, whichever comes first; ``last_seen_at`` is written at most once a
minute per session, not on every request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

#: ``last_seen_at`` is refreshed when older than this (seconds): bounded writes per viewer.
TOUCH_EVERY = 60


@dataclass(frozen=True, slots=True)
class Session:
    """A live session and the person behind it, as every console request needs them."""

    id: int
    stage: str  # password (second factor pending) | active
    csrf_token: str
    flash: list[dict[str, str]]
    user_id: int
    organization_id: int
    organization_name: str
    email: str
    name: str
    role: str
    totp_enabled: bool


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# Every console request: console_sessions.token_hash unique, users and organizations by key.
LOOKUP = """
select s.id, s.stage, s.csrf_token, s.flash, u.id, u.organization_id, o.name, u.email, u.name,
    u.role, u.totp_secret is not null,
    s.last_seen_at < now() - make_interval(secs => %(touch)s)
from console_sessions s
join users u on u.id = s.user_id and u.disabled_at is null
join organizations o on o.id = u.organization_id
where s.token_hash = %(hash)s and s.expires_at > now()
    and s.last_seen_at > now() - make_interval(secs => %(idle)s)
"""

INSERT = """
insert into console_sessions (token_hash, user_id, organization_id, csrf_token, stage,
    client_addr, user_agent, expires_at)
values (%s, %s, %s, %s, %s, %s, %s, now() + %s)
"""


async def find(conn: AsyncConnection[Any], token: str, idle: float) -> Session | None:
    """The live session of a cookie's token, or None (unknown, expired, idle, disabled)."""
    if not token or len(token) > 100:
        return None
    cur = await conn.execute(
        LOOKUP, {"hash": token_hash(token), "idle": idle, "touch": TOUCH_EVERY}
    )
    row = await cur.fetchone()
    if row is None:
        return None
    *fields, stale = row
    fields[3] = fields[3] or []
    session = Session(*fields)
    if stale:
        await conn.execute(
            "update console_sessions set last_seen_at = now() where id = %s", [session.id]
        )
    return session


async def create(
    conn: AsyncConnection[Any],
    *,
    user_id: int,
    organization_id: int,
    stage: str,
    lifetime: float,
    client_addr: str | None,
    user_agent: str | None,
) -> str:
    """A new session; returns the token for the cookie (never stored)."""
    token = secrets.token_urlsafe(32)
    await conn.execute(
        INSERT,
        [
            token_hash(token),
            user_id,
            organization_id,
            secrets.token_urlsafe(32),
            stage,
            client_addr,
            (user_agent or "")[:300] or None,
            timedelta(seconds=lifetime),
        ],
    )
    return token


async def end(conn: AsyncConnection[Any], session_id: int) -> None:
    await conn.execute("delete from console_sessions where id = %s", [session_id])


async def set_flash(
    conn: AsyncConnection[Any], session_id: int, messages: list[dict[str, str]]
) -> None:
    await conn.execute(
        "update console_sessions set flash = %s where id = %s",
        [Jsonb(messages) if messages else None, session_id],
    )


async def prune(conn: AsyncConnection[Any], idle: float) -> int:
    """Delete sessions past their absolute or idle end (console_sessions_expires_idx for the
    first; the idle ones are few, since every session also has an absolute end)."""
    cur = await conn.execute(
        "delete from console_sessions where expires_at < now()"
        " or last_seen_at < now() - make_interval(secs => %s)",
        [idle],
    )
    return cur.rowcount
