"""The SMTP pool against the development sink, which speaks RFC 2920 PIPELINING, in this event
loop: what goes on the wire per message, refusals at every stage of a pipelined transaction,
STARTTLS and AUTH before pipelining, timeouts. aiosmtpd (no PIPELINING) is in
``test_delivery_smtp.py``; the one-command-at-a-time path is checked against it here too."""

from __future__ import annotations

import asyncio
import base64
import functools
import ssl
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP

from surge.delivery.bounces import SendStatus
from surge.delivery.circuit import Circuit
from surge.delivery.senders import SenderConfig
from surge.delivery.sink import Mailbox, SinkProtocol
from surge.delivery.smtp import SenderPool
from tests.integration.test_delivery_smtp import FROM, smtp_server
from tests.integration.test_delivery_smtp import message as compose

QUEUED = b"250 2.0.0 queued\r\n"
# Composed once: the Date header changes every second, and tests compare what arrived.
message = functools.cache(compose)


class Kept(Mailbox):
    """The sink's mailbox, also keeping each message in memory with its recipient count."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.messages: list[tuple[bytes, int]] = []

    def store(self, data: bytes, recipients: int) -> bool:
        kept = super().store(data, recipients)
        if kept:
            self.messages.append((data, recipients))
        return kept


@dataclass
class Script:
    """What a scripted sink says instead of the usual, by address; and what it has seen."""

    mail: dict[bytes, bytes] = field(default_factory=dict)
    rcpt: dict[bytes, bytes] = field(default_factory=dict)
    data: dict[bytes, bytes] = field(default_factory=dict)
    end: dict[bytes, bytes] = field(default_factory=dict)
    ehlo: bytes | None = None
    #: Advertise CHUNKING (BDAT); off, the client pipelines MAIL/RCPT/DATA.
    chunking: bool = False
    tls: ssl.SSLContext | None = None
    login: tuple[bytes, bytes] | None = None
    #: Every chunk the server read (after TLS: decrypted), i.e. roughly each client write.
    chunks: list[bytes] = field(default_factory=list)
    sessions: list[ScriptedSink] = field(default_factory=list)


class _Rewriting:
    """The sink's transport, replacing its reply to the end of data when scripted."""

    def __init__(self, transport: asyncio.Transport, session: ScriptedSink) -> None:
        self.transport, self.session = transport, session

    def write(self, data: bytes) -> None:
        # One reply to an end of data per transaction, in order, even when pipelined.
        parts = data.split(QUEUED)
        out = [parts[0]]
        for part in parts[1:]:
            scripted = self.session.end_replies.popleft() if self.session.end_replies else None
            out += [QUEUED if scripted is None else scripted, part]
        self.transport.write(b"".join(out))

    def close(self) -> None:
        self.transport.close()


