"""Payment gateways: the interface the charge job uses, and ``sandbox``, the development one.

A gateway charges a payment token once per idempotency key: charging the same key again
returns the first charge's result and never moves money twice. ``charge`` returns a
``ChargeResult`` (succeeded with the gateway's reference, or declined with a reason) and
raises ``GatewayUnavailable`` for temporary trouble, after which the caller retries later
with the same key. ``refund`` gives back part or all of a charge, once per key, the same
way (``RefundResult``). ``GatewayMisconfigured`` means the gateway refuses our credentials:
retrying cannot help, an operator must.

The gateway is chosen by name with the ``payment_gateway`` setting
(``SURGE_PAYMENT_GATEWAY``, default ``sandbox``; ``stripe`` is ``donations/stripe.py``);
each registers a factory in ``GATEWAYS``.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from surge.config import ConfigError, Settings
from surge.db.group_commit import GroupCommitWriter, Unavailable

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


@dataclass(frozen=True, slots=True)
class RefundResult:
    """What a gateway did with a refund: ``reference`` when made, ``reason`` when refused."""

    status: Literal["succeeded", "failed"]
    reference: str | None = None
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class GatewayUnavailable(Exception):
    """Temporary trouble (timeout, outage, 5xx): nothing was charged yet, try again later."""


class GatewayMisconfigured(Exception):
    """The gateway refuses our credentials (a wrong or revoked key): no retry will help."""


#: Why a refund is made (``RefundIn.reason``); a gateway maps them to its own codes.
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "other")


class PaymentGateway(Protocol):
    name: str

    async def charge(
        self, *, amount: int, currency: str, token: str, idempotency_key: str, description: str
    ) -> ChargeResult:
        """Charge ``amount`` minor units of ``currency`` to ``token``, once per key."""
        ...

    async def refund(
        self, *, reference: str, amount: int, reason: str, idempotency_key: str
    ) -> RefundResult:
        """Give back ``amount`` minor units of the charge ``reference``, once per key.

        ``reason`` is one of ``REFUND_REASONS``. A refund the gateway will never make (more
        than remains, unknown charge) is ``failed`` with its reason; temporary trouble
        raises ``GatewayUnavailable``.
        """
        ...

    async def aclose(self) -> None:
        """Release connections (called when the process stops)."""
        ...


class SandboxGateway:
    """A DEVELOPMENT gateway that moves no money but behaves like a real one.

    Tokens: ``tok_ok`` succeeds after 50–200 ms, ``tok_slow`` after 2–3 s, ``tok_declined``
    is declined (``card_declined``), ``tok_error`` raises ``GatewayUnavailable`` every time;
    any other token is declined (``invalid_token``). Charges are kept in ``sandbox_charges``,
    unique on the idempotency key, so a key charged twice (even by two processes at once, or
    after a restart) returns the first charge.

    A real gateway's bookkeeping costs its own machines, not ours; the sandbox's is written
    to our database, so it keeps that cost small: the charges that finish within a couple of
    milliseconds of each other are recorded by one group commit (``db/group_commit.py``),
    not a transaction each.
    """

    name = "sandbox"
    LATENCY = (0.05, 0.2)
    SLOW_LATENCY = (2.0, 3.0)
    #: Seconds a charge's record waits for company.
    RECORD_DELAY = 0.002

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self._writer: GroupCommitWriter[_SandboxCharge] | None = None

    async def charge(
        self, *, amount: int, currency: str, token: str, idempotency_key: str, description: str
    ) -> ChargeResult:
        """Charge once per ``idempotency_key``; see the class docstring for the tokens."""
        latency = self.SLOW_LATENCY if token == "tok_slow" else self.LATENCY
        await asyncio.sleep(random.uniform(*latency))
        if token == "tok_error":
            raise GatewayUnavailable("sandbox: gateway temporarily unavailable (tok_error)")
        outcome, reason = _decide(token)
        charge = _SandboxCharge(idempotency_key, amount, currency, token, outcome, reason)
        try:
            await self._records().write([charge])
        except Unavailable as exc:
            raise GatewayUnavailable(f"sandbox: {exc}") from None
        row = charge.found
        assert row is not None  # set by the flush that committed it
        if (row["amount_minor"], row["currency"]) != (amount, currency):
            # Real gateways refuse a reused key with other parameters rather than guess.
            return ChargeResult("declined", reason="idempotency_key_reused")
        if row["outcome"] == "succeeded":
            return ChargeResult("succeeded", reference=row["reference"])
        return ChargeResult("declined", reason=row["decline_reason"])

    def _records(self) -> GroupCommitWriter[_SandboxCharge]:
        if self._writer is None:
            self._writer = GroupCommitWriter(
                self.pool, _record_charges, max_delay=self.RECORD_DELAY, name="sandbox_charges"
            )
            self._writer.start()
        return self._writer

    async def refund(
        self, *, reference: str, amount: int, reason: str, idempotency_key: str
    ) -> RefundResult:
        """Refund part of a sandbox charge once per key; never more than the charge.

        Refunds are kept in ``sandbox_refunds`` (unique on the key, failures too), so a
        key refunded twice returns the first outcome, as a real gateway does.
        """
        await asyncio.sleep(random.uniform(*self.LATENCY))
        async with self.pool.connection() as conn, conn.transaction():
            read = conn.cursor(row_factory=dict_row)
            # The charge's row lock makes concurrent refunds of one charge take turns, so
            # their sum is checked against the charge one at a time.
            await read.execute(
                "select amount_minor from sandbox_charges"
                " where reference = %s and outcome = 'succeeded' for update",
                [reference],
            )
            charge = await read.fetchone()
            done = await _sandbox_refund(read, idempotency_key)
            if done is None:
                reason_failed = await _refund_refusal(conn, charge, reference, amount)
                await conn.execute(
                    "insert into sandbox_refunds (idempotency_key, reference, charge_reference,"
                    " amount_minor, reason, outcome, failure_reason)"
                    " values (%s, %s, %s, %s, %s, %s, %s)"
                    " on conflict (idempotency_key) do nothing",
                    [
                        idempotency_key,
                        "sbx_re_" + secrets.token_hex(12),
                        reference,
                        amount,
                        reason,
                        "failed" if reason_failed else "succeeded",
                        reason_failed,
                    ],
                )
                done = await _sandbox_refund(read, idempotency_key)
        assert done is not None  # inserted above, or by whoever won the race
        if (done["charge_reference"], done["amount_minor"]) != (reference, amount):
            return RefundResult("failed", reason="idempotency_key_reused")
        if done["outcome"] == "succeeded":
            return RefundResult("succeeded", reference=done["reference"])
        return RefundResult("failed", reason=done["failure_reason"])

    async def aclose(self) -> None:
        """Record what is waiting; the pool is the process's."""
        if self._writer is not None:
            await self._writer.close()


