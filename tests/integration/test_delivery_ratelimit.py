"""The shared per-sender token bucket, on the real database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from surge.db.pool import AsyncConn, connect
from surge.delivery.ratelimit import TokenBucket, acquire, take_tokens


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[AsyncConn]:
    c = await connect(database_url)
    yield c
    await c.close()


async def test_a_new_bucket_starts_full_then_refills_at_the_rate(conn: AsyncConn) -> None:
    assert await acquire(conn, "fresh", 50, rate=100, burst=30) == 30
    empty = await take_tokens(conn, "fresh", 50, rate=100, burst=30)
    assert empty.granted == 0
    assert 0 < empty.wait <= 0.01 + 1e-9
    await asyncio.sleep(0.2)
    assert 15 <= await acquire(conn, "fresh", 50, rate=100, burst=30) <= 25


async def test_refill_never_exceeds_the_burst(conn: AsyncConn) -> None:
    await acquire(conn, "capped", 10, rate=1000, burst=10)
    await asyncio.sleep(0.1)  # 100 tokens' worth of time
    assert await acquire(conn, "capped", 500, rate=1000, burst=10) == 10


async def test_nothing_is_granted_below_min_grant(conn: AsyncConn) -> None:
    await acquire(conn, "min", 10, rate=10, burst=10)
    grant = await take_tokens(conn, "min", 10, rate=10, burst=10, min_grant=5)
    assert grant.granted == 0
    assert 0.4 < grant.wait <= 0.5
    await asyncio.sleep(grant.wait)
    assert await acquire(conn, "min", 10, rate=10, burst=10, min_grant=5) == 5


async def test_senders_have_separate_buckets(conn: AsyncConn) -> None:
    assert await acquire(conn, "one", 5, rate=1, burst=5) == 5
    assert await acquire(conn, "two", 5, rate=1, burst=5) == 5
    assert await acquire(conn, "one", 5, rate=1, burst=5) == 0


async def test_two_concurrent_limiters_never_exceed_rate_times_elapsed_plus_burst(
    database_url: str,
) -> None:
    rate, burst, seconds = 200.0, 20, 2.5
    conns = [await connect(database_url) for _ in range(2)]
    sent: list[float] = []
    per_limiter = [0, 0]
    started = time.monotonic()

    async def sender(index: int, limiter: TokenBucket) -> None:
        while time.monotonic() - started < seconds:
            await limiter.take()
            sent.append(time.monotonic())
            per_limiter[index] += 1

    try:
        limiters = [TokenBucket(c, "shared", rate, burst, batch=25) for c in conns]
        await asyncio.gather(*(sender(i, limiter) for i, limiter in enumerate(limiters)))
    finally:
        for c in conns:
            await c.close()

    sent.sort()
    for count, at in enumerate(sent, start=1):
        assert count <= rate * (at - started) + burst, (count, at - started)
    elapsed = sent[-1] - started
    # Together they kept close to the limit, neither was starved (shares are not equal: the
    # one that polls just after a refill wins it), and tokens came in batches: a few database
    # round trips per second, not one per message.
    assert len(sent) >= 0.85 * rate * elapsed
    assert min(per_limiter) >= 0.15 * len(sent)
    assert sum(limiter.takes for limiter in limiters) <= len(sent) / 5
