"""The people of an organisation who use the console: roles, passwords, second factors.

Roles are ordered: a viewer reads; an editor also changes contacts, lists and messages; an
admin also API keys, webhooks and refunds; an owner also people. Every change is audited in
its own transaction. An organisation always keeps at least one enabled owner.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from surge.audit import Actor, audit
from surge.errors import Conflict, Forbidden, Invalid, NotFound
from surge.fields import check_email
from surge.users import passwords, store
from surge.users.store import Credentials, User

#: Lowest to highest; each role may do everything the ones before it may.
ROLES = ("viewer", "editor", "admin", "owner")
#: People listed per organisation at most (an organisation's staff, not its contacts).
MAX_USERS = 1000


def rank(role: str) -> int:
    return ROLES.index(role)


def allows(role: str, needed: str) -> bool:
    """Whether a person with ``role`` may do what needs ``needed``."""
    return rank(role) >= rank(needed)


def check_role(field: str, role: str) -> str:
    if role not in ROLES:
        raise Invalid(field, f"{field} must be one of {', '.join(ROLES)}")
    return role


def check_name(field: str, name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid(field, "name must be 1 to 200 characters")
    return name


async def create_user(
    conn: AsyncConnection[Any],
    actor: Actor,
    *,
    email: str,
    name: str,
    role: str,
    password: str,
) -> User:
    """Add a person to ``actor``'s organisation; Conflict if the address is taken there."""
    email = check_email("email", email)
    name = check_name("name", name or email.split("@")[0])
    check_role("role", role)
    passwords.check_password("password", password)
    password_hash = await passwords.hash_password(password)
    async with conn.transaction():
        user = await store.insert_user(
            conn, actor.organization_id, email, name, role, password_hash
        )
        await audit(conn, actor, "user.create", f"user:{user.id}", {"email": email, "role": role})
    return user


async def list_users(conn: AsyncConnection[Any], organization_id: int) -> list[User]:
    return await store.list_users(conn, organization_id, MAX_USERS)


async def _locked(conn: AsyncConnection[Any], actor: Actor, user_id: int) -> Credentials:
    found = await store.credentials(conn, actor.organization_id, user_id, lock=True)
    if found is None:
        raise NotFound("no such user")
    return found


async def _keep_an_owner(conn: AsyncConnection[Any], actor: Actor, user: User) -> None:
    owners = await store.active_owners(conn, actor.organization_id)
    if owners == [user.id]:
        raise Conflict("the organisation's last owner must stay an enabled owner", "role")


async def set_role(conn: AsyncConnection[Any], actor: Actor, user_id: int, role: str) -> User:
    """Change a person's role (effective on their next request)."""
    check_role("role", role)
    async with conn.transaction():
        user = (await _locked(conn, actor, user_id)).user
        if user.role == role:
            return user
        if user.role == "owner":
            await _keep_an_owner(conn, actor, user)
        await store.update_user(conn, actor.organization_id, user_id, role=role)
        await audit(conn, actor, "user.role", f"user:{user_id}", {"from": user.role, "to": role})
    return user


async def set_disabled(
    conn: AsyncConnection[Any], actor: Actor, user_id: int, disabled: bool
) -> None:
    """Disable a person (signed out everywhere at once) or enable them again."""
    async with conn.transaction():
        user = (await _locked(conn, actor, user_id)).user
        if user.disabled == disabled:
            return
        if disabled:
            if user_id == actor.user_id:
                raise Conflict("you cannot disable yourself")
            if user.role == "owner":
                await _keep_an_owner(conn, actor, user)
            await store.end_sessions(conn, user_id)
        await store.set_disabled(conn, actor.organization_id, user_id, disabled)
        action = "user.disable" if disabled else "user.enable"
        await audit(conn, actor, action, f"user:{user_id}", {"email": user.email})