@dataclass(eq=False, slots=True)
class _SandboxCharge:
    key: str
    amount: int
    currency: str
    token: str
    outcome: str
    reason: str | None
    #: The key's charge once recorded: this one, or whichever came first.
    found: dict[str, Any] | None = None


async def _record_charges(conn: AsyncConnection[Any], charges: Sequence[_SandboxCharge]) -> None:
    """Insert each key's charge unless the key has one already, then read every key's
    charge (the read sees what a concurrent transaction committed while the insert
    waited for it)."""
    first = {c.key: c for c in reversed(charges)}  # the first charge of a key wins
    await conn.execute(
        "insert into sandbox_charges (idempotency_key, reference, amount_minor, currency,"
        " token, outcome, decline_reason) select * from unnest(%s::text[], %s::text[],"
        " %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[])"
        " on conflict (idempotency_key) do nothing",
        [
            list(first),
            ["sbx_" + secrets.token_hex(12) for _ in first],
            [c.amount for c in first.values()],
            [c.currency for c in first.values()],
            [c.token for c in first.values()],
            [c.outcome for c in first.values()],
            [c.reason for c in first.values()],
        ],
    )
    read = conn.cursor(row_factory=dict_row)
    await read.execute(
        "select idempotency_key, reference, amount_minor, currency, outcome, decline_reason"
        " from sandbox_charges where idempotency_key = any(%s)",
        [list(first)],
    )
    found = {row["idempotency_key"]: row for row in await read.fetchall()}
    for charge in charges:
        charge.found = found[charge.key]


async def _sandbox_refund(read: AsyncCursor[dict[str, Any]], key: str) -> dict[str, Any] | None:
    await read.execute(
        "select reference, charge_reference, amount_minor, outcome, failure_reason"
        " from sandbox_refunds where idempotency_key = %s",
        [key],
    )
    return await read.fetchone()


async def _refund_refusal(
    conn: AsyncConnection[Any], charge: dict[str, Any] | None, reference: str, amount: int
) -> str | None:
    """Why the sandbox refuses this refund, or None: what a real gateway refuses."""
    if charge is None:
        return "charge_not_found"
    cur = await conn.execute(
        "select coalesce(sum(amount_minor), 0) from sandbox_refunds"
        " where charge_reference = %s and outcome = 'succeeded'",
        [reference],
    )
    row = await cur.fetchone()
    refunded = int(row[0]) if row else 0
    if refunded + amount > charge["amount_minor"]:
        return "amount_exceeds_charge"
    return None


def _decide(token: str) -> tuple[str, str | None]:
    if token in ("tok_ok", "tok_slow"):
        return "succeeded", None
    if token == "tok_declined":
        return "declined", "card_declined"
    return "declined", "invalid_token"


def _sandbox(settings: Settings, pool: AsyncConnectionPool) -> PaymentGateway:
    return SandboxGateway(pool)


def _stripe(settings: Settings, pool: AsyncConnectionPool) -> PaymentGateway:
    # Imported here: only a process that uses Stripe loads its library.
    from surge.donations.stripe import StripeGateway

    return StripeGateway(settings, pool)


#: Gateway name → factory taking the process's settings and database pool.
GATEWAYS: dict[str, Callable[[Settings, AsyncConnectionPool], PaymentGateway]] = {
    "sandbox": _sandbox,
    "stripe": _stripe,
}


def make_gateway(settings: Settings, pool: AsyncConnectionPool) -> PaymentGateway:
    """The gateway chosen by ``settings.payment_gateway``; ConfigError if there is none such."""
    name = settings.payment_gateway or DEFAULT_GATEWAY
    factory = GATEWAYS.get(name)
    if factory is None:
        known = ", ".join(sorted(GATEWAYS))
        raise ConfigError(f"SURGE_PAYMENT_GATEWAY={name!r} is not one of: {known}")
    return factory(settings, pool)
