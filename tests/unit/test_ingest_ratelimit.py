"""The per-key token bucket of event intake."""

from __future__ import annotations

import pytest

from surge.ingest.ratelimit import KeyBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_key_may_spend_its_burst_then_waits_for_refill() -> None:
    clock = Clock()
    buckets = KeyBuckets(rate=10, burst=20, clock=clock)
    assert buckets.take(1, 20) == 0.0
    assert buckets.take(1, 5) == 0.5
    clock.now += 0.5
    assert buckets.take(1, 5) == 0.0


def test_keys_have_separate_buckets() -> None:
    buckets = KeyBuckets(rate=1, burst=1, clock=Clock())
    assert buckets.take(1, 1) == 0.0
    assert buckets.take(1, 1) > 0
    assert buckets.take(2, 1) == 0.0


def test_a_batch_larger_than_the_burst_passes_once_and_leaves_a_debt() -> None:
    clock = Clock()
    buckets = KeyBuckets(rate=10, burst=10, clock=clock)
    assert buckets.take(1, 100) == 0.0
    assert buckets.take(1, 1) == pytest.approx(9.1)
    clock.now += 9.2
    assert buckets.take(1, 1) == 0.0


def test_zero_rate_disables_the_limit() -> None:
    buckets = KeyBuckets(rate=0, burst=0, clock=Clock())
    assert all(buckets.take(1, 1000) == 0.0 for _ in range(100))


def test_headers_follow_the_ietf_draft_and_the_older_trio() -> None:
    headers = KeyBuckets(rate=50, burst=100).headers(1.2)
    assert headers == {
        "Retry-After": "2",
        "RateLimit-Policy": '"events";q=50;w=1',
        "RateLimit": '"events";r=0;t=2',
        "RateLimit-Limit": "50",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "2",
    }
