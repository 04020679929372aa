"""Payment gateways: the interface the charge job uses, and ``sandbox``, the development one.

A gateway charges a payment token once per idempotency key: charging the same key again
returns the first charge's result and never moves money twice. ``charge`` returns a
``ChargeResult`` (succeeded with the gateway's reference, or declined with a reason) and
raises ``GatewayUnavailable`` for temporary trouble, after which the caller retries later
with the same key.

The gateway is chosen by name with the ``payment_gateway`` setting
(``SURGE_PAYMENT_GATEWAY``, default ``sandbox``); a real one registers itself in
``GATEWAYS``.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from surge.config import ConfigError, Settings

DEFAULT_GATEWAY = "sandbox"


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """What a gateway decided: ``reference`` when it succeeded, ``reason`` when declined."""

    status: Literal["succeeded", "declined"]
    reference: str | None = None
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class GatewayUnavailable(Exception):
    """Temporary trouble (timeout, outage, 5xx): nothing was charged yet, try again later."""


class PaymentGateway(Protocol):
    name: str

    async def charge(
        self, *, amount: int, currency: str, token: str, idempotency_key: str, description: str
    ) -> ChargeResult:
        """Charge ``amount`` minor units of ``currency`` to ``token``, once per key."""
        ...


class SandboxGateway:
    """A DEVELOPMENT gateway that moves no money but behaves like a real one.

    Tokens: ``tok_ok`` succeeds after 50–200 ms, ``tok_slow`` after 2–3 s, ``tok_declined``
    is declined (``card_declined``), ``tok_error`` raises ``GatewayUnavailable`` every time;
    any other token is declined (``invalid_token``). Charges are kept in ``sandbox_charges``,
    unique on the idempotency key, so a key charged twice (even by two processes at once, or
    after a restart) returns the first charge.
    """

    name = "sandbox"
    LATENCY = (0.05, 0.2)
    SLOW_LATENCY = (2.0, 3.0)

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def charge(
        self, *, amount: int, currency: str, token: str, idempotency_key: str, description: str
    ) -> ChargeResult:
        """Charge once per ``idempotency_key``; see the class docstring for the tokens."""
        latency = self.SLOW_LATENCY if token == "tok_slow" else self.LATENCY
        await asyncio.sleep(random.uniform(*latency))
        if token == "tok_error":
            raise GatewayUnavailable("sandbox: gateway temporarily unavailable (tok_error)")
        outcome, reason = _decide(token)
        row = await self._record(idempotency_key, amount, currency, token, outcome, reason)
        if (row["amount_minor"], row["currency"]) != (amount, currency):
            # Real gateways refuse a reused key with other parameters rather than guess.
            return ChargeResult("declined", reason="idempotency_key_reused")
        if row["outcome"] == "succeeded":
            return ChargeResult("succeeded", reference=row["reference"])
        return ChargeResult("declined", reason=row["decline_reason"])

    async def _record(
        self,
        key: str,
        amount: int,
        currency: str,
        token: str,
        outcome: str,
        reason: str | None,
    ) -> dict[str, Any]:
        """Insert this charge unless the key has one already; return the key's charge."""
        reference = "sbx_" + secrets.token_hex(12)
        async with self.pool.connection() as conn:
            await conn.execute(
                "insert into sandbox_charges (idempotency_key, reference, amount_minor,"
                " currency, token, outcome, decline_reason) values (%s, %s, %s, %s, %s, %s, %s)"
                " on conflict (idempotency_key) do nothing",
                [key, reference, amount, currency, token, outcome, reason],
            )
            read = conn.cursor(row_factory=dict_row)
            await read.execute(
                "select reference, amount_minor, currency, outcome, decline_reason"
                " from sandbox_charges where idempotency_key = %s",
                [key],
            )
            found = await read.fetchone()
        assert found is not None  # inserted above, or by whoever won the race
        return found


def _decide(token: str) -> tuple[str, str | None]:
    if token in ("tok_ok", "tok_slow"):
        return "succeeded", None
    if token == "tok_declined":
        return "declined", "card_declined"
    return "declined", "invalid_token"


#: Gateway name → factory taking the process's database pool.
GATEWAYS: dict[str, Callable[[AsyncConnectionPool], PaymentGateway]] = {
    "sandbox": SandboxGateway,
}


def make_gateway(settings: Settings, pool: AsyncConnectionPool) -> PaymentGateway:
    """The gateway chosen by ``settings.payment_gateway``; ConfigError if there is none such."""
    name = settings.payment_gateway or DEFAULT_GATEWAY
    factory = GATEWAYS.get(name)
    if factory is None:
        known = ", ".join(sorted(GATEWAYS))
        raise ConfigError(f"SURGE_PAYMENT_GATEWAY={name!r} is not one of: {known}")
    return factory(pool)
