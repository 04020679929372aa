"""SQL for organisations and API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection

from surge.fields import like_escape


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A live API key as authentication needs it."""

    id: int
    organization_id: int
    kind: str
    secret_hash: bytes


async def insert_organization(conn: AsyncConnection, name: str, slug: str) -> int:
    cur = await conn.execute(
        "insert into organizations (name, slug) values (%s, %s) returning id", [name, slug]
    )
    row = await cur.fetchone()
    assert row is not None
    org_id: int = row[0]
    return org_id


async def insert_api_key(
    conn: AsyncConnection, organization_id: int, kind: str, lookup: str, secret_hash: bytes
) -> None:
    await conn.execute(
        "insert into api_keys (organization_id, kind, lookup, secret_hash) values (%s, %s, %s, %s)",
        [organization_id, kind, lookup, secret_hash],
    )


async def find_api_key(conn: AsyncConnection, lookup: str) -> ApiKey | None:
    """The live key with this lookup part. Uses api_keys.lookup unique."""
    cur = await conn.execute(
        "select id, organization_id, kind, secret_hash from api_keys"
        " where lookup = %s and revoked_at is null",
        [lookup],
    )
    row = await cur.fetchone()
    return None if row is None else ApiKey(row[0], row[1], row[2], bytes(row[3]))


async def list_organizations(conn: AsyncConnection) -> list[tuple[int, str]]:
    cur = await conn.execute("select id, name from organizations order by id")
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def organization_exists(conn: AsyncConnection, organization_id: int) -> bool:
    cur = await conn.execute("select 1 from organizations where id = %s", [organization_id])
    return await cur.fetchone() is not None


async def taken_slugs(conn: AsyncConnection, base: str) -> set[str]:
    """The organisation slugs that are ``base`` or ``base-<something>`` (organizations_slug_idx)."""
    cur = await conn.execute(
        "select slug from organizations where slug = %s or slug like %s",
        [base, like_escape(base) + "-%"],
    )
    return {row[0] for row in await cur.fetchall()}


async def slug_of(conn: AsyncConnection, organization_id: int) -> str | None:
    cur = await conn.execute("select slug from organizations where id = %s", [organization_id])
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def set_slug(conn: AsyncConnection, organization_id: int, slug: str) -> bool:
    """Change the organisation's slug; False if there is no such organisation."""
    cur = await conn.execute(
        "update organizations set slug = %s where id = %s", [slug, organization_id]
    )
    return cur.rowcount == 1


async def page_key(conn: AsyncConnection, organization_id: int) -> str | None:
    """The organisation's hosted-page publishable key, if it has one and it is not revoked."""
    cur = await conn.execute(
        "select o.page_key from organizations o join api_keys k"
        " on k.lookup = split_part(o.page_key, '_', 2) and k.revoked_at is null"
        " where o.id = %s",
        [organization_id],
    )
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def set_page_key(conn: AsyncConnection, organization_id: int, key: str) -> None:
    await conn.execute(
        "update organizations set page_key = %s where id = %s", [key, organization_id]
    )


@dataclass(frozen=True, slots=True)
class KeyListing:
    """An API key as the console lists it: never its secret."""

    id: int
    kind: str
    lookup: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None
    created_by: str | None


async def insert_named_key(
    conn: AsyncConnection,
    organization_id: int,
    kind: str,
    lookup: str,
    secret_hash: bytes,
    name: str,
    created_by: int | None,
) -> int:
    cur = await conn.execute(
        "insert into api_keys (organization_id, kind, lookup, secret_hash, name, created_by)"
        " values (%s, %s, %s, %s, %s, %s) returning id",
        [organization_id, kind, lookup, secret_hash, name, created_by],
    )
    row = await cur.fetchone()
    assert row is not None
    key_id: int = row[0]
    return key_id


async def list_api_keys(
    conn: AsyncConnection, organization_id: int, limit: int
) -> list[KeyListing]:
    """An organisation's keys, live ones first, newest first (api_keys_organization_idx)."""
    cur = await conn.execute(
        "select k.id, k.kind, k.lookup, k.name, k.created_at, k.revoked_at, u.email"
        " from api_keys k left join users u on u.id = k.created_by"
        " where k.organization_id = %s"
        " order by k.revoked_at is not null, k.id desc limit %s",
        [organization_id, limit],
    )
    return [KeyListing(*row) for row in await cur.fetchall()]


async def revoke_api_key(
    conn: AsyncConnection, organization_id: int, key_id: int
) -> KeyListing | None:
    """Revoke a live key of the organisation; None if there is no such live key."""
    cur = await conn.execute(
        "update api_keys set revoked_at = now()"
        " where id = %s and organization_id = %s and revoked_at is null"
        " returning id, kind, lookup, name, created_at, revoked_at, null::text",
        [key_id, organization_id],
    )
    row = await cur.fetchone()
    return None if row is None else KeyListing(*row)
