"""The pure rules of webhooks: event types, the retry schedule, outcomes, URLs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from surge.config import ConfigError, Settings
from surge.errors import Invalid
from surge.retry import Backoff
from surge.webhooks import service


@pytest.mark.parametrize("event_type", ["donation", "Donation.succeeded", "donation.", "a.b-c", ""])
def test_emit_refuses_a_malformed_event_type_before_touching_the_database(event_type: str) -> None:
    conn: Any = None  # never used: the check comes first
    with pytest.raises(ValueError, match="event type"):
        asyncio.run(service.emit(conn, 1, event_type, {}))


def test_the_default_schedule_is_twelve_attempts_over_about_three_days() -> None:
    schedule = service.parse_schedule("5,300,1800,7200,18000,36000,36000,36000,36000,36000,36000")
    assert len(schedule) + 1 == 12
    assert 2.5 * 86400 < sum(schedule) < 3.5 * 86400


def test_next_attempt_follows_the_schedule_with_bounded_jitter_then_gives_up() -> None:
    schedule = Backoff(steps=(5.0, 300.0), jitter=0.2)
    for _ in range(100):
        first = service.next_attempt_delay(1, schedule)
        second = service.next_attempt_delay(2, schedule)
        assert first is not None and 4 <= first <= 6
        assert second is not None and 240 <= second <= 360
    assert service.next_attempt_delay(3, schedule) is None
    assert service.next_attempt_delay(1, Backoff(steps=(), jitter=0)) is None


def test_the_policy_comes_from_the_settings_the_worker_started_with() -> None:
    default = service.RetryPolicy.from_settings(Settings())
    assert len(default.schedule.steps) == 11 and default.disable_after == 5 * 86400
    custom = service.RetryPolicy.from_settings(
        Settings(webhook_retry_schedule="1,2", webhook_disable_after=60)
    )
    assert custom.schedule.steps == (1.0, 2.0) and custom.disable_after == 60


@pytest.mark.parametrize("text", ["5,x", "-1", "1e99"])
def test_a_bad_schedule_override_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="schedule"):
        service.parse_schedule(text)
    with pytest.raises(ConfigError, match="SURGE_WEBHOOK_RETRY_SCHEDULE"):
        Settings(webhook_retry_schedule=text)


@pytest.mark.parametrize(
    ("status", "delivered"), [(200, True), (204, True), (299, True), (301, False), (500, False)]
)
def test_only_2xx_counts_as_delivered(status: int, delivered: bool) -> None:
    assert service.Outcome(status, None).delivered is delivered
    assert not service.Outcome(None, "timed out").delivered


@pytest.mark.parametrize(
    "url", ["http://localhost:8080/hook", "https://hooks.example.org/a?b=c", " https://x.io "]
)
def test_http_urls_are_accepted(url: str) -> None:
    assert service.check_url(url) == url.strip()


@pytest.mark.parametrize("url", ["ftp://x.org", "https:///path", "https://x.org:70000/", "x"])
def test_other_urls_are_invalid_naming_url(url: str) -> None:
    with pytest.raises(Invalid) as raised:
        service.check_url(url)
    assert raised.value.field == "url"
