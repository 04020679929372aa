"""The degrade switch: shed the donor walls and leaderboards when this process is overloaded.

On the day, what must never fail is the donation form and the total. The walls of recent
donors and the leaderboards are nice to have, cost queries and bytes on every render, and
are the first thing to go. Each API process decides for itself, from two signals it can
see without asking anyone:

- **event-loop lag**: a task sleeps ``INTERVAL`` and measures how late it wakes. The worst
  lag of the last second is how long any request waited for the CPU; it is what a viewer
  feels, whatever the cause (CPU starvation, a slow render, GC).
- **donation backlog**: donation requests in flight as a share of the process's admission
  limit (``SURGE_DONATIONS_MAX_IN_FLIGHT``): donations queueing here means the form is at
  risk, and everything else should step aside.

Shed after ``SHED_AFTER`` consecutive overloaded seconds (lag ≥ the shed threshold, or
backlog ≥ ``BACKLOG_SHED``); restore after ``RESTORE_AFTER`` consecutive calm seconds (lag
below a quarter of the threshold and backlog below ``BACKLOG_RESTORE``). The gap between the
thresholds and the long calm period are the hysteresis: a page does not flap between two
layouts every second. Staff override it with ``SURGE_GIVING_DAY_SHED=on|off`` for every
page of a process, or a campaign's page setting ``shed`` (``PATCH /v1/campaigns/{id}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds between two lag samples.
INTERVAL = 0.05
#: Consecutive overloaded seconds before shedding, calm seconds before restoring.
SHED_AFTER = 2
RESTORE_AFTER = 10
#: Donation requests in flight as a share of the admission limit.
BACKLOG_SHED = 0.75
BACKLOG_RESTORE = 0.25
MODES = ("auto", "on", "off")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a second counts as overloaded, and when as calm."""

    lag_shed: float = 0.1
    lag_restore: float = 0.025
    backlog_shed: float = BACKLOG_SHED
    backlog_restore: float = BACKLOG_RESTORE
    shed_after: int = SHED_AFTER
    restore_after: int = RESTORE_AFTER


class Hysteresis:
    """The shed decision from one (lag, backlog) reading per second; pure, for tests."""

    def __init__(self, thresholds: Thresholds) -> None:
        self.t = thresholds
        self.shed = False
        self._hot = 0
        self._calm = 0

    def observe(self, lag: float, backlog: float) -> bool:
        t = self.t
        hot = lag >= t.lag_shed or backlog >= t.backlog_shed
        calm = lag < t.lag_restore and backlog < t.backlog_restore
        self._hot = self._hot + 1 if hot else 0
        self._calm = self._calm + 1 if calm else 0
        if not self.shed and self._hot >= t.shed_after:
            self.shed = True
        elif self.shed and self._calm >= t.restore_after:
            self.shed = False
        return self.shed


class LoadMonitor:
    """Samples this process's event-loop lag and donation backlog; ``shed`` is the verdict."""

    def __init__(
        self,
        backlog: Callable[[], float],
        thresholds: Thresholds | None = None,
        mode: str = "auto",
    ) -> None:
        self.backlog = backlog
        self.mode = mode
        self.decision = Hysteresis(thresholds or Thresholds())
        #: Worst lag of the last full second, and the backlog then (for logs and tests).
        self.lag = 0.0
        self.last_backlog = 0.0
        self.changes = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def auto_shed(self) -> bool:
        """What the signals say now (mode "auto")."""
        return self.decision.shed

    def shedding(self, page_setting: str = "auto") -> bool:
        """Whether a page with this ``shed`` setting sheds now: the page's own setting if
        forced, else the process's (``SURGE_GIVING_DAY_SHED``), else the signals."""
        for mode in (page_setting, self.mode):
            if mode == "on":
                return True
            if mode == "off":
                return False
        return self.decision.shed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        worst, window_start = 0.0, time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(INTERVAL)
            now = time.monotonic()
            worst = max(worst, now - before - INTERVAL)
            if now - window_start >= 1.0:
                self.lag, self.last_backlog = worst, self.backlog()
                was = self.decision.shed
                if self.decision.observe(self.lag, self.last_backlog) != was:
                    self.changes += 1
                worst, window_start = 0.0, now