class ScriptedSink(SinkProtocol):
    """``SinkProtocol`` plus scripted refusals, STARTTLS and AUTH PLAIN/LOGIN."""

    def __init__(self, mailbox: Mailbox, script: Script) -> None:
        super().__init__(mailbox, chunking=script.chunking)
        self.script = script
        self.end_replies: deque[bytes | None] = deque()
        self.secure = False
        self.user: bytes | None = None
        self.login_step: list[bytes] | None = None
        self.last_rcpt: bytes | None = None
        self.upgrading: list[bytes] | None = None
        script.sessions.append(self)

    def data_received(self, data: bytes) -> None:
        if self.upgrading is not None:
            # Bytes decrypted before start_tls returned: answer them over TLS, once it has.
            self.upgrading.append(data)
            return
        self.script.chunks.append(data)
        real = self.transport
        if real is None:
            return
        self.transport = _Rewriting(real, self)  # type: ignore[assignment]
        try:
            super().data_received(data)
        finally:
            if self.transport is not None:
                self.transport = real

    def _command(self, line: bytes) -> bytes:
        verb, arg = line[:4].upper(), line[5:].strip()
        if self.login_step is not None:
            return self._login_line(line)
        if verb == b"EHLO":
            return self.script.ehlo or self._ehlo(super()._command(line))
        if line.upper() == b"STARTTLS" and self.script.tls is not None:
            self.upgrading = []
            asyncio.get_running_loop().create_task(self._upgrade())
            return b"220 2.0.0 go ahead\r\n"
        if verb == b"AUTH":
            return self._auth(arg)
        if verb == b"MAIL" and self.script.login and self.user is None:
            return b"530 5.7.0 authentication required\r\n"
        address = arg.partition(b":")[2]
        if verb == b"MAIL" and address in self.script.mail:
            return self.script.mail[address]
        if verb == b"RCPT":
            self.last_rcpt = address
            if address in self.script.rcpt:
                return self.script.rcpt[address]
        if verb == b"DATA" and self.last_rcpt in self.script.data:
            reply = self.script.data[self.last_rcpt]
            self.in_data = reply.startswith(b"354")
            if self.in_data:
                self.end_replies.append(None)
            return reply
        reply = super()._command(line)
        if verb == b"DATA" and reply.startswith(b"354"):
            self.end_replies.append(self.script.end.get(self.last_rcpt or b""))
        if verb == b"BDAT" and line.upper().endswith(b" LAST") and self.recipients:
            self.end_replies.append(self.script.end.get(self.last_rcpt or b""))
        return reply

    def _ehlo(self, reply: bytes) -> bytes:
        first, _, rest = reply.partition(b"\r\n")
        extra = b""
        if self.script.tls is not None and not self.secure:
            extra = b"250-STARTTLS\r\n"
        elif self.script.login is not None:
            extra = b"250-AUTH PLAIN LOGIN\r\n"
        return first + b"\r\n" + extra + rest

    async def _upgrade(self) -> None:
        assert self.transport is not None and self.script.tls is not None
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(self.transport, self, self.script.tls, server_side=True)
        assert transport is not None
        self.transport, self.secure = transport, True
        early, self.upgrading = self.upgrading or [], None
        for data in early:
            self.data_received(data)

    def _auth(self, arg: bytes) -> bytes:
        mechanism, _, initial = arg.partition(b" ")
        if mechanism.upper() == b"LOGIN":
            self.login_step = []
            return b"334 VXNlcm5hbWU6\r\n"
        _, user, password = base64.b64decode(initial).split(b"\0")
        return self._check(user, password)

    def _login_line(self, line: bytes) -> bytes:
        assert self.login_step is not None
        self.login_step.append(base64.b64decode(line))
        if len(self.login_step) == 1:
            return b"334 UGFzc3dvcmQ6\r\n"
        user, password = self.login_step
        self.login_step = None
        return self._check(user, password)

    def _check(self, user: bytes, password: bytes) -> bytes:
        if (user, password) != self.script.login:
            return b"535 5.7.8 authentication failed\r\n"
        self.user = user
        return b"235 2.7.0 authenticated\r\n"


@dataclass
class Sink:
    port: int
    mailbox: Kept
    script: Script

    @property
    def connections(self) -> int:
        return len(self.script.sessions)

    def commands(self) -> list[bytes]:
        """The command verbs read so far (message bodies left out)."""
        verbs = (b"EHLO", b"HELO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP", b"QUIT")
        lines = b"".join(self.script.chunks).split(b"\r\n")
        return [line[:4] for line in lines if line[:4] in verbs]


@asynccontextmanager
async def sink(
    tmp_path: Path, script: Script | None = None, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Sink]:
    script = script or Script()
    mailbox = Kept(tmp_path / "sink")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ScriptedSink(mailbox, script), "127.0.0.1", 0, ssl=ssl_context
    )
    try:
        yield Sink(server.sockets[0].getsockname()[1], mailbox, script)
    finally:
        server.close()
        for session in script.sessions:
            if session.transport is not None:
                session.transport.close()
        await server.wait_closed()
        mailbox.close()


def sender(port: int, **options: Any) -> SenderConfig:
    config = SenderConfig(name="t", host="127.0.0.1", port=port, tls="none", timeout=5)
    return replace(config, **options)


