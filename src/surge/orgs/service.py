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

from surge.errors import Invalid, Unauthorized
from surge.orgs import store

PREFIX = {"secret": "sk", "publishable": "pk"}
KIND = {v: k for k, v in PREFIX.items()}


@dataclass(frozen=True, slots=True)
class NewOrganization:
    id: int
    name: str
    secret_key: str
    publishable_key: str


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


async def create_organization(conn: AsyncConnection, name: str) -> NewOrganization:
    """Create an organisation with one secret and one publishable key (shown only now)."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("name", "name must be 1 to 200 characters")
    async with conn.transaction():
        org_id = await store.insert_organization(conn, name)
        secret_key = await _new_key(conn, org_id, "secret")
        publishable_key = await _new_key(conn, org_id, "publishable")
    return NewOrganization(org_id, name, secret_key, publishable_key)


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
