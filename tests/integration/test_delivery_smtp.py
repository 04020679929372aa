"""The SMTP pool against real aiosmtpd servers: plain, STARTTLS, implicit TLS, AUTH, refusals,
a server that is down and comes back. No SMTP mocks."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from surge.db.embedded import free_port
from surge.delivery.bounces import SendStatus
from surge.delivery.circuit import Circuit
from surge.delivery.mime import Composer
from surge.delivery.senders import SenderConfig
from surge.delivery.smtp import SenderPool

FROM = "news@example.org"


@dataclass
class Mailbox:
    """aiosmtpd handler: keeps what arrives, refuses the recipients it is told to."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_replies: dict[str, str] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    tls_sessions: int = 0
    auth_sessions: int = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.data_replies:
                return self.data_replies[rcpt]
        self.received.extend((rcpt, envelope.original_content or b"") for rcpt in envelope.rcpt_tos)
        transport = server.transport
        self.tls_sessions += transport is not None and bool(transport.get_extra_info("ssl_object"))
        self.auth_sessions += bool(session.authenticated)
        return "250 2.0.0 queued"


@dataclass
class Server:
    port: int
    mailbox: Mailbox
    protocols: list[SMTP]

    @property
    def connections(self) -> int:
        return len(self.protocols)

    def drop_clients(self) -> None:
        """Close every client connection from the server side, as an idle timeout would."""
        for protocol in self.protocols:
            if protocol.transport is not None:
                protocol.transport.close()


@asynccontextmanager
async def smtp_server(
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    mailbox: Mailbox | None = None,
    **smtp_kwargs: Any,
) -> AsyncIterator[Server]:
    """An aiosmtpd server on loopback, in this event loop, handing mail to ``mailbox``."""
    mailbox = mailbox or Mailbox()
    protocols: list[SMTP] = []

    def factory() -> SMTP:
        protocol = SMTP(mailbox, hostname="test-server", **smtp_kwargs)
        protocols.append(protocol)  # one protocol per TCP connection
        return protocol

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", port, ssl=ssl_context)
    bound = server.sockets[0].getsockname()[1]
    try:
        yield Server(bound, mailbox, protocols)
    finally:
        server.close()
        for protocol in protocols:
            if protocol.transport is not None:
                protocol.transport.close()
        await server.wait_closed()


def sender(port: int, **options: Any) -> SenderConfig:
    config = SenderConfig(name="test", host="127.0.0.1", port=port, tls="none", timeout=5)
    return replace(config, **options)


def message(i: int) -> bytes:
    # Lines starting with a dot check the client's dot-stuffing and the server's undoing of it.
    text = f"Hello donor {i}\n.\n..hidden line\nZoë — thanks\n"
    return Composer(FROM, "Example").compose(
        f"donor{i}@example.com", f"Giving day {i}", text=text, message_id=f"m{i}@example.org"
    )


async def test_many_messages_arrive_intact_over_few_persistent_connections() -> None:
    async with smtp_server() as server:
        pool = SenderPool(sender(server.port, max_connections=5))
        data = {f"donor{i}@example.com": message(i) for i in range(200)}
        outcomes = await asyncio.gather(*(pool.send(FROM, rcpt, d) for rcpt, d in data.items()))
        await pool.aclose()
    assert {o.status for o in outcomes} == {SendStatus.SENT}
    assert sorted(server.mailbox.received) == sorted(data.items())
    assert server.connections <= 5
    assert pool.connections_opened == server.connections


async def test_starttls_with_auth_sends_over_tls_after_login(
    server_tls: ssl.SSLContext, ca_file: str
) -> None:
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data == (b"surge", b"s3cret pass")
        # handled=False: aiosmtpd then answers the failure itself (535).
        return AuthResult(success=ok, handled=False)

    async with smtp_server(
        tls_context=server_tls, require_starttls=True, auth_required=True, authenticator=check
    ) as server:
        good = sender(
            server.port, tls="starttls", ca_file=ca_file, username="surge", password="s3cret pass"
        )
        pool = SenderPool(good)
        outcome = await pool.send(FROM, "bob@example.com", message(1))
        await pool.aclose()
        assert outcome.status is SendStatus.SENT, outcome
        assert (server.mailbox.tls_sessions, server.mailbox.auth_sessions) == (1, 1)

        wrong = SenderPool(replace(good, password="guess"))
        refused = await wrong.send(FROM, "bob@example.com", message(2))
        await wrong.aclose()
    assert refused.status is SendStatus.TEMPORARY
    assert refused.sender_unavailable
    assert refused.reply.startswith("sender unavailable")
    assert "535" in refused.reply


async def test_untrusted_certificate_is_refused_unless_verification_is_off(
    server_tls: ssl.SSLContext,
) -> None:
    async with smtp_server(tls_context=server_tls, require_starttls=True) as server:
        strict = SenderPool(sender(server.port, tls="starttls"))
        refused = await strict.send(FROM, "bob@example.com", message(1))
        lax = SenderPool(sender(server.port, tls="starttls", verify=False))
        accepted = await lax.send(FROM, "bob@example.com", message(1))
        for pool in (strict, lax):
            await pool.aclose()
    assert refused.status is SendStatus.TEMPORARY
    assert "CERTIFICATE_VERIFY_FAILED" in refused.reply
    assert accepted.status is SendStatus.SENT