async def test_pipelined_transaction_is_one_write_for_the_envelope_and_one_for_the_body(
    tmp_path: Path,
) -> None:
    async with sink(tmp_path) as server:
        pool = SenderPool(sender(server.port, max_connections=1))
        for i in range(3):
            assert (await pool.send(FROM, f"r{i}@x.org", message(i))).sent
        await pool.aclose()
    chunks = server.script.chunks
    assert chunks[0].startswith(b"EHLO ")
    envelopes = [c for c in chunks if c.startswith(b"MAIL")]
    assert envelopes == [
        b"MAIL FROM:<%s>\r\nRCPT TO:<r%d@x.org>\r\nDATA\r\n" % (FROM.encode(), i) for i in range(3)
    ]
    assert len(chunks) == 1 + 2 * 3 + 1  # EHLO, (envelope, body) per message, QUIT
    assert chunks[-1] == b"QUIT\r\n"
    # The sink undid the dot-stuffing: what it kept is exactly what was composed.
    assert [data for data, _ in server.mailbox.messages] == [message(i) for i in range(3)]


async def test_busy_connection_sends_the_next_envelope_with_the_previous_body(
    tmp_path: Path,
) -> None:
    async with sink(tmp_path) as server:
        pool = SenderPool(sender(server.port, max_connections=1))
        sends = (pool.send(FROM, f"r{i}@x.org", message(i)) for i in range(10))
        outcomes = await asyncio.gather(*sends)
        await pool.aclose()
    assert {o.status for o in outcomes} == {SendStatus.SENT}
    assert [d for d, _ in server.mailbox.messages] == [message(i) for i in range(10)]
    # One write per message: body and end of data, then the next MAIL, RCPT and DATA.
    both = [c for c in server.script.chunks if b"\r\n.\r\nMAIL FROM:" in c]
    assert len(both) >= 8
    assert all(c.endswith(b"DATA\r\n") for c in both)


async def test_421_to_a_body_retries_the_envelope_pipelined_behind_it(tmp_path: Path) -> None:
    script = Script(end={b"<bye@x.org>": b"421 4.3.2 Shutting down\r\n"})
    async with sink(tmp_path, script) as server:
        pool = SenderPool(sender(server.port, max_connections=1))
        names = ["bye", "a", "b", "c"]
        outcomes = await asyncio.gather(*(pool.send(FROM, f"{n}@x.org", message(1)) for n in names))
        await pool.aclose()
    bye, *others = outcomes
    assert (bye.status, bye.sender_unavailable, bye.reply) == (
        SendStatus.TEMPORARY,
        True,
        "421 4.3.2 Shutting down",
    )
    assert [o.status for o in others] == [SendStatus.SENT] * 3
    assert pool.connections_opened == 2
    assert pool.sender_available()


async def test_without_pipelining_commands_go_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks: list[bytes] = []
    reads = AiosmtpdSMTP.data_received

    def recording(self: AiosmtpdSMTP, data: bytes) -> None:
        chunks.append(data)
        reads(self, data)

    monkeypatch.setattr(AiosmtpdSMTP, "data_received", recording)
    async with smtp_server() as server:  # aiosmtpd: does not advertise PIPELINING
        pool = SenderPool(sender(server.port))
        assert (await pool.send(FROM, "a@x.org", message(1))).sent
        await pool.aclose()
    assert server.mailbox.received == [("a@x.org", message(1))]
    commands = [c for c in chunks if c[:4] in (b"EHLO", b"MAIL", b"RCPT", b"DATA", b"QUIT")]
    assert commands == [
        chunks[0],
        b"MAIL FROM:<%s>\r\n" % FROM.encode(),
        b"RCPT TO:<a@x.org>\r\n",
        b"DATA\r\n",
        b"QUIT\r\n",
    ]

    script = Script(ehlo=b"502 5.5.2 EHLO not implemented\r\n")  # a HELO-only server
    async with sink(tmp_path, script) as old:
        pool = SenderPool(sender(old.port))
        assert (await pool.send(FROM, "b@x.org", message(2))).sent
        await pool.aclose()
    assert old.commands() == [b"EHLO", b"HELO", b"MAIL", b"RCPT", b"DATA", b"QUIT"]
    assert not any(b"MAIL" in c and b"RCPT" in c for c in old.script.chunks)


