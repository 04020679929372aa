"""Registering tasks, resolving a new job's queue, slots of periodic tasks, backoff."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from surge.config import Settings
from surge.jobs.enqueue import resolve
from surge.jobs.registry import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_ATTEMPTS,
    JobContext,
    Registry,
    Task,
    UnknownTask,
    task,
)
from surge.jobs.schedule import current_slot
from surge.retry import Backoff


async def nothing(ctx: JobContext) -> None:
    """A task body."""


async def other(ctx: JobContext) -> None:
    """Another task body."""


def test_task_decorator_registers_queue_and_attempts() -> None:
    registered = task("test.unit.registered", queue="critical", max_attempts=4)(nothing)
    assert resolve("test.unit.registered", None, None) == ("critical", 4)
    assert resolve("test.unit.registered", "bulk", 9) == ("bulk", 9)
    assert registered.kind == "test.unit.registered"
    assert not registered.periodic


def test_unregistered_kind_needs_an_explicit_queue() -> None:
    with pytest.raises(UnknownTask):
        resolve("test.unit.unknown", None, None)
    assert resolve("test.unit.unknown", "default", None) == ("default", DEFAULT_MAX_ATTEMPTS)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"queue": "urgent"},
        {"max_attempts": 0},
        {"cron": "every monday"},
        {"cron": "* * * * *", "every": 60},
        {"every": 0},
    ],
)
def test_task_rejects_bad_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        task("test.unit.bad", **kwargs)(nothing)  # type: ignore[arg-type]


def test_a_kind_cannot_be_registered_by_two_functions() -> None:
    reg = Registry()
    reg.add(Task("k", nothing))
    reg.add(Task("k", nothing, queue="bulk"))  # a module imported twice: fine
    with pytest.raises(ValueError):
        reg.add(Task("k", other))


def test_enqueue_rejects_unknown_queue() -> None:
    with pytest.raises(ValueError):
        resolve("surge.noop", "urgent", None)


def test_cron_slot_is_the_latest_at_or_before_now() -> None:
    hourly = Task("k", nothing, cron="0 * * * *")
    at = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert current_slot(hourly, at) == at
    assert current_slot(hourly, at.replace(minute=59)) == at
    assert current_slot(hourly, at.replace(hour=11, second=1)) == at.replace(hour=11)


def test_interval_slot_is_aligned_to_the_epoch() -> None:
    every_5m = Task("k", nothing, every=300)
    assert current_slot(every_5m, datetime(2026, 5, 1, 10, 7, 12, tzinfo=UTC)) == datetime(
        2026, 5, 1, 10, 5, tzinfo=UTC
    )


def test_default_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    for attempt in range(1, 40):
        base = min(2**attempt, DEFAULT_BACKOFF.cap)
        delays = [DEFAULT_BACKOFF(attempt) for _ in range(50)]
        assert all(0.5 * base <= d <= 1.5 * base for d in delays)
        assert len(set(delays)) > 1


def test_an_explicit_schedule_is_followed_then_given_up() -> None:
    schedule = Backoff(steps=(1.0, 10.0), jitter=0.0)
    assert [schedule.after(n) for n in (1, 2, 3)] == [1.0, 10.0, None]
    assert schedule(3) == 10.0  # called directly, past the end it keeps the last step


def test_a_task_backoff_may_come_from_the_settings() -> None:
    from surge.donations.jobs import charge

    delays = charge.retry_delays(Settings(donations_charge_backoff=0.5))
    assert delays.base == 0.5 and delays.cap == 600.0