async def test_implicit_tls_sends_over_tls_from_the_first_byte(
    server_tls: ssl.SSLContext, ca_file: str
) -> None:
    async with smtp_server(ssl_context=server_tls) as server:
        pool = SenderPool(sender(server.port, tls="implicit", ca_file=ca_file))
        outcomes = [await pool.send(FROM, f"r{i}@example.com", message(i)) for i in range(3)]
        await pool.aclose()
    assert [o.status for o in outcomes] == [SendStatus.SENT] * 3
    assert server.mailbox.tls_sessions == 3
    assert server.connections == 1


async def test_refusals_become_temporary_permanent_and_hard_bounce_outcomes() -> None:
    async with smtp_server() as server:
        server.mailbox.rcpt_replies = {
            "grey@example.com": "451 4.7.1 Greylisted, try again later",
            "gone@example.com": "550 5.1.1 <gone@example.com>: User unknown",
            "policy@example.com": "550 5.7.1 Rejected by policy",
        }
        server.mailbox.data_replies = {"big@example.com": "552 5.3.4 Message too big"}
        pool = SenderPool(sender(server.port, max_connections=1))
        results = {}
        for rcpt in ("grey", "gone", "policy", "big", "fine"):
            results[rcpt] = await pool.send(FROM, f"{rcpt}@example.com", message(1))
        await pool.aclose()

    assert (results["grey"].status, results["grey"].code) == (SendStatus.TEMPORARY, 451)
    assert not results["grey"].sender_unavailable  # the recipient's problem, not the sender's
    assert (results["gone"].status, results["gone"].hard_bounce) == (SendStatus.PERMANENT, True)
    assert "User unknown" in results["gone"].reply
    assert (results["policy"].status, results["policy"].hard_bounce) == (
        SendStatus.PERMANENT,
        False,
    )
    assert (results["big"].status, results["big"].code) == (SendStatus.PERMANENT, 552)
    assert results["big"].hard_bounce is False
    # Refusals leave the connection usable: RSET, then the next message on the same one.
    assert results["fine"].status is SendStatus.SENT
    assert server.connections == 1
    assert [r for r, _ in server.mailbox.received] == ["fine@example.com"]


async def test_down_server_opens_the_circuit_then_recovers_when_it_is_back() -> None:
    port = free_port()  # nothing listens here yet
    # The open period (1 s) outlasts the checks below even on a loaded machine.
    circuit = Circuit(threshold=3, base_delay=1.0, max_delay=2.0)
    pool = SenderPool(sender(port, max_connections=4), circuit=circuit)

    first = await asyncio.gather(*(pool.send(FROM, f"r{i}@x.org", message(i)) for i in range(6)))
    assert {(o.status, o.sender_unavailable) for o in first} == {(SendStatus.TEMPORARY, True)}
    assert not pool.sender_available()

    fast = await asyncio.gather(*(pool.send(FROM, f"s{i}@x.org", message(i)) for i in range(100)))
    # Refused by the open circuit without touching the network: a connection attempt would
    # add its error to the reply ("sender unavailable: …").
    assert all(o.reply == "sender unavailable" for o in fast)
    assert all(o.retry_after is not None and 0 < o.retry_after <= 1.0 for o in fast)

    async with smtp_server(port=port) as server:
        await asyncio.sleep(pool.retry_after())
        assert pool.sender_available()
        back = await pool.send(FROM, "back@x.org", message(1))
        sends = (pool.send(FROM, f"t{i}@x.org", message(i)) for i in range(20))
        more = await asyncio.gather(*sends)
        await pool.aclose()
    assert back.status is SendStatus.SENT
    assert {o.status for o in more} == {SendStatus.SENT}
    assert len(server.mailbox.received) == 21


async def test_failed_probe_keeps_the_circuit_open_for_longer() -> None:
    circuit = Circuit(threshold=1, base_delay=0.1, max_delay=1.0)
    pool = SenderPool(sender(free_port()), circuit=circuit)
    await pool.send(FROM, "a@x.org", message(1))
    first_wait = pool.retry_after()
    await asyncio.sleep(first_wait)
    probe = await pool.send(FROM, "b@x.org", message(1))
    assert probe.reply.startswith("sender unavailable: ")  # the probe really tried
    assert pool.retry_after() > first_wait
    await pool.aclose()


async def test_connection_dropped_while_idle_is_replaced_without_failing_the_message() -> None:
    async with smtp_server() as server:
        pool = SenderPool(sender(server.port))
        assert (await pool.send(FROM, "a@x.org", message(1))).sent
        server.drop_clients()
        await asyncio.sleep(0.05)
        again = await pool.send(FROM, "b@x.org", message(2))
        await pool.aclose()
    assert again.status is SendStatus.SENT
    assert pool.connections_opened == 2
    assert pool.sender_available()


async def test_idle_connection_is_checked_with_noop_before_reuse(tmp_path: Path) -> None:
    async with smtp_server() as server:
        pool = SenderPool(sender(server.port), noop_after=0.0)
        for i in range(3):
            assert (await pool.send(FROM, f"r{i}@x.org", message(i))).sent
        await pool.aclose()
    assert server.connections == 1


async def test_aclose_quits_idle_connections() -> None:
    async with smtp_server() as server:
        pool = SenderPool(sender(server.port, max_connections=3))
        await asyncio.gather(*(pool.send(FROM, f"r{i}@x.org", message(i)) for i in range(9)))
        await pool.aclose()
        await asyncio.sleep(0.05)
        assert all(p.transport is None for p in server.protocols)
        with pytest.raises(RuntimeError):
            await pool.send(FROM, "late@x.org", message(1))