async def test_pipelined_refusals_at_each_stage_become_outcomes_and_keep_the_connection(
    tmp_path: Path,
) -> None:
    script = Script(
        rcpt={
            b"<grey@x.org>": b"451 4.7.1 Greylisted\r\n",
            b"<gone@x.org>": b"550 5.1.1 User unknown\r\n",
        },
        data={b"<nodata@x.org>": b"554 5.7.1 Not from you\r\n"},
        end={
            b"<big@x.org>": b"552 5.3.4 Message too big\r\n",
            b"<later@x.org>": b"452 4.3.1 Out of space\r\n",
        },
    )
    async with sink(tmp_path, script) as server:
        pool = SenderPool(sender(server.port, max_connections=1))
        names = ("grey", "gone", "nodata", "big", "later", "fine")
        results = {n: await pool.send(FROM, f"{n}@x.org", message(1)) for n in names}
        await pool.aclose()
    summary = {
        n: (o.status, o.code, o.hard_bounce, o.sender_unavailable) for n, o in results.items()
    }
    assert summary == {
        "grey": (SendStatus.TEMPORARY, 451, False, False),
        "gone": (SendStatus.PERMANENT, 550, True, False),
        "nodata": (SendStatus.PERMANENT, 554, False, False),
        "big": (SendStatus.PERMANENT, 552, False, False),
        "later": (SendStatus.TEMPORARY, 452, False, False),
        "fine": (SendStatus.SENT, 250, False, False),
    }
    assert server.connections == 1
    # RSET after each refusal before the body; none after a refused end of data.
    assert server.commands().count(b"RSET") == 3
    # "big" and "later" were stored by the sink before their scripted refusal.
    assert [n for _, n in server.mailbox.messages] == [1, 1, 1]


async def test_refused_sender_makes_the_sender_unavailable_not_the_recipient(
    tmp_path: Path,
) -> None:
    script = Script(mail={b"<blocked@example.org>": b"550 5.7.1 Sender blocked\r\n"})
    async with sink(tmp_path, script) as server:
        pool = SenderPool(sender(server.port), circuit=Circuit(threshold=3))
        refused = await pool.send("blocked@example.org", "a@x.org", message(1))
        fine = await pool.send(FROM, "b@x.org", message(2))
        await pool.aclose()
    assert (refused.status, refused.sender_unavailable) == (SendStatus.TEMPORARY, True)
    assert refused.reply == "sender unavailable: 550 5.7.1 Sender blocked"
    assert fine.sent and server.connections == 1
    # The pipelined RCPT and DATA after the refused MAIL were answered 503 and read.
    assert server.commands()[1:6] == [b"MAIL", b"RCPT", b"DATA", b"RSET", b"MAIL"]


async def test_data_accepted_after_every_recipient_was_refused_is_ended_empty(
    tmp_path: Path,
) -> None:
    # A server that wrongly says 354 with no recipient: RFC 2920 says send a lone dot.
    script = Script(
        rcpt={b"<gone@x.org>": b"550 5.1.1 User unknown\r\n"},
        data={b"<gone@x.org>": b"354 go on anyway\r\n"},
    )
    async with sink(tmp_path, script) as server:
        pool = SenderPool(sender(server.port))
        gone = await pool.send(FROM, "gone@x.org", message(1))
        fine = await pool.send(FROM, "fine@x.org", message(2))
        await pool.aclose()
    assert (gone.status, gone.hard_bounce) == (SendStatus.PERMANENT, True)
    assert fine.sent and server.connections == 1
    # The lone dot ended an empty message for nobody; then the next one went through.
    assert [(len(d) <= 2, n) for d, n in server.mailbox.messages] == [(True, 0), (False, 1)]
    assert server.mailbox.messages[-1] == (message(2), 1)


