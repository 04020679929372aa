"""SQL for the people who sign in to the console (table ``users``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation

from surge.errors import Conflict


@dataclass(frozen=True, slots=True)
class User:
    """A person as the console shows them (no secrets)."""

    id: int
    organization_id: int
    email: str
    name: str
    role: str
    totp_enabled: bool
    disabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a login checks: the user and their secrets."""

    user: User
    password_hash: str
    totp_secret: str | None
    totp_pending_secret: str | None
    totp_last_step: int | None


_USER = (
    "u.id, u.organization_id, u.email, u.name, u.role, u.totp_secret is not null,"
    " u.disabled_at is not null, u.created_at"
)
_SECRETS = "u.password_hash, u.totp_secret, u.totp_pending_secret, u.totp_last_step"


def _credentials(row: tuple[Any, ...]) -> Credentials:
    return Credentials(User(*row[:8]), *row[8:])


async def insert_user(
    conn: AsyncConnection[Any],
    organization_id: int,
    email: str,
    name: str,
    role: str,
    password_hash: str,
) -> User:
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "insert into users as u (organization_id, email, name, role, password_hash)"
                f" values (%s, %s, %s, %s, %s) returning {_USER}",
                [organization_id, email, name, role, password_hash],
            )
    except UniqueViolation:
        raise Conflict(f"{email} already has an account in this organisation", "email") from None
    row = await cur.fetchone()
    assert row is not None
    return User(*row)


async def login_candidates(conn: AsyncConnection[Any], email: str) -> list[Credentials]:
    """Enabled people with this address, in any organisation (users_email_idx)."""
    cur = await conn.execute(
        f"select {_USER}, {_SECRETS} from users u"
        " where lower(u.email) = lower(%s) and u.disabled_at is null order by u.id limit 20",
        [email],
    )
    return [_credentials(row) for row in await cur.fetchall()]


async def credentials(
    conn: AsyncConnection[Any], organization_id: int, user_id: int, *, lock: bool = False
) -> Credentials | None:
    """One person of the organisation with their secrets (primary key)."""
    cur = await conn.execute(
        f"select {_USER}, {_SECRETS} from users u where u.id = %s and u.organization_id = %s"
        + (" for update" if lock else ""),
        [user_id, organization_id],
    )
    row = await cur.fetchone()
    return None if row is None else _credentials(row)


async def list_users(conn: AsyncConnection[Any], organization_id: int, limit: int) -> list[User]:
    """An organisation's people by email (users_organization_email_idx)."""
    cur = await conn.execute(
        f"select {_USER} from users u where u.organization_id = %s"
        " order by lower(u.email) limit %s",
        [organization_id, limit],
    )
    return [User(*row) for row in await cur.fetchall()]


async def active_owners(conn: AsyncConnection[Any], organization_id: int) -> list[int]:
    """Ids of the enabled owners, locked: the last one may not be demoted or disabled."""
    cur = await conn.execute(
        "select id from users where organization_id = %s and role = 'owner'"
        " and disabled_at is null order by id for update",
        [organization_id],
    )
    return [row[0] for row in await cur.fetchall()]


async def update_user(
    conn: AsyncConnection[Any], organization_id: int, user_id: int, **columns: Any
) -> None:
    """Set ``columns`` (names from this module's callers only, never from input)."""
    assigns = ", ".join(f"{name} = %s" for name in columns)
    await conn.execute(
        f"update users set {assigns}, updated_at = now() where id = %s and organization_id = %s",
        [*columns.values(), user_id, organization_id],
    )


async def set_disabled(
    conn: AsyncConnection[Any], organization_id: int, user_id: int, disabled: bool
) -> None:
    await conn.execute(
        "update users set disabled_at = case when %s then coalesce(disabled_at, now()) end,"
        " updated_at = now() where id = %s and organization_id = %s",
        [disabled, user_id, organization_id],
    )


async def end_sessions(
    conn: AsyncConnection[Any], user_id: int, keep_session_id: int | None = None
) -> None:
    """Sign a person out of every console session but ``keep_session_id``
    (console_sessions_user_idx): after a password change, a disable or a lost second factor."""
    await conn.execute(
        "delete from console_sessions where user_id = %s and id is distinct from %s",
        [user_id, keep_session_id],
    )


async def organization_names(conn: AsyncConnection[Any], ids: list[int]) -> dict[int, str]:
    cur = await conn.execute("select id, name from organizations where id = any(%s)", [ids])
    return {row[0]: row[1] for row in await cur.fetchall()}
