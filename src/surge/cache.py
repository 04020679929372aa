"""A per-process cache of public figures: each key loaded at most once per ``ttl``, by one
caller, while every concurrent caller awaits that same load (single flight).

It holds the public reads of a giving day (leaderboards, recent donors, a fundraiser's or
team's totals), the lookups the donation intake makes on every request (the campaign, the
fundraiser), the public campaign totals (``donations.totals``) and the rendered giving-day
pages (``givingday.cache.PageCache``), so that thousands of requests a second cost a few
queries a second per process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

log = logging.getLogger(__name__)


class FigureCache(Generic[K, V]):
    """key → (born, value). An entry is born when its load starts, so a value is at most
    ``ttl`` plus one load old. At most ``max_entries`` keys: expired ones go first, then the
    oldest. With ``stale_if_error``, a load that fails while an older value is held serves
    that value (kept as old as it is, so the next caller tries again), as CDNs do."""

    def __init__(
        self, ttl: float, max_entries: int = 10_000, *, stale_if_error: bool = False
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.stale_if_error = stale_if_error
        self.loads = 0
        self._entries: dict[K, tuple[float, V]] = {}
        self._loading: dict[K, asyncio.Task[V]] = {}

    def fresh(self, key: K) -> V | None:
        """The value of ``key`` if it is young enough to serve, without loading."""
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        return None

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value of ``key``, or the result of ``load()`` shared with every caller
        that asks meanwhile. A load's exception reaches its waiters and is not cached."""
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < self.ttl:
            return entry[1]
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key, load))
            task.add_done_callback(_retrieve)
            self._loading[key] = task
        # Shielded: a caller that goes away cancels its own wait, not the shared load.
        return await asyncio.shield(task)

    def forget(self, key: K) -> None:
        """Drop ``key``: the next caller loads it (after a write this process made)."""
        self._entries.pop(key, None)

    async def _load(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        born = time.monotonic()
        try:
            value = await load()
        except Exception:
            previous = self._entries.get(key)
            if not self.stale_if_error or previous is None:
                raise
            log.warning("serving a stale value of %r", key, exc_info=True)
            return previous[1]
        else:
            self._store(key, born, value)
            return value
        finally:
            del self._loading[key]
            self.loads += 1

    def _store(self, key: K, born: float, value: V) -> None:
        if len(self._entries) >= self.max_entries:
            now = time.monotonic()
            for old in [k for k, (b, _) in self._entries.items() if now - b >= self.ttl]:
                del self._entries[old]
            while len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
        self._entries.pop(key, None)
        self._entries[key] = (born, value)


def _retrieve(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()
