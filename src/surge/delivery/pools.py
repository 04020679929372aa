"""This process's SMTP pools and rate limits: one per configured sender, made on first use.

Dispatch chunks, receipts and transactional mail of one worker process all share them, so
connections stay warm across jobs and the shared rate limit is taken in batches per process.
"""

from __future__ import annotations

from typing import Any

from surge.config import Settings
from surge.delivery.ratelimit import TokenBucket
from surge.delivery.senders import SenderConfig, load_senders
from surge.delivery.smtp import SenderPool


class UnknownSender(LookupError):
    """A message names a sender that SURGE_SMTP_SENDERS does not configure."""


class Senders:
    """The configured senders; ``get`` returns a sender's pool and its rate limiter."""

    def __init__(self, settings: Settings) -> None:
        configs = load_senders(settings)
        self.default = configs[0].name
        self.configs: dict[str, SenderConfig] = {c.name: c for c in configs}
        self.pools: dict[str, SenderPool] = {}
        self.buckets: dict[str, TokenBucket] = {}

    def get(self, name: str | None, db: Any) -> tuple[SenderPool, TokenBucket]:
        """The pool and limiter of sender ``name`` (None: the first configured one).

        An unknown name raises ``UnknownSender``: mail meant for one server must never
        leave through another (messages are checked when created; this catches a sender
        removed from the configuration since, and the job retries until it is back).
        """
        config = self.configs.get(name or self.default)
        if config is None:
            raise UnknownSender(f"no sender named {name!r} is configured")
        if config.name not in self.pools:
            self.pools[config.name] = SenderPool(config)
            self.buckets[config.name] = TokenBucket(
                db, config.name, config.rate, config.burst, batch=token_batch(config)
            )
        return self.pools[config.name], self.buckets[config.name]

    async def aclose(self) -> None:
        for pool in self.pools.values():
            await pool.aclose()


def token_batch(config: SenderConfig) -> int:
    """Tokens one process takes from the shared bucket per round trip: a twentieth of a
    second's worth (at least 50, at most 500), so a fast sender costs few queries while no
    process holds on to more than a sliver of the rate."""
    return int(max(50, min(500, config.burst, config.rate / 20)))


def sender_names(settings: Settings) -> frozenset[str]:
    """The names a message may choose its sender by."""
    return frozenset(config.name for config in load_senders(settings))
