"""Connection pools, one per process, and the URL they connect to.

Connections are opened with ``prepare_threshold=None`` so that statements are never
prepared server-side: Surge must run behind PgBouncer in transaction mode, where a
prepared statement may land on another server connection.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

AsyncConn = AsyncConnection[TupleRow]


def connect_kwargs() -> dict[str, Any]:
    return {"autocommit": True, "prepare_threshold": None}


async def open_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> AsyncConnectionPool:
    """Open a pool to ``url`` and wait until its first connection works."""
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs=connect_kwargs(),
        open=False,
        timeout=30,
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def connect(url: str) -> AsyncConn:
    """A single autocommit connection, for CLI commands and tests."""
    return await AsyncConnection.connect(url, **connect_kwargs())
