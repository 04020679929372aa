"""The group-commit writer's failure rules, with a flush function standing in for the COPY.

The writer against a real database is in tests/integration/test_ingest_poison.py and
test_ingest_outage.py; here each rule is pinned down with rows that fail on demand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import psycopg
import pytest

from surge.db.group_commit import GroupCommitWriter, Rejected, Unavailable


class Pool:
    """Hands out a placeholder connection: the flush below never uses it."""

    @asynccontextmanager
    async def connection(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 (psycopg_pool's signature)
    ) -> AsyncIterator[object]:
        yield object()


class Table:
    """A flush target: stores rows, refuses "bad" ones as the database would."""

    def __init__(self) -> None:
        self.rows: list[str] = []
        self.flushes = 0
        self.error: Exception | None = None
        self.hang = asyncio.Event()
        self.hang.set()

    async def flush(self, conn: Any, rows: Sequence[str]) -> None:
        self.flushes += 1
        await self.hang.wait()
        if self.error is not None:
            raise self.error
        if "bad" in rows:
            raise psycopg.errors.InvalidTextRepresentation("invalid input syntax for type json")
        self.rows.extend(rows)


def writer(table: Table, **options: Any) -> GroupCommitWriter[str]:
    options.setdefault("max_delay", 0.05)
    options.setdefault("transaction", False)  # one statement, as the events COPY
    w: GroupCommitWriter[str] = GroupCommitWriter(cast(Any, Pool()), table.flush, **options)
    w.start()
    return w


async def test_bad_requests_are_rejected_alone_and_the_rest_stored_once() -> None:
    table = Table()
    w = writer(table)
    batches = [[f"r{i}a", f"r{i}b"] for i in range(16)]
    batches[3] = ["r3a", "bad"]
    batches[11] = ["bad"]
    results = await asyncio.gather(*(w.write(b) for b in batches), return_exceptions=True)
    await w.close()
    assert [i for i, r in enumerate(results) if isinstance(r, Rejected)] == [3, 11]
    assert all(r is None for i, r in enumerate(results) if i not in (3, 11))
    good = [row for i, b in enumerate(batches) if i not in (3, 11) for row in b]
    assert sorted(table.rows) == sorted(good)
    # Bisection, not one flush per request: 1 + 2 * 2 * log2(16) at most.
    assert table.flushes <= 17


async def test_a_connection_error_fails_the_flush_as_unavailable_without_splitting() -> None:
    table = Table()
    table.error = psycopg.OperationalError("connection refused")
    w = writer(table)
    results = await asyncio.gather(*(w.write([f"r{i}"]) for i in range(8)), return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results), results
    assert table.flushes == 1
    # And the next flush simply tries again: the writer recovers with the database.
    table.error = None
    await w.write(["after"])
    await w.close()
    assert table.rows == ["after"]


async def test_a_bug_in_the_flush_is_not_blamed_on_the_rows() -> None:
    table = Table()
    table.error = psycopg.errors.UndefinedTable('relation "events" does not exist')
    w = writer(table)
    results = await asyncio.gather(*(w.write([f"r{i}"]) for i in range(4)), return_exceptions=True)
    await w.close()
    assert all(isinstance(r, psycopg.errors.UndefinedTable) for r in results), results
    assert table.flushes == 1


async def test_a_write_stuck_behind_a_hung_flush_gives_up_within_its_timeout() -> None:
    table = Table()
    table.hang.clear()
    w = writer(table, max_delay=0.001, write_timeout=0.3)
    started = time.monotonic()
    first = asyncio.create_task(w.write(["first"]))
    await asyncio.sleep(0.05)  # the first flush is now hanging with "first"
    with pytest.raises(Unavailable) as queued:
        await w.write(["queued"])
    with pytest.raises(Unavailable) as sent:
        await first
    assert time.monotonic() - started < 1.0
    # "first" had reached the database: its fate is unknown, and the client is told so.
    assert sent.value.maybe_stored
    assert "in time" in str(queued.value)
    await asyncio.sleep(0.4)  # the flush that took "queued" times out too: nothing stored
    table.hang.set()
    await w.write(["later"])
    await w.close()
    assert table.rows == ["later"]
