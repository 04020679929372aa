"""Per-key event rate limit: a token bucket per API key, in this process only.

With N API processes behind a load balancer a key may send up to N times the rate; the limit
protects one process (and the database behind it) from one noisy key, it is not a quota.
A request needs as many tokens as it carries events (at most the burst, so that a batch larger
than the burst still passes once the bucket is full) and pays for all of them, possibly going
into debt, which makes the key wait before its next request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class KeyBuckets:
    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        #: Events per second per key; 0 or less disables the limit.
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[int, list[float]] = {}

    def take(self, key: int, events: int) -> float:
        """Charge ``events`` to ``key``; 0.0 if allowed, else seconds until it may try again."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        need = min(events, self.burst)
        if tokens < need:
            bucket[0] = tokens
            return max((need - tokens) / self.rate, 0.001)
        bucket[0] = tokens - events
        return 0.0

    def headers(self, wait: float) -> dict[str, str]:
        """429 headers: the IETF draft's RateLimit-Policy/RateLimit, the older trio, Retry-After."""
        reset = max(1, math.ceil(wait))
        quota = math.floor(self.rate)
        return {
            "Retry-After": str(reset),
            "RateLimit-Policy": f'"events";q={quota};w=1',
            "RateLimit": f'"events";r=0;t={reset}',
            "RateLimit-Limit": str(quota),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(reset),
        }
