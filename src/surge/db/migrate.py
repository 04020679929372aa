"""Forward-only, numbered SQL migrations, applied under a transaction-level advisory lock.

Each ``NNNN_name.sql`` file in ``migrations/`` runs in its own transaction together
with the row that records it, so a migration is either wholly applied or not at all.
The lock is ``pg_advisory_xact_lock`` (released at commit, never held by a session),
so two processes migrating at once simply take turns and the second finds nothing to do.
A file whose first line is ``-- surge:no-transaction`` runs outside a transaction, for
``CREATE INDEX CONCURRENTLY`` on big tables, one statement at a time (each ends a line with
``;``); it must be written to be re-runnable. Such a file is claimed first in
``schema_migration_claims`` by the process that runs it; the others wait for it to be
recorded. The claim is a lease the claimer renews from a second connection while its
statements run, so a claim whose process died is taken over once the lease runs out. Nothing
here depends on a server session (no session lock, no backend pid): ``surge migrate``
works through PgBouncer in transaction mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from dataclasses import dataclass
from importlib import resources

from psycopg import AsyncConnection, OperationalError
from psycopg.conninfo import make_conninfo

log = logging.getLogger(__name__)

# An arbitrary constant: the advisory lock key every Surge process agrees on.
MIGRATION_LOCK_KEY = 7_310_401_001
NO_TRANSACTION = "-- surge:no-transaction"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    """The migrations shipped with this version of Surge, in order."""
    found = []
    for entry in resources.files("surge.db.migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


def statements(text: str) -> list[str]:
    """The statements of a no-transaction file: split where a line ends with ``;``."""
    found, current = [], []
    for line in text.splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            found.append("\n".join(current))
            current = []
    rest = "\n".join(current)
    if any(line.strip() and not line.strip().startswith("--") for line in current):
        found.append(rest)
    return found


async def _ensure_table(conn: AsyncConnection) -> None:
    await conn.execute(
        """
        create table if not exists schema_migrations (
            version integer primary key,
            name text not null,
            applied_at timestamptz not null default now()
        )
        """
    )
    await conn.execute(
        """
        create table if not exists schema_migration_claims (
            version integer primary key,
            pid integer not null,
            claimed_at timestamptz not null default now()
        )
        """
    )
    # Who holds a claim: a random id per run (a backend pid says nothing behind PgBouncer).
    await conn.execute("alter table schema_migration_claims add column if not exists owner text")


async def migrate_url(url: str) -> list[str]:
    """Apply pending migrations to the database at ``url``; returns the names applied."""
    from surge.db.pool import connect

    conn = await connect(url)
    try:
        return [f"{m.version:04d}_{m.name}" for m in await migrate(conn)]
    finally:
        await conn.close()


async def applied_versions(conn: AsyncConnection) -> set[int]:
    cur = await conn.execute("select version from schema_migrations")
    return {row[0] for row in await cur.fetchall()}


async def migrate(conn: AsyncConnection) -> list[Migration]:
    """Apply every pending migration; returns those this call applied."""
    await conn.set_autocommit(True)
    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(%s)", [MIGRATION_LOCK_KEY])
        await _ensure_table(conn)
    done: list[Migration] = []
    for migration in available():
        if await _apply_one(conn, migration):
            done.append(migration)
    return done


# A no-transaction migration cannot hold the transaction-level lock while it runs, so the
# process about to run one claims it first; others wait for it to be recorded. The claim is a
# lease renewed every CLAIM_RENEW_SECONDS; one not renewed for CLAIM_LEASE_SECONDS (its
# process died) is taken over: the files are re-runnable. Not the claimer's backend pid, as
# before: behind PgBouncer that is whichever server connection ran the statement, alive long
# after the process that claimed is gone, and the release landed on another one.
CLAIM = """
insert into schema_migration_claims as c (version, pid, owner)
values (%(v)s, pg_backend_pid(), %(owner)s)
on conflict (version) do update set pid = excluded.pid, owner = excluded.owner, claimed_at = now()
where c.claimed_at < now() - make_interval(secs => %(lease)s)
returning version
"""
RENEW = "update schema_migration_claims set claimed_at = now() where version = %s and owner = %s"
RELEASE = "delete from schema_migration_claims where version = %s and owner = %s"
CLAIM_POLL_SECONDS = 0.2
CLAIM_LEASE_SECONDS = 30.0
CLAIM_RENEW_SECONDS = 5.0


async def _apply_one(conn: AsyncConnection, migration: Migration) -> bool:
    if migration.sql.startswith(NO_TRANSACTION):
        return await _apply_outside_transaction(conn, migration)

    async with conn.transaction():
        await conn.execute("select pg_advisory_xact_lock(%s)", [MIGRATION_LOCK_KEY])
        if migration.version in await applied_versions(conn):
            return False
        log.info("applying migration", extra={"version": migration.version})
        await conn.execute(migration.sql.encode())
        await conn.execute(
            "insert into schema_migrations (version, name) values (%s, %s)",
            [migration.version, migration.name],
        )
    return True


async def _apply_outside_transaction(conn: AsyncConnection, migration: Migration) -> bool:
    """Concurrent index builds cannot run in a transaction: claim, run, record, release.

    Two processes building the same index concurrently could deadlock, and both would
    report the migration applied; the claim makes it one.
    """
    owner = uuid.uuid4().hex
    claim = {"v": migration.version, "owner": owner, "lease": CLAIM_LEASE_SECONDS}
    while True:
        if migration.version in await applied_versions(conn):
            return False
        cur = await conn.execute(CLAIM, claim)
        if await cur.fetchone() is not None:
            break
        await asyncio.sleep(CLAIM_POLL_SECONDS)  # another process is running it
    renewing = asyncio.create_task(_renew(_conninfo(conn), migration.version, owner))
    try:
        if migration.version in await applied_versions(conn):
            return False  # recorded between our check and our claim
        log.info("applying migration", extra={"version": migration.version})
        # One statement at a time: several in one query would run as one transaction.
        for statement in statements(migration.sql):
            await conn.execute(statement.encode())
        await conn.execute(
            "insert into schema_migrations (version, name) values (%s, %s) on conflict do nothing",
            [migration.version, migration.name],
        )
        return True
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        await conn.execute(RELEASE, [migration.version, owner])


def _conninfo(conn: AsyncConnection) -> str:
    """How to open another connection like ``conn`` (its DSN leaves the password out)."""
    password = conn.info.password
    return make_conninfo(conn.info.dsn, **({"password": password} if password else {}))


async def _renew(conninfo: str, version: int, owner: str) -> None:
    """Renew a claim's lease until cancelled, from a connection of its own: the claimer's
    is busy with a statement that may run for many minutes."""
    from surge.db.pool import connect

    renewer: AsyncConnection | None = None
    try:
        while True:
            await asyncio.sleep(CLAIM_RENEW_SECONDS)
            try:
                if renewer is None or renewer.closed:
                    renewer = await connect(conninfo)
                await renewer.execute(RENEW, [version, owner])
            except OperationalError as exc:  # tried again at the next beat
                log.warning("could not renew a migration claim", extra={"error": str(exc)})
    finally:
        if renewer is not None:
            await renewer.close()
