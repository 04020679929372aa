"""A circuit breaker for one SMTP sender.

When a sender keeps failing to connect, trying every recipient in turn would spend each
recipient's retries on the sender's outage. After ``threshold`` consecutive failures the
circuit opens: callers are told "not now, retry after N seconds" without any network I/O.
When N seconds have passed one caller is let through as a probe; its success closes the
circuit, its failure reopens it for twice as long (capped at ``max_delay``).
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Circuit:
    """Closed → open after repeated failures → one probe after a backoff → closed or reopened."""

    def __init__(
        self,
        *,
        threshold: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.clock = clock
        self._opened_at = float("-inf")
        self._failures = 0
        self._opened = 0  # times opened since the last success: the backoff exponent
        self._open_until = 0.0

    def retry_after(self) -> float:
        """Seconds until a call may go through (0 when it may go through now)."""
        return max(0.0, self._open_until - self.clock())

    def admit(self) -> float | None:
        """None if the caller may try now, else the seconds it should wait.

        After the backoff the first caller admitted is the probe; the circuit stays closed to
        everyone else for another backoff period, so a probe that never reports (cancelled
        task) only delays the next probe instead of wedging the circuit.
        """
        now = self.clock()
        if now < self._open_until:
            return self._open_until - now
        if self._opened:
            self._open_until = now + self._delay()
        return None

    def record_success(self) -> None:
        """The sender answered: close the circuit and forget past failures."""
        self._failures = 0
        self._opened = 0
        self._open_until = 0.0

    def record_failure(self, started: float | None = None) -> None:
        """The sender could not be reached or dropped the connection.

        ``started`` is when the failed attempt began (``clock()``): attempts already under way
        when the circuit opened fail too, and must not push the backoff further out.
        """
        if started is not None and started < self._opened_at:
            return
        self._failures += 1
        # A failed probe reopens at once; otherwise wait for `threshold` failures in a row.
        if self._opened or self._failures >= self.threshold:
            self._opened += 1
            self._opened_at = self.clock()
            self._open_until = self._opened_at + self._delay()

    @property
    def is_open(self) -> bool:
        return self.retry_after() > 0

    @property
    def tripped(self) -> bool:
        """Opened since the last success: open now, or waiting for a probe to succeed."""
        return self._opened > 0

    def _delay(self) -> float:
        return min(self.max_delay, self.base_delay * 2.0 ** max(0, self._opened - 1))
