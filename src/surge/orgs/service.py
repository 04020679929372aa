"""Organisations and their API keys.

A key is ``<kind prefix>_<lookup>_<secret>``: ``sk_`` for secret keys (full API access),
``pk_`` for publishable keys (safe in a browser: public donation and tracking calls only).
The lookup finds the row; only sha256 of the secret is stored, and it is compared in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation

from surge.audit import Actor, audit
from surge.errors import Conflict, Invalid, NotFound, Unauthorized
from surge.fields import check_slug, slugify
from surge.orgs import store

PREFIX = {"secret": "sk", "publishable": "pk"}
KIND = {v: k for k, v in PREFIX.items()}


@dataclass(frozen=True, slots=True)
class NewOrganization:
    id: int
    name: str
    secret_key: str
    publishable_key: str
    #: The organisation's part of its giving-day pages' address (/g/{slug}/…).
    slug: str = ""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the organisation behind a verified key."""

    organization_id: int
    key_id: int
    kind: str


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def _new_key(conn: AsyncConnection, organization_id: int, kind: str) -> str:
    lookup = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    await store.insert_api_key(conn, organization_id, kind, lookup, _hash(secret))
    return f"{PREFIX[kind]}_{lookup}_{secret}"


async def create_organization(
    conn: AsyncConnection, name: str, slug: str | None = None
) -> NewOrganization:
    """Create an organisation with one secret and one publishable key (shown only now).

    ``slug`` (its pages' address) is made from the name when not given, with a ``-2``,
    ``-3`` … suffix when taken; a given slug that is taken is a Conflict.
    """
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("name", "name must be 1 to 200 characters")
    if slug is not None:
        check_slug("slug", slug)
    for _ in range(5):  # a generated slug taken by a concurrent insert: choose again
        chosen = slug or free_slug(
            slugify(name, "org"), await store.taken_slugs(conn, slugify(name, "org"))
        )
        try:
            async with conn.transaction():
                org_id = await store.insert_organization(conn, name, chosen)
                secret_key = await _new_key(conn, org_id, "secret")
                publishable_key = await _new_key(conn, org_id, "publishable")
        except UniqueViolation:
            if slug is not None:
                raise Conflict(f"the slug {slug!r} is taken", "slug") from None
            continue
        return NewOrganization(org_id, name, secret_key, publishable_key, chosen)
    raise Conflict("could not choose a free slug; pass one", "slug")


def free_slug(base: str, taken: set[str]) -> str:
    """``base``, or the first of ``base-2``, ``base-3`` … not in ``taken``."""
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


async def slug_of(conn: AsyncConnection, organization_id: int) -> str:
    """The organisation's part of its giving-day pages' address (/g/{slug}/…)."""
    slug = await store.slug_of(conn, organization_id)
    if slug is None:
        raise NotFound(f"organization {organization_id} not found")
    return slug


async def set_slug(conn: AsyncConnection, organization_id: int, slug: str) -> None:
    """Give the organisation a new page address; its old one stops working at once."""
    check_slug("slug", slug)
    try:
        async with conn.transaction():
            found = await store.set_slug(conn, organization_id, slug)
    except UniqueViolation:
        raise Conflict(f"the slug {slug!r} is taken", "slug") from None
    if not found:
        raise NotFound(f"organization {organization_id} not found")


async def page_key(conn: AsyncConnection, organization_id: int) -> str:
    """The publishable key the organisation's hosted pages print into their donation form.

    Kept in clear (a publishable key only donates, and every page shows it), made on first
    use, and replaced when staff have revoked it.
    """
    key = await store.page_key(conn, organization_id)
    if key is not None:
        return key
    async with conn.transaction():
        key = await _new_key(conn, organization_id, "publishable")
        await store.set_page_key(conn, organization_id, key)
    return key


class KeyCache:
    """Verified keys, remembered for a few seconds so a hot endpoint skips the lookup.

    A revoked key therefore keeps working for at most ``ttl`` seconds in each process.
    """

    def __init__(self, ttl: float = 10.0, max_size: int = 10_000) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, token: str) -> Principal | None:
        hit = self._entries.get(token)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, token: str, principal: Principal) -> None:
        if len(self._entries) >= self.max_size:
            self._entries.clear()
        self._entries[token] = (time.monotonic() + self.ttl, principal)


async def authenticate(conn: AsyncConnection, token: str) -> Principal:
    """The principal for an API key token; Unauthorized if it is not a live key."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] not in KIND:
        raise Unauthorized("malformed API key")
    prefix, lookup, secret = parts
    key = await store.find_api_key(conn, lookup)
    if key is None or key.kind != KIND[prefix]:
        raise Unauthorized("unknown or revoked API key")
    if not hmac.compare_digest(key.secret_hash, _hash(secret)):
        raise Unauthorized("unknown or revoked API key")
    return Principal(key.organization_id, key.id, key.kind)


#: Keys an organisation's key page lists at most (live first).
MAX_KEYS_LISTED = 500


@dataclass(frozen=True, slots=True)
class NewKey:
    id: int
    kind: str
    name: str
    token: str  # shown once


async def create_api_key(conn: AsyncConnection, actor: Actor, kind: str, name: str) -> NewKey:
    """A new named key for ``actor``'s organisation; the token is returned this once only."""
    if kind not in PREFIX:
        raise Invalid("kind", "kind must be secret or publishable")
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("name", "give the key a name of 1 to 200 characters (what uses it)")
    lookup = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    async with conn.transaction():
        key_id = await store.insert_named_key(
            conn, actor.organization_id, kind, lookup, _hash(secret), name, actor.user_id
        )
        await audit(
            conn, actor, "api_key.create", f"api_key:{key_id}", {"kind": kind, "name": name}
        )
    return NewKey(key_id, kind, name, f"{PREFIX[kind]}_{lookup}_{secret}")


async def list_api_keys(conn: AsyncConnection, organization_id: int) -> list[store.KeyListing]:
    return await store.list_api_keys(conn, organization_id, MAX_KEYS_LISTED)


async def revoke_api_key(conn: AsyncConnection, actor: Actor, key_id: int) -> store.KeyListing:
    """Revoke a live key (each API process stops accepting it within its key cache's TTL)."""
    async with conn.transaction():
        key = await store.revoke_api_key(conn, actor.organization_id, key_id)
        if key is None:
            raise NotFound("no such live API key")
        await audit(
            conn, actor, "api_key.revoke", f"api_key:{key_id}", {"kind": key.kind, "name": key.name}
        )
    return key