async def test_421_mid_transaction_drops_the_connection_and_retries_once_on_a_new_one(
    tmp_path: Path,
) -> None:
    script = Script(rcpt={b"<bye@x.org>": b"421 4.3.2 Shutting down\r\n"})
    async with sink(tmp_path, script) as server:
        pool = SenderPool(sender(server.port))
        assert (await pool.send(FROM, "a@x.org", message(1))).sent
        bye = await pool.send(FROM, "bye@x.org", message(2))
        after = await pool.send(FROM, "c@x.org", message(3))
        await pool.aclose()
    assert (bye.status, bye.sender_unavailable) == (SendStatus.TEMPORARY, True)
    assert bye.reply == "421 4.3.2 Shutting down"
    # Reused connection: replaced and retried; the new one said 421 too; then a third.
    assert after.sent and pool.connections_opened == 3


async def test_reply_to_no_command_while_idle_makes_the_connection_untrusted(
    tmp_path: Path,
) -> None:
    async with sink(tmp_path) as server:
        pool = SenderPool(sender(server.port))
        assert (await pool.send(FROM, "a@x.org", message(1))).sent
        for session in server.script.sessions:  # a "timeout" notice, connection left open
            assert session.transport is not None
            session.transport.write(b"421 4.4.2 idle too long\r\n")
        await asyncio.sleep(0.05)
        again = await pool.send(FROM, "b@x.org", message(2))
        await pool.aclose()
    assert again.sent
    assert pool.connections_opened == 2
    assert server.mailbox.messages[-1] == (message(2), 1)


async def test_starttls_then_auth_then_pipelined_sends(
    tmp_path: Path, ca: trustme.CA, ca_file: str, server_tls: ssl.SSLContext
) -> None:
    script = Script(tls=server_tls, login=(b"surge", b"s3cret"))
    async with sink(tmp_path, script) as server:
        config = sender(
            server.port, tls="starttls", ca_file=ca_file, username="surge", password="s3cret"
        )
        pool = SenderPool(config)
        outcomes = [await pool.send(FROM, f"r{i}@x.org", message(i)) for i in range(2)]
        await pool.aclose()
        wrong = SenderPool(replace(config, password="guess"))
        refused = await wrong.send(FROM, "r@x.org", message(1))
        await wrong.aclose()
    assert [o.status for o in outcomes] == [SendStatus.SENT] * 2
    session = server.script.sessions[0]
    assert session.secure and session.user == b"surge"
    # After TLS the client asked EHLO again, then sent its envelopes pipelined.
    assert server.commands()[:3] == [b"EHLO", b"EHLO", b"MAIL"]
    assert any(c.startswith(b"MAIL") and c.endswith(b"DATA\r\n") for c in server.script.chunks)
    assert refused.sender_unavailable and "535" in refused.reply


async def test_auth_login_is_used_when_plain_is_not_offered(tmp_path: Path) -> None:
    ehlo = b"250-surge-sink\r\n250-PIPELINING\r\n250 AUTH LOGIN\r\n"
    script = Script(login=(b"surge", b"pw"), ehlo=ehlo)
    async with sink(tmp_path, script) as server:
        pool = SenderPool(sender(server.port, username="surge", password="pw"))
        outcome = await pool.send(FROM, "a@x.org", message(1))
        await pool.aclose()
    assert outcome.sent
    assert server.script.sessions[0].user == b"surge"


async def test_implicit_tls_with_pipelining(
    tmp_path: Path, ca_file: str, server_tls: ssl.SSLContext
) -> None:
    async with sink(tmp_path, ssl_context=server_tls) as server:
        pool = SenderPool(sender(server.port, tls="implicit", ca_file=ca_file))
        outcomes = await asyncio.gather(
            *(pool.send(FROM, f"r{i}@x.org", message(i)) for i in range(5))
        )
        await pool.aclose()
    assert {o.status for o in outcomes} == {SendStatus.SENT}
    assert sorted(d for d, _ in server.mailbox.messages) == sorted(message(i) for i in range(5))


