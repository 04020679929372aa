"""Admission control: an endpoint's requests in flight per process, and 503 past the limit.

Under a surge, a request that cannot be served soon is better refused at once with
``Retry-After`` than queued for a pool connection until it times out: a client that retries
with the same Idempotency-Key loses nothing, and the requests that are admitted stay fast.
"""

from __future__ import annotations

from types import TracebackType

from surge.errors import Overloaded

__all__ = ["Admission", "Overloaded"]


class Admission:
    """``async with admission:`` counts a request in flight, or raises ``Overloaded``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    async def __aenter__(self) -> None:
        if self.in_flight >= self.limit:
            raise Overloaded("too many requests in flight here; retry with the same key")
        self.in_flight += 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.in_flight -= 1
