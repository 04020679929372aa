"""The one rule for waiting before a retry: jobs, charges, sends and webhook deliveries.

The wait after failed attempt ``n`` (1-based) is ``steps[n - 1]`` when an explicit schedule
is given (webhooks follow the Standard Webhooks one), otherwise ``base × 2^(n-1)`` capped
at ``cap``. It is then multiplied by ``uniform(1 - jitter, 1 + jitter)``, so work that
failed together (a provider outage) does not all come back at the same instant.

Who retries how, with the settings that change it:

- jobs in general: 2, 4, 8 … s up to an hour (``jobs.registry.DEFAULT_BACKOFF``);
- ``donations.charge``: ``SURGE_DONATIONS_CHARGE_BACKOFF`` doubling, capped at 10 min;
- a recipient refused with 4xx: ``SURGE_DISPATCH_RETRY_BASE_SECONDS`` doubling, capped at 1 h;
- webhook deliveries: ``SURGE_WEBHOOK_RETRY_SCHEDULE``, then give up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Doubling stops here: 2^60 times any sane base is past every cap.
_MAX_EXPONENT = 60
#: Longest single wait a schedule may hold: 30 days.
MAX_STEP = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait after each failed attempt; call it with the attempt number."""

    #: First wait, doubled after each further failure…
    base: float = 2.0
    #: …up to this many seconds.
    cap: float = 3600.0
    #: Each wait is multiplied by uniform(1 - jitter, 1 + jitter).
    jitter: float = 0.5
    #: An explicit schedule instead of doubling; attempts past its end get None from ``after``.
    steps: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff jitter must be in [0, 1)")
        if self.base < 0 or self.cap < 0 or any(not 0 <= s <= MAX_STEP for s in self.steps):
            raise ValueError("backoff delays must not be negative")

    def __call__(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt``; past a schedule, its last step."""
        attempt = max(attempt, 1)
        if self.steps:
            delay = self.steps[min(attempt, len(self.steps)) - 1]
        else:
            delay = min(self.base * 2.0 ** min(attempt - 1, _MAX_EXPONENT), self.cap)
        return delay * random.uniform(1 - self.jitter, 1 + self.jitter)

    def after(self, attempt: int) -> float | None:
        """Like calling it, but None once an explicit schedule is used up (give up)."""
        if attempt < 1 or (self.steps and attempt > len(self.steps)):
            return None
        return self(attempt)


def parse_steps(text: str, what: str) -> tuple[float, ...]:
    """``"5,300,1800"`` → (5.0, 300.0, 1800.0); ValueError naming ``what`` if malformed."""
    try:
        steps = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{what} {text!r}: expected seconds, comma-separated") from None
    if not all(0 <= s < MAX_STEP for s in steps):
        raise ValueError(f"{what} {text!r}: delays must be 0 to 30 days")
    return steps