async def change_password(
    conn: AsyncConnection[Any],
    actor: Actor,
    *,
    current: str,
    new: str,
    keep_session_id: int | None,
) -> None:
    """The signed-in person changes their own password; their other sessions end."""
    assert actor.user_id is not None
    passwords.check_password("new_password", new)
    found = await store.credentials(conn, actor.organization_id, actor.user_id)
    if found is None:
        raise NotFound("no such user")
    if not await passwords.verify_password(found.password_hash, current):
        raise Invalid("current_password", "this is not your current password")
    password_hash = await passwords.hash_password(new)
    async with conn.transaction():
        await store.update_user(
            conn, actor.organization_id, actor.user_id, password_hash=password_hash
        )
        await store.end_sessions(conn, actor.user_id, keep_session_id)
        await audit(conn, actor, "user.password", f"user:{actor.user_id}")


async def begin_totp(conn: AsyncConnection[Any], actor: Actor) -> str:
    """A new pending TOTP secret for the signed-in person (not required until confirmed)."""
    assert actor.user_id is not None
    secret = passwords.new_totp_secret()
    async with conn.transaction():
        user = (await _locked(conn, actor, actor.user_id)).user
        if user.totp_enabled:
            raise Conflict("two-factor authentication is already on; turn it off first")
        await store.update_user(
            conn, actor.organization_id, actor.user_id, totp_pending_secret=secret
        )
    return secret


async def confirm_totp(conn: AsyncConnection[Any], actor: Actor, code: str) -> None:
    """Turn the pending secret on, proven by a current code from the person's app."""
    assert actor.user_id is not None
    async with conn.transaction():
        found = await _locked(conn, actor, actor.user_id)
        if found.totp_pending_secret is None:
            raise Conflict("start enrolment first", "code")
        step = passwords.totp_step(found.totp_pending_secret, code, None)
        if step is None:
            raise Invalid("code", "that code is not valid; enter the current one from your app")
        await store.update_user(
            conn,
            actor.organization_id,
            actor.user_id,
            totp_secret=found.totp_pending_secret,
            totp_pending_secret=None,
            totp_last_step=step,
        )
        await audit(conn, actor, "user.totp_enable", f"user:{actor.user_id}")


async def disable_totp(conn: AsyncConnection[Any], actor: Actor, password: str) -> None:
    """Turn the second factor off; the person proves it is them with their password."""
    assert actor.user_id is not None
    found = await store.credentials(conn, actor.organization_id, actor.user_id)
    if found is None:
        raise NotFound("no such user")
    if not await passwords.verify_password(found.password_hash, password):
        raise Invalid("password", "this is not your current password")
    async with conn.transaction():
        await store.update_user(
            conn,
            actor.organization_id,
            actor.user_id,
            totp_secret=None,
            totp_pending_secret=None,
            totp_last_step=None,
        )
        await audit(conn, actor, "user.totp_disable", f"user:{actor.user_id}")


async def check_totp(conn: AsyncConnection[Any], found: Credentials, code: str) -> bool:
    """Whether ``code`` is a fresh valid code of the person's confirmed secret; it is
    spent (the same code cannot sign in twice)."""
    if found.totp_secret is None:
        return False
    async with conn.transaction():
        locked = await store.credentials(conn, found.user.organization_id, found.user.id, lock=True)
        if locked is None or locked.totp_secret is None:
            return False
        step = passwords.totp_step(locked.totp_secret, code, locked.totp_last_step)
        if step is None:
            return False
        await store.update_user(
            conn, found.user.organization_id, found.user.id, totp_last_step=step
        )
    return True


async def authenticate(conn: AsyncConnection[Any], email: str, password: str) -> list[Credentials]:
    """The enabled people with this address whose password ``password`` is (usually one;
    several when the same person uses one password in several organisations)."""
    candidates = await store.login_candidates(conn, email.strip())
    if not candidates:
        await passwords.verify_password(None, password)  # same time as a wrong password
        return []
    matched = []
    for found in candidates:
        if await passwords.verify_password(found.password_hash, password):
            matched.append(found)
            if passwords.needs_rehash(found.password_hash):
                new_hash = await passwords.hash_password(password)
                await store.update_user(
                    conn, found.user.organization_id, found.user.id, password_hash=new_hash
                )
    return matched


def require_role(actor_role: str, needed: str) -> None:
    """Forbidden unless ``actor_role`` allows what needs ``needed``."""
    if not allows(actor_role, needed):
        raise Forbidden(f"this needs the {needed} role or higher; you are {actor_role}")
