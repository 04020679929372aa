"""Tasks: the functions jobs run, registered by kind with ``@task``.

A task is an ``async def f(ctx: JobContext) -> None``. It is registered under a ``kind``
(``"contacts.import"``) with its queue, its attempt budget and, for periodic tasks, a cron
expression or an interval; the worker imports the task modules and looks kinds up here.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from croniter import croniter

from surge.config import Settings
from surge.jobs.complete import complete_jobs, discard_job
from surge.retry import Backoff

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    from surge.resources import Resources

QUEUES = ("critical", "default", "bulk")
DEFAULT_MAX_ATTEMPTS = 20

TaskFunction = Callable[["JobContext"], Awaitable[None]]
#: Retry delays of a task: fixed, or derived from the settings the worker started with.
Retry = Backoff | Callable[[Settings], Backoff]
#: Jobs without their own: 2, 4, 8 … s, capped at an hour, jittered ±50 %.
DEFAULT_BACKOFF = Backoff(base=2.0, cap=3600.0, jitter=0.5)


class UnknownTask(LookupError):
    """No task is registered under this kind."""


@dataclass(slots=True)
class Job:
    """A claimed job, as its task sees it."""

    id: int
    kind: str
    queue: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    organization_id: int | None
    #: W3C traceparent of the span that enqueued it, if that was traced.
    traceparent: str | None = None


@dataclass(slots=True)
class JobContext:
    """What a running task gets: its job, the worker's pool, settings and resources."""

    job: Job
    pool: AsyncConnectionPool
    settings: Settings
    worker_id: str
    #: The worker process's shared objects: SMTP pools, HTTP client, gateway, signer.
    resources: Resources
    #: Set by complete_in(); the worker's own completion is then a no-op for this job.
    completed: bool = False

    async def complete_in(self, conn: AsyncConnection[Any]) -> None:
        """Complete this job inside the transaction open on ``conn``.

        The job leaves the hot table if and only if the caller's transaction commits, so
        business writes and the completion are atomic. If it rolls back, the worker's own
        completion (or failure) still applies after the task returns.
        """
        await complete_jobs(conn, [self.job.id], self.worker_id)
        self.completed = True

    async def discard(self, error: str) -> None:
        """Dead-letter this job now, without the attempts left: for a failure no retry can
        mend (``surge jobs failed`` lists it, ``surge jobs retry`` runs it again once an
        operator has mended the cause). The task should return normally afterwards.
        """
        async with self.pool.connection() as conn:
            await discard_job(conn, self.job.id, self.worker_id, error)
        self.completed = True


@dataclass(frozen=True, slots=True)
class Task:
    """A registered task: its kind, where its jobs go, and how they are retried."""

    kind: str
    function: TaskFunction
    queue: str = "default"
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: Retry = DEFAULT_BACKOFF
    #: Periodic tasks: a cron expression (UTC) or an interval in seconds, not both.
    cron: str | None = None
    every: float | None = None

    async def __call__(self, ctx: JobContext) -> None:
        await self.function(ctx)

    @property
    def periodic(self) -> bool:
        return self.cron is not None or self.every is not None

    def retry_delays(self, settings: Settings) -> Backoff:
        """The task's backoff, resolved against the worker's settings."""
        return self.backoff if isinstance(self.backoff, Backoff) else self.backoff(settings)


@dataclass
class Registry:
    """Kind → Task. One per process (``registry``); tests may build their own."""

    tasks: dict[str, Task] = field(default_factory=dict)

    def add(self, new: Task) -> None:
        old = self.tasks.get(new.kind)
        # Re-importing a module re-registers the same function; anything else is a clash.
        if old is not None and _qualname(old.function) != _qualname(new.function):
            raise ValueError(f"task kind {new.kind!r} is already registered")
        self.tasks[new.kind] = new

    def get(self, kind: str) -> Task:
        try:
            return self.tasks[kind]
        except KeyError:
            raise UnknownTask(f"no task registered as {kind!r}") from None

    def periodic(self) -> list[Task]:
        return [t for t in self.tasks.values() if t.periodic]


registry = Registry()


def _qualname(f: Callable[..., Any]) -> str:
    return f"{f.__module__}.{f.__qualname__}"


def task(
    kind: str,
    *,
    queue: str = "default",
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff: Retry = DEFAULT_BACKOFF,
    cron: str | None = None,
    every: float | None = None,
) -> Callable[[TaskFunction], Task]:
    """Register an ``async def f(ctx)`` as the task run by jobs of ``kind``.

    ``cron`` (a 5-field UTC expression) or ``every`` (seconds) makes it periodic: the
    maintenance leader enqueues one job per slot. ``backoff`` overrides the default retry
    delays (``DEFAULT_BACKOFF``); a function of the settings when they configure it.
    """
    _check(kind, queue, max_attempts, cron, every)

    def register(function: TaskFunction) -> Task:
        new = Task(kind, function, queue, max_attempts, backoff, cron, every)
        registry.add(new)
        return new

    return register


def _check(kind: str, queue: str, max_attempts: int, cron: str | None, every: float | None) -> None:
    if queue not in QUEUES:
        raise ValueError(f"task {kind!r}: queue must be one of {QUEUES}, not {queue!r}")
    if max_attempts < 1:
        raise ValueError(f"task {kind!r}: max_attempts must be at least 1")
    if cron is not None and every is not None:
        raise ValueError(f"task {kind!r}: give cron or every, not both")
    if cron is not None and not croniter.is_valid(cron):
        raise ValueError(f"task {kind!r}: invalid cron expression {cron!r}")
    if every is not None and every <= 0:
        raise ValueError(f"task {kind!r}: every must be positive")


def tasks_in(names: Iterable[str]) -> list[Task]:
    """The tasks defined in the modules ``names`` (extensions and tests: ``--tasks``)."""
    found: list[Task] = []
    for name in names:
        module = importlib.import_module(name)
        found += [value for value in vars(module).values() if isinstance(value, Task)]
    return found
