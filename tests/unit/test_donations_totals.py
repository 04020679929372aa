"""The per-process totals cache: one load per second per campaign, however many pollers."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from surge.donations.schemas import Totals
from surge.donations.store import TotalsRow
from surge.donations.totals import TotalsCache, build_totals

NOW = datetime(2025, 5, 6, 12, 0, tzinfo=UTC)


def sample(campaign_id: int) -> Totals:
    return Totals(campaign_id, "USD", None, 0, 0, None, NOW, [])


def test_concurrent_misses_share_one_load() -> None:
    async def run() -> int:
        cache = TotalsCache(ttl=1.0)
        loads = 0

        async def load(cid: int) -> Totals | None:
            nonlocal loads
            loads += 1
            await asyncio.sleep(0.01)
            return sample(cid)

        results = await asyncio.gather(*(cache.get(1, lambda: load(1)) for _ in range(1000)))
        assert all(r is not None and r.campaign_id == 1 for r in results)
        return loads

    assert asyncio.run(run()) == 1


def test_entries_expire_after_the_ttl_and_unknown_campaigns_are_cached_too() -> None:
    async def run() -> list[int]:
        cache = TotalsCache(ttl=0.05)
        calls: list[int] = []

        async def load(cid: int) -> Totals | None:
            calls.append(cid)
            return None

        assert await cache.get(9, lambda: load(9)) is None
        assert await cache.get(9, lambda: load(9)) is None
        await asyncio.sleep(0.06)
        assert await cache.get(9, lambda: load(9)) is None
        return calls

    assert asyncio.run(run()) == [9, 9]


def test_a_failed_load_is_not_cached_and_reaches_every_waiter() -> None:
    async def run() -> int:
        cache = TotalsCache()
        calls = 0

        async def load(cid: int) -> Totals | None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            raise ConnectionError("db down")

        outcomes = await asyncio.gather(
            *(cache.get(1, lambda: load(1)) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        with pytest.raises(ConnectionError):
            await cache.get(1, lambda: load(1))
        return calls

    assert asyncio.run(run()) == 2


def test_a_cancelled_caller_does_not_cancel_the_load_others_wait_for() -> None:
    async def run() -> Totals | None:
        cache = TotalsCache()

        async def load(cid: int) -> Totals | None:
            await asyncio.sleep(0.05)
            return sample(cid)

        first = asyncio.create_task(cache.get(1, lambda: load(1)))
        await asyncio.sleep(0)
        second = asyncio.create_task(cache.get(1, lambda: load(1)))
        await asyncio.sleep(0.01)
        first.cancel()
        return await second

    found = asyncio.run(run())
    assert found is not None and found.campaign_id == 1


def test_the_cache_is_bounded() -> None:
    async def run() -> int:
        cache = TotalsCache(max_entries=10)

        async def load(cid: int) -> Totals | None:
            return sample(cid)

        for cid in range(100):
            await cache.get(cid, functools.partial(load, cid))
        return len(cache._entries)

    assert asyncio.run(run()) <= 10


def test_totals_sum_the_campaigns_currency_and_compute_the_percentage() -> None:
    base = TotalsRow(3, "USD", 10_000, None, None, None, NOW)
    rows = [
        replace(base, currency="USD", raised=2500, donations=2),
    ]
    found = build_totals(rows)
    assert found is not None
    assert (found.currency, found.raised, found.donations, found.percent_of_goal) == (
        "USD",
        2500,
        2,
        25.0,
    )
    empty = build_totals([base])
    assert empty is not None and (empty.raised, empty.donations) == (0, 0)
    assert build_totals([]) is None


def test_a_campaign_without_currency_that_received_several_has_no_single_total() -> None:
    base = TotalsRow(3, None, None, None, None, None, NOW)
    rows = [
        replace(base, currency="EUR", raised=100, donations=1),
        replace(base, currency="USD", raised=200, donations=2),
    ]
    found = build_totals(rows)
    assert found is not None
    assert (found.currency, found.raised, found.donations) == (None, None, 3)
    assert [c.currency for c in found.by_currency] == ["EUR", "USD"]
