"""The import service called directly on a pool, as the job and the benchmark call it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from surge.contacts import imports, service
from surge.db.pool import open_pool
from surge.orgs.service import create_organization

ROWS = 120_000


async def body() -> AsyncIterator[bytes]:
    yield b"email,first_name,status\n"
    for start in range(0, ROWS, 10_000):
        yield b"".join(b"p%d@pool.io,P%d,\n" % (i, i) for i in range(start, start + 10_000))


async def test_a_pool_of_one_connection_imports_everything(database_url: str) -> None:
    # An import reads its chunks, merges and finishes on one connection: it never needs a
    # second one (imports holding one while waiting for another deadlocked a small pool).
    pool = await open_pool(database_url, max_size=1)
    try:
        async with pool.connection() as conn:
            org = (await create_organization(conn, "Small Pool")).id
            created, _ = await service.create_import(conn, org, body(), max_bytes=2**30)
        assert await imports.process_import(pool, org, created.id) == "completed"
        async with pool.connection() as conn:
            done = await service.get_import(conn, org, created.id)
            cur = await conn.execute(
                "select count(*) from contacts where organization_id = %s", [org]
            )
            assert await cur.fetchone() == (ROWS,)
        assert (done.rows_total, done.rows_imported, done.rows_failed) == (ROWS, ROWS, 0)
        # The job running again (a duplicate delivery) finds nothing to do.
        assert await imports.process_import(pool, org, created.id) is None
    finally:
        await pool.close()


async def test_another_organisation_cannot_run_an_import(database_url: str) -> None:
    pool = await open_pool(database_url, max_size=4)
    try:
        async with pool.connection() as conn:
            org = (await create_organization(conn, "Owner")).id
            other = (await create_organization(conn, "Other")).id
            created, _ = await service.create_import(
                conn, org, body(), max_bytes=2**30, filename="x.csv"
            )
        assert await imports.process_import(pool, other, created.id) is None
        async with pool.connection() as conn:
            assert (await service.get_import(conn, org, created.id)).status == "queued"
    finally:
        await pool.close()
