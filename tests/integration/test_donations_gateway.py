"""The sandbox gateway on a real database: idempotent per key, across concurrent callers."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from surge.config import ConfigError, Settings
from surge.db.pool import open_pool
from surge.donations import gateway as gateways
from surge.donations.gateway import ChargeResult, GatewayUnavailable, SandboxGateway


def charge(
    sandbox: SandboxGateway, token: str, key: str, amount: int = 1000
) -> asyncio.Future[ChargeResult]:
    return asyncio.ensure_future(
        sandbox.charge(
            amount=amount, currency="USD", token=token, idempotency_key=key, description="test"
        )
    )


def test_one_key_charged_by_many_callers_at_once_is_one_charge(database_url: str) -> None:
    async def run() -> tuple[set[str | None], int]:
        pool = await open_pool(database_url, max_size=20)
        try:
            sandbox = SandboxGateway(pool)
            key = str(uuid.uuid4())
            results = await asyncio.gather(*(charge(sandbox, "tok_ok", key) for _ in range(20)))
            # A later "re-run" (say, after a crash) still gets the first charge.
            results.append(await charge(sandbox, "tok_ok", key))
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "select count(*) from sandbox_charges where idempotency_key = %s", [key]
                )
                row = await cur.fetchone()
            assert row is not None
            assert all(r.succeeded for r in results)
            return {r.reference for r in results}, int(row[0])
        finally:
            await pool.close()

    references, rows = asyncio.run(run())
    assert rows == 1 and len(references) == 1


def test_tokens_behave_like_a_real_gateways_outcomes(database_url: str) -> None:
    async def run() -> None:
        pool = await open_pool(database_url)
        try:
            sandbox = SandboxGateway(pool)
            declined = await charge(sandbox, "tok_declined", str(uuid.uuid4()))
            assert (declined.status, declined.reason) == ("declined", "card_declined")
            unknown = await charge(sandbox, "tok_nonsense", str(uuid.uuid4()))
            assert unknown.reason == "invalid_token"
            with pytest.raises(GatewayUnavailable):
                await charge(sandbox, "tok_error", str(uuid.uuid4()))
            key = str(uuid.uuid4())
            assert (await charge(sandbox, "tok_ok", key)).succeeded
            reused = await charge(sandbox, "tok_ok", key, amount=2000)
            assert (reused.status, reused.reason) == ("declined", "idempotency_key_reused")
        finally:
            await pool.close()

    asyncio.run(run())


def test_unknown_gateway_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="acme"):
        gateways.make_gateway(Settings(payment_gateway="acme"), None)  # type: ignore[arg-type]
