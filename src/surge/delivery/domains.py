"""Per-recipient-domain throttles and deferral backoff, shared by every worker.

Mailbox providers limit how fast one sender may deliver to them and say so with 421 or
4.7.x replies ("try again later, rate limited"). Pushing on makes it worse: the reputation
drops and the deferrals turn into blocks. So:

- **Throttles.** ``SURGE_DOMAIN_THROTTLES`` gives a rate per provider, e.g.
  ``"gmail.com:3000/min yahoo.com:1000/min:200"`` (``DOMAIN:RATE/s|min|h[:BURST]``). The
  rate is a token bucket in PostgreSQL (``delivery/ratelimit``, bucket ``domain:<group>``),
  so it holds across all workers; each worker takes tokens in small batches.
- **Deferrals.** A 421 or 4.7.x reply from a provider slows that provider down for every
  worker: ``domain_deferrals`` holds until when, doubling per consecutive deferral (1 min
  up to 1 h) and cleared by the next delivery it accepts.

A recipient whose provider is throttled or deferred is not tried: it stays queued, without
an attempt counted, and its chunk is retried when the provider may be tried again.
Providers are grouped by what they run (``gmail.com`` and ``googlemail.com`` share Google's
limit); a domain not in ``GROUPS`` is its own group.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from surge.config import THROTTLE_ENTRY
from surge.delivery.bounces import SendOutcome, SendStatus, enhanced_code
from surge.delivery.ratelimit import take_tokens
from surge.errors import Invalid
from surge.retry import Backoff

#: Domains that share one provider's limits.
GROUPS: dict[str, str] = {
    **dict.fromkeys(("gmail.com", "googlemail.com"), "google"),
    **dict.fromkeys(("yahoo.com", "ymail.com", "rocketmail.com", "aol.com", "aim.com"), "yahoo"),
    **dict.fromkeys(("outlook.com", "hotmail.com", "live.com", "msn.com"), "microsoft"),
    **dict.fromkeys(("icloud.com", "me.com", "mac.com"), "apple"),
    **dict.fromkeys(("gmx.net", "gmx.de", "web.de"), "united-internet"),
}

#: Waits after consecutive deferrals by one provider (the base is a setting).
DEFERRAL_BACKOFF = Backoff(base=60.0, cap=3600.0, jitter=0.2)

_PER = {"s": 1.0, "min": 60.0, "h": 3600.0}
FIELD = "SURGE_DOMAIN_THROTTLES"


def group_of(domain: str) -> str:
    domain = domain.lower()
    return GROUPS.get(domain, domain)


@dataclass(frozen=True, slots=True)
class Limit:
    """Messages per second to one provider, and how many may go at once (bucket size)."""

    rate: float
    burst: int


def parse_throttles(text: str) -> dict[str, Limit]:
    """``"gmail.com:3000/min yahoo.com:10/s:50"`` → provider group → Limit."""
    limits: dict[str, Limit] = {}
    for entry in text.lower().split():
        match = THROTTLE_ENTRY.fullmatch(entry)
        if match is None:
            raise Invalid(FIELD, f"{entry!r}: expected DOMAIN:RATE/s|min|h[:BURST]")
        domain, amount, per, burst = match.groups()
        rate = float(amount) / _PER[per]
        if not 0 < rate <= 1_000_000:
            raise Invalid(FIELD, f"{entry!r}: the rate must be positive")
        size = int(burst) if burst else max(1, round(rate * 10))
        limits[group_of(domain)] = Limit(rate, max(1, min(size, 1_000_000)))
    return limits


def is_deferral(outcome: SendOutcome) -> bool:
    """A temporary refusal that says "slow down", rather than one about the recipient."""
    if outcome.status is not SendStatus.TEMPORARY or outcome.sender_unavailable:
        return False
    enhanced = enhanced_code(outcome.reply) or ""
    return outcome.code == 421 or enhanced.startswith("4.7.")


@dataclass
class DomainThrottles:
    """One worker's view of the throttles and deferrals (read fresh for every chunk)."""

    pool: AsyncConnectionPool
    limits: dict[str, Limit]
    backoff: Backoff = DEFERRAL_BACKOFF
    #: Tokens this worker holds per group, taken from the shared buckets in batches.
    _tokens: dict[str, int] = field(default_factory=dict)
    #: Group → monotonic time before which it is not tried (throttled or deferred).
    _not_before: dict[str, float] = field(default_factory=dict)
    #: Groups with a deferral row, to clear when they accept a message again.
    _deferred: set[str] = field(default_factory=set)

    async def refresh(self) -> None:
        """Read the deferrals every worker has recorded (one small query per chunk)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "select grp, extract(epoch from until - now()) from domain_deferrals"
            )
            rows: list[Any] = await cur.fetchall()
        now = time.monotonic()
        self._deferred = {str(grp) for grp, _ in rows}
        for grp, left in rows:
            if float(left) > 0:
                self._not_before[str(grp)] = now + float(left)

    async def admit(self, domain: str) -> float:
        """0 if a message to ``domain`` may go now (a token is spent); else seconds to wait."""
        grp = group_of(domain)
        wait = self._not_before.get(grp, 0.0) - time.monotonic()
        if wait > 0:
            return wait
        limit = self.limits.get(grp)
        if limit is None:
            return 0.0
        if self._tokens.get(grp, 0) <= 0:
            batch = max(1, min(20, limit.burst))
            grant = await take_tokens(self.pool, f"domain:{grp}", batch, limit.rate, limit.burst)
            if grant.granted == 0:
                wait = max(grant.wait, 1.0 / limit.rate, 0.05)
                self._not_before[grp] = time.monotonic() + wait
                return wait
            self._tokens[grp] = grant.granted
        self._tokens[grp] -= 1
        return 0.0

    async def deferred(self, domain: str) -> float:
        """The provider said slow down: every worker waits; returns this wait in seconds."""
        grp = group_of(domain)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "insert into domain_deferrals (grp, streak, until) values (%(grp)s, 1, now())"
                " on conflict (grp) do update set streak = domain_deferrals.streak + 1"
                " returning streak",
                {"grp": grp},
            )
            row = await cur.fetchone()
            streak = int(row[0]) if row else 1
            wait = self.backoff(streak)
            await conn.execute(
                "update domain_deferrals set until = now() + make_interval(secs => %s)"
                " where grp = %s",
                [wait, grp],
            )
        self._deferred.add(grp)
        self._not_before[grp] = time.monotonic() + wait
        return wait

    async def accepted(self, domain: str) -> None:
        """A delivery went through: a provider that had deferred us is back to normal."""
        grp = group_of(domain)
        if grp not in self._deferred:
            return
        self._deferred.discard(grp)
        async with self.pool.connection() as conn:
            await conn.execute("delete from domain_deferrals where grp = %s", [grp])
