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

#: Seconds the pool keeps retrying a lost connection before it gives up and starts afresh on
#: the next request. Its retries back off by doubling, so with psycopg_pool's default (5 min)
#: a database back after a 1-minute outage could wait another minute for the next attempt;
#: starting over every 10 s keeps that wait to a few seconds.
RECONNECT_TIMEOUT = 10.0


def connect_kwargs() -> dict[str, Any]:
    return {"autocommit": True, "prepare_threshold": None}


async def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, getconn_timeout: float = 30
) -> AsyncConnectionPool:
    """Open a pool to ``url`` and wait until its first connection works.

    ``getconn_timeout``: seconds a request for a connection waits (then PoolTimeout).
    """
    pool: AsyncConnectionPool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs=connect_kwargs(),
        open=False,
        timeout=getconn_timeout,
        reconnect_timeout=RECONNECT_TIMEOUT,
    )
    await pool.open(wait=True, timeout=30)
    return pool


async def connect(url: str) -> AsyncConn:
    """A single autocommit connection, for CLI commands and tests."""
    return await AsyncConnection.connect(url, **connect_kwargs())