async def test_silent_server_times_out_as_sender_unavailable(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)  # never greets
    port = server.sockets[0].getsockname()[1]
    pool = SenderPool(sender(port, timeout=0.2))
    outcome = await pool.send(FROM, "a@x.org", message(1))
    await pool.aclose()
    server.close()
    await server.wait_closed()
    assert (outcome.status, outcome.sender_unavailable) == (SendStatus.TEMPORARY, True)
    assert "TimeoutError" in outcome.reply


async def test_no_reply_after_the_body_is_not_retried(tmp_path: Path) -> None:
    script = Script(end={b"<slow@x.org>": b""})  # the end-of-data reply never comes
    async with sink(tmp_path, script) as server:
        pool = SenderPool(sender(server.port, timeout=0.3))
        slow = await pool.send(FROM, "slow@x.org", message(1))
        await pool.aclose()
    # It may have been delivered: no silent second attempt, the dispatcher decides.
    assert (slow.status, slow.sender_unavailable) == (SendStatus.TEMPORARY, True)
    assert "timed out" in slow.reply or "TimeoutError" in slow.reply
    assert pool.connections_opened == 1


async def test_non_ascii_recipient_is_refused_without_touching_the_network() -> None:
    pool = SenderPool(sender(1))  # nothing listens on port 1
    outcome = await pool.send(FROM, "zoë@example.org", message(1))
    assert (outcome.status, outcome.code, outcome.sender_unavailable) == (
        SendStatus.PERMANENT,
        None,
        False,
    )
    assert pool.connections_opened == 0 and pool.sender_available()


async def test_with_chunking_a_whole_transaction_is_one_write_and_busy_ones_share_writes(
    tmp_path: Path,
) -> None:
    async with sink(tmp_path, Script(chunking=True)) as server:
        pool = SenderPool(sender(server.port, max_connections=1))
        sends = (pool.send(FROM, f"r{i}@x.org", message(i)) for i in range(20))
        outcomes = await asyncio.gather(*sends)
        await pool.aclose()
    assert all(o.sent for o in outcomes)
    assert [data for data, _ in server.mailbox.messages] == [message(i) for i in range(20)]
    transactions = [c for c in server.script.chunks if b"BDAT" in c]
    # BDAT carries the message itself: several transactions leave in one write.
    assert sum(c.count(b"MAIL FROM:") for c in transactions) == 20
    assert len(transactions) < 20
    assert b"DATA\r\n" not in b"".join(server.script.chunks)


async def test_with_chunking_refusals_still_become_the_right_outcomes(tmp_path: Path) -> None:
    script = Script(
        chunking=True,
        mail={b"<blocked@example.org>": b"550 5.7.1 Sender blocked\r\n"},
        rcpt={
            b"<grey@x.org>": b"451 4.7.1 Greylisted\r\n",
            b"<gone@x.org>": b"550 5.1.1 User unknown\r\n",
        },
        end={b"<big@x.org>": b"552 5.3.4 Message too big\r\n"},
    )
    async with sink(tmp_path, script) as server:
        pool = SenderPool(sender(server.port, max_connections=1), circuit=Circuit(threshold=3))
        results = {n: await pool.send(FROM, f"{n}@x.org", message(1)) for n in ("grey", "gone")}
        results["big"] = await pool.send(FROM, "big@x.org", message(1))
        results["blocked"] = await pool.send("blocked@example.org", "a@x.org", message(1))
        results["fine"] = await pool.send(FROM, "fine@x.org", message(1))
        await pool.aclose()
    summary = {
        n: (o.status, o.code, o.hard_bounce, o.sender_unavailable) for n, o in results.items()
    }
    assert summary == {
        "grey": (SendStatus.TEMPORARY, 451, False, False),
        "gone": (SendStatus.PERMANENT, 550, True, False),
        "big": (SendStatus.PERMANENT, 552, False, False),
        "blocked": (SendStatus.TEMPORARY, None, False, True),
        "fine": (SendStatus.SENT, 250, False, False),
    }
    assert results["blocked"].reply == "sender unavailable: 550 5.7.1 Sender blocked"
    assert server.connections == 1
    # Only "big" and "fine" reached the mailbox: refused envelopes' chunks were discarded.
    assert len(server.mailbox.messages) == 2
