"""DKIM keys per sending domain: generate, activate (rotating out the old one), look up.

``surge dkim generate`` stores a pending key and prints its DNS record; once the record is
published, ``surge dkim activate`` makes the key the one that signs and retires the previous
key of the same algorithm (its record should stay published a few days, for mail in
flight). Senders look keys up through ``SignerCache``: one query per domain per minute, the
private keys parsed once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from surge.delivery import dkim
from surge.errors import Conflict, Invalid, NotFound

Conn = AsyncConnection[Any]


@dataclass(frozen=True, slots=True)
class Key:
    """A stored key, without its private half."""

    domain: str
    selector: str
    algorithm: str
    state: str
    dns_value: str
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None

    @property
    def dns_record(self) -> str:
        return dkim.dns_record(self.domain, self.selector, self.dns_value)


KEY_COLUMNS = "domain, selector, algorithm, state, dns_value, created_at, activated_at, retired_at"


def check_domain(domain: str) -> str:
    domain = domain.strip().rstrip(".").lower()
    if not dkim.valid_domain(domain):
        raise Invalid("domain", f"{domain!r} is not a domain name")
    return domain


def default_selector(algorithm: dkim.Algorithm, now: datetime | None = None) -> str:
    """``s202612r`` / ``s202612e``: the month and the algorithm, so rotations do not clash."""
    month = (now or datetime.now(UTC)).strftime("%Y%m")
    return f"s{month}{'r' if algorithm == 'rsa-sha256' else 'e'}"


async def generate(
    conn: Conn, domain: str, algorithm: dkim.Algorithm, selector: str | None = None
) -> Key:
    """A new pending key for ``domain``; Conflict if the selector is taken."""
    domain = check_domain(domain)
    selector = selector or default_selector(algorithm)
    if not dkim.valid_selector(selector):
        raise Invalid("selector", f"{selector!r} is not a DNS label")
    private = dkim.generate_key(algorithm)
    cur = conn.cursor(row_factory=class_row(Key))
    try:
        await cur.execute(
            "insert into dkim_keys (domain, selector, algorithm, private_key, dns_value)"
            f" values (%s, %s, %s, %s, %s) returning {KEY_COLUMNS}",
            [domain, selector, algorithm, dkim.private_pem(private), dkim.dns_value(private)],
        )
    except UniqueViolation:
        raise Conflict(f"{domain} already has a key with selector {selector!r}") from None
    key = await cur.fetchone()
    assert key is not None
    return key


async def activate(conn: Conn, domain: str, selector: str) -> Key:
    """Make the key the one that signs for its domain; retire the active one it replaces."""
    domain = check_domain(domain)
    async with conn.transaction():
        cur = await conn.execute(
            "select algorithm, state from dkim_keys where domain = %s and selector = %s for update",
            [domain, selector],
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"no key {selector!r} for {domain}")
        algorithm, state = row
        if state == "retired":
            raise Conflict(f"key {selector!r} of {domain} is retired; generate a new one")
        await conn.execute(
            "update dkim_keys set state = 'retired', retired_at = now()"
            " where domain = %s and algorithm = %s and state = 'active' and selector <> %s",
            [domain, algorithm, selector],
        )
        await conn.execute(
            "update dkim_keys set state = 'active', activated_at = coalesce(activated_at, now())"
            " where domain = %s and selector = %s",
            [domain, selector],
        )
    return await _get(conn, domain, selector)


async def retire(conn: Conn, domain: str, selector: str) -> Key:
    """Stop signing with the key (mail from its domain goes out unsigned by it)."""
    domain = check_domain(domain)
    cur = await conn.execute(
        "update dkim_keys set state = 'retired', retired_at = coalesce(retired_at, now())"
        " where domain = %s and selector = %s",
        [domain, selector],
    )
    if cur.rowcount == 0:
        raise NotFound(f"no key {selector!r} for {domain}")
    return await _get(conn, domain, selector)


async def list_keys(conn: Conn, domain: str | None = None) -> list[Key]:
    cur = conn.cursor(row_factory=class_row(Key))
    await cur.execute(
        f"select {KEY_COLUMNS} from dkim_keys where %(domain)s::text is null or domain = %(domain)s"
        " order by domain, created_at, selector",
        {"domain": check_domain(domain) if domain else None},
    )
    return await cur.fetchall()


async def _get(conn: Conn, domain: str, selector: str) -> Key:
    cur = conn.cursor(row_factory=class_row(Key))
    await cur.execute(
        f"select {KEY_COLUMNS} from dkim_keys where domain = %s and selector = %s",
        [domain, selector],
    )
    key = await cur.fetchone()
    if key is None:
        raise NotFound(f"no key {selector!r} for {domain}")
    return key


async def active_signers(conn: Conn, domain: str) -> tuple[dkim.Signer, ...]:
    """The signers of ``domain``'s active keys, RSA first."""
    cur = await conn.execute(
        "select selector, private_key from dkim_keys where domain = %s and state = 'active'"
        " order by algorithm desc",
        [domain.lower()],
    )
    return tuple(
        dkim.Signer(domain.lower(), selector, dkim.load_private_key(pem))
        for selector, pem in await cur.fetchall()
    )


class SignerCache:
    """Active signers per domain, re-read at most every ``ttl`` seconds."""

    def __init__(self, pool: AsyncConnectionPool, ttl: float = 60.0) -> None:
        self.pool = pool
        self.ttl = ttl
        self._entries: dict[str, tuple[float, tuple[dkim.Signer, ...]]] = {}
        self._lock = asyncio.Lock()

    async def signers(self, domain: str) -> tuple[dkim.Signer, ...]:
        """The signers for mail from ``domain`` (none: send unsigned)."""
        domain = domain.lower()
        entry = self._entries.get(domain)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        async with self._lock:
            entry = self._entries.get(domain)
            if entry is not None and entry[0] > time.monotonic():
                return entry[1]
            async with self.pool.connection() as conn:
                found = await active_signers(conn, domain)
            self._entries[domain] = (time.monotonic() + self.ttl, found)
            return found
