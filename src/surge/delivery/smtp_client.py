"""One client connection to an SMTP server: the part of RFC 5321 a submission client needs.

Connects over plain TCP, STARTTLS (RFC 3207) or implicit TLS, says EHLO (HELO if the server
does not know EHLO), logs in with AUTH PLAIN or LOGIN (RFC 4954) and runs MAIL/RCPT/DATA
transactions. When the server advertises PIPELINING (RFC 2920), ``MAIL``, ``RCPT`` and
``DATA`` go out in one write and the body in a second one: two round trips per message
instead of four, which is what a worker spent most of its SMTP time on with aiosmtplib.
``start`` returns once the body is written, so the next transaction's envelope can follow it
in the same packet while the first one's result is still on its way (``finish``).

A plain ``asyncio.Protocol``: each command written gets a future, resolved in order as
replies are parsed. Every wait is bounded by the reply timeout. ``SenderPool``
(``smtp.py``) decides what the replies mean.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import ssl
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, cast

# Longest reply line we keep buffering before calling the server broken (RFC 5321 says 512).
MAX_LINE = 64 * 1024
_NEWLINES = re.compile(rb"\r\n|\r|\n")


class SMTPError(Exception):
    """The server or the connection failed in a way that is not about one recipient."""


class ReplyError(SMTPError):
    """An unexpected reply while connecting, logging in or checking the connection."""

    def __init__(self, command: str, code: int, message: str) -> None:
        super().__init__(f"{command}: {code} {message}")
        self.code = code
        self.message = message


class TransactionLost(SMTPError):
    """The connection broke, timed out or got 421 mid-transaction.

    ``before_data`` is True when the body was not sent, so nothing can have been delivered.
    """

    def __init__(self, reason: str, before_data: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.before_data = before_data


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    message: str

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


class Stage(StrEnum):
    """The step of a transaction a reply answers."""

    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    #: The reply after the body: the transaction's result.
    END = "end"


@dataclass(frozen=True, slots=True)
class InFlight:
    """A transaction whose body is sent and whose result is still to come."""

    end: asyncio.Future[Reply]
    #: With CHUNKING the envelope's replies are still to come too: MAIL's, RCPT's.
    envelope: tuple[asyncio.Future[Reply], asyncio.Future[Reply]] | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """Where a transaction stopped: its first refusal, or the reply to the end of data."""

    stage: Stage
    reply: Reply


def crlf_lines(data: bytes) -> bytes:
    """``data`` with CRLF line ends (RFC 5322), as BDAT sends it."""
    # Composer output is CRLF already; three memchr-speed counts prove it without a copy.
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = _NEWLINES.sub(b"\r\n", data)
    return data


def message_body(data: bytes) -> bytes:
    """``data`` as DATA content: CRLF line ends, dot-stuffed, ending with ``CRLF . CRLF``."""
    data = crlf_lines(data)
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if data and not data.endswith(b"\r\n"):
        return data + b"\r\n.\r\n"
    return data + b".\r\n"


def mailbox(address: str) -> bytes:
    """``address`` as an SMTP path ``<a@b>``; CR, LF and non-ASCII raise ``ValueError``."""
    if "\r" in address or "\n" in address or not address.isascii():
        raise ValueError(f"not an ASCII address: {address!r}")
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        return address.encode()
    return b"<" + address.encode() + b">"


class _ReplyReader(asyncio.Protocol):
    """Writes commands and hands out their replies in order, one future per command.

    Writes are buffered and flushed two loop iterations later, so commands written by
    different tasks meanwhile (one's body, the next one's envelope) leave in one packet.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.lines: list[bytes] = []
        #: One future per command sent and not yet answered, in the order sent.
        self.pending: deque[asyncio.Future[Reply]] = deque()
        self.out: list[bytes] = []
        self.lost: SMTPError | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        why = f": {type(exc).__name__}: {exc}" if exc else ""
        self.transport = None
        self.fail(SMTPError(f"connection closed by the server{why}"))

    def write(self, data: bytes, replies: int) -> list[asyncio.Future[Reply]]:
        """Queue ``data`` (``replies`` commands); the futures of their replies, in order."""
        if self.lost is not None:
            raise self.lost
        if not self.out:
            self.loop.call_soon(self.loop.call_soon, self._flush)
        self.out.append(data)
        futures = [self.loop.create_future() for _ in range(replies)]
        self.pending.extend(futures)
        return futures

    def expect(self) -> asyncio.Future[Reply]:
        """The future of a reply that comes unasked (the greeting)."""
        future: asyncio.Future[Reply] = self.loop.create_future()
        self.pending.append(future)
        return future

    def _flush(self) -> None:
        data, self.out = b"".join(self.out), []
        if self.transport is not None and self.lost is None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        start = 0
        while self.lost is None and (end := buffer.find(b"\n", start)) >= 0:
            self._line(bytes(buffer[start:end]).rstrip(b"\r"))
            start = end + 1
        if start:
            del buffer[:start]
        if len(buffer) > MAX_LINE:
            self.fail(SMTPError("reply line too long"))

    def _line(self, line: bytes) -> None:
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
            self.fail(SMTPError(f"malformed reply {line[:80]!r}"))
            return
        self.lines.append(line[4:])
        if line[3:4] == b"-":
            return
        text = b"\n".join(self.lines).decode("utf-8", "replace")
        self.lines = []
        if not self.pending:
            # A reply to nothing (often "421 idle timeout" before a close) would be taken
            # for the answer to our next command: this connection can no longer be trusted.
            self.fail(SMTPError(f"unexpected reply {int(line[:3])} {text}"))
            return
        future = self.pending.popleft()
        if not future.done():  # done: its waiter was cancelled
            future.set_result(Reply(int(line[:3]), text))

    def fail(self, error: SMTPError) -> None:
        """End the session: every reply still owed fails with ``error``."""
        if self.lost is None:
            self.lost = error
        if self.transport is not None:
            self.transport.abort()
        pending, self.pending = self.pending, deque()
        for future in pending:
            if not future.done():
                future.set_exception(self.lost)
                future.exception()  # nobody may await it (after a 421): no "never retrieved"

    async def reply(self, future: asyncio.Future[Reply], what: str) -> Reply:
        """``future``'s reply, failing the session if it takes over ``timeout`` seconds."""
        if future.done():
            return future.result()
        timer = self.loop.call_later(self.timeout, self._expire, future, what, math.inf)
        try:
            return await future
        finally:
            timer.cancel()

    def _expire(self, future: asyncio.Future[Reply], what: str, buffered: float) -> None:
        if future.done():
            return
        size = self.transport.get_write_buffer_size() if self.transport else 0
        if 0 < size < buffered:
            # Still sending a big body, and progressing: the wait starts again.
            self.loop.call_later(self.timeout, self._expire, future, what, size)
            return
        future.set_exception(TimeoutError(f"no reply to {what} in {self.timeout:g}s"))
        future.exception()
        self.fail(SMTPError(f"timed out waiting for {what}"))


class SMTPConnection:
    """An open, greeted (and when configured, encrypted and logged-in) SMTP session."""

    def __init__(self, reader: _ReplyReader, host: str) -> None:
        self._reader = reader
        self.host = host
        #: EHLO keywords (upper case) and their parameters; empty after HELO.
        self.extensions: dict[str, str] = {}

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        tls: Literal["none", "starttls", "implicit"] = "none",
        context: ssl.SSLContext | None = None,
        local_hostname: str = "localhost",
        reply_timeout: float = 30.0,
        username: str | None = None,
        password: str | None = None,
    ) -> SMTPConnection:
        """Connect, read the greeting, EHLO, STARTTLS and AUTH as configured.

        ``reply_timeout`` bounds each step (connecting, the TLS handshake, every reply), as
        a server that stops answering must not hold a worker forever.
        """
        loop = asyncio.get_running_loop()
        reader = _ReplyReader(loop, reply_timeout)
        greeting = reader.expect()
        if tls != "none" and context is None:
            context = ssl.create_default_context()
        async with asyncio.timeout(reply_timeout):
            await loop.create_connection(
                lambda: reader,
                host,
                port,
                ssl=context if tls == "implicit" else None,
                server_hostname=host if tls == "implicit" else None,
            )
        conn = cls(reader, host)
        try:
            reply = await reader.reply(greeting, "greeting")
            if reply.code != 220:
                raise ReplyError("greeting", reply.code, reply.message)
            await conn.ehlo(local_hostname)
            if tls == "starttls":
                assert context is not None
                await conn._starttls(context, local_hostname)
            if username is not None:
                await conn._login(username, password or "")
        except BaseException:
            conn.close()
            raise
        return conn

    @property
    def is_connected(self) -> bool:
        return self._reader.transport is not None and self._reader.lost is None

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    @property
    def chunking(self) -> bool:
        """RFC 3030 BDAT with PIPELINING: a whole transaction is one write, no waiting."""
        return "CHUNKING" in self.extensions and self.pipelining

    async def ehlo(self, local_hostname: str) -> None:
        """EHLO, or HELO when the server does not understand EHLO; records the extensions."""
        reply = await self.command(b"EHLO %s\r\n" % local_hostname.encode("idna"))
        if reply.code == 250:
            self.extensions = _extensions(reply.message)
            return
        if not 500 <= reply.code < 600:
            raise ReplyError("EHLO", reply.code, reply.message)
        self.extensions = {}
        await self._expect(b"HELO %s\r\n" % local_hostname.encode("idna"), 250, "HELO")

    async def send(self, mail_from: str, rcpt: str, data: bytes) -> Result:
        """One whole transaction: ``start`` then ``finish``."""
        started = await self.start(mail_from, rcpt, data)
        return started if isinstance(started, Result) else await self.finish(started)

    async def start(self, mail_from: str, rcpt: str, data: bytes) -> Result | InFlight:
        """The envelope, then the body if the envelope was accepted.

        Returns a refusal before the body (the envelope may still be open: the caller says
        RSET), or the transaction in flight, whose result ``finish`` waits for. With
        PIPELINING the next transaction may start on this connection meanwhile: replies are
        handed out in order. A broken link raises ``TransactionLost``.
        """
        if self.chunking:
            return self._whole_transaction(mail_from, rcpt, data)
        envelope = (
            b"MAIL FROM:" + mailbox(mail_from) + b"\r\n",
            b"RCPT TO:" + mailbox(rcpt) + b"\r\n",
            b"DATA\r\n",
        )
        body = message_body(data)
        try:
            if self.pipelining:
                refused = await self._envelope_pipelined(envelope)
            else:
                refused = await self._envelope_in_turn(envelope)
            if refused is not None:
                return refused
            (end,) = self._reader.write(body, 1)
        except TransactionLost:
            raise
        except (OSError, TimeoutError, SMTPError) as exc:
            raise self._lost(exc, before_data=True) from None
        return InFlight(end)

    def _whole_transaction(self, mail_from: str, rcpt: str, data: bytes) -> InFlight:
        # MAIL, RCPT and BDAT ... LAST with the message in one write: nothing to wait for
        # before the next transaction, so messages queued on a connection share writes.
        body = crlf_lines(data)
        line = b"MAIL FROM:%s\r\nRCPT TO:%s\r\nBDAT %d LAST\r\n" % (
            mailbox(mail_from),
            mailbox(rcpt),
            len(body),
        )
        try:
            mail, to, end = self._reader.write(line + body, 3)
        except (OSError, SMTPError) as exc:
            raise self._lost(exc, before_data=True) from None
        return InFlight(end, (mail, to))

    async def finish(self, in_flight: InFlight) -> Result:
        """The reply to the end of data (or, with BDAT, the envelope's first refusal);
        ``TransactionLost`` if it never comes."""
        refused: Result | None = None
        if in_flight.envelope is not None:
            for stage, future in zip((Stage.MAIL, Stage.RCPT), in_flight.envelope, strict=True):
                try:
                    reply = await self._reader.reply(future, stage.value)
                except (OSError, TimeoutError, SMTPError) as exc:
                    # No reply to the envelope: the server cannot have taken the message.
                    raise self._lost(exc, before_data=True) from None
                result = self._checked(stage, reply)
                if reply.code // 100 != 2 and refused is None:
                    refused = result
        try:
            reply = await self._reader.reply(in_flight.end, "end of data")
        except (OSError, TimeoutError, SMTPError) as exc:
            raise self._lost(exc, before_data=refused is not None) from None
        # After a refused envelope the BDAT's reply only says "no valid recipients".
        return refused or self._checked(Stage.END, reply)

    async def _envelope_pipelined(self, envelope: tuple[bytes, bytes, bytes]) -> Result | None:
        futures = self._reader.write(b"".join(envelope), 3)
        refused: Result | None = None
        data_accepted = False
        for stage, future in zip((Stage.MAIL, Stage.RCPT, Stage.DATA), futures, strict=True):
            # A 421 ends the session: the replies after it never come, so stop reading.
            result = self._checked(stage, await self._reader.reply(future, stage.value))
            if stage is Stage.DATA:
                data_accepted = result.reply.code == 354
            elif result.reply.code // 100 != 2 and refused is None:
                refused = result
        if refused is None:
            return None if data_accepted else result
        if data_accepted:
            # RFC 2920 3.1: DATA accepted although an earlier command failed: send the
            # empty message, whose reply means nothing since no recipient was accepted.
            await self.command(b".\r\n", "empty data")
        return refused

    async def _envelope_in_turn(self, envelope: tuple[bytes, bytes, bytes]) -> Result | None:
        for stage, line in zip((Stage.MAIL, Stage.RCPT, Stage.DATA), envelope, strict=True):
            result = self._checked(stage, await self.command(line, stage.value))
            wanted = 354 if stage is Stage.DATA else 250
            if result.reply.code // 100 != wanted // 100:
                return result
        return None

    def _checked(self, stage: Stage, reply: Reply) -> Result:
        if reply.code == 421:
            # "Service not available, closing transmission channel": the server is leaving.
            self.close()
            raise TransactionLost(str(reply), before_data=stage is not Stage.END)
        return Result(stage, reply)

    def _lost(self, exc: BaseException, before_data: bool) -> TransactionLost:
        self.close()
        return TransactionLost(f"connection lost: {_describe(exc)}", before_data)

    async def noop(self) -> None:
        await self._expect(b"NOOP\r\n", 250, "NOOP")

    async def rset(self) -> None:
        await self._expect(b"RSET\r\n", 250, "RSET")

    async def quit(self) -> None:
        """Say QUIT and close, whatever the answer."""
        try:
            if self.is_connected:
                await self.command(b"QUIT\r\n")
        finally:
            self.close()

    def close(self) -> None:
        self._reader.fail(SMTPError("connection closed"))

    async def command(self, line: bytes, what: str | None = None) -> Reply:
        """Write one command line and return its reply."""
        (future,) = self._reader.write(line, 1)
        return await self._reader.reply(future, what or line[:4].decode("ascii", "replace"))

    async def _expect(self, line: bytes, code: int, what: str) -> Reply:
        """The reply to ``line``, which must be ``code``; ``what`` names it in errors."""
        reply = await self.command(line, what)
        if reply.code != code:
            raise ReplyError(what, reply.code, reply.message)
        return reply

    async def _starttls(self, context: ssl.SSLContext, local_hostname: str) -> None:
        if "STARTTLS" not in self.extensions:
            raise SMTPError("the server does not offer STARTTLS")
        await self._expect(b"STARTTLS\r\n", 220, "STARTTLS")
        reader = self._reader
        transport = reader.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(reader.timeout):
            tls_transport = await loop.start_tls(
                transport, reader, context, server_hostname=self.host
            )
        if tls_transport is None:  # pragma: no cover - only when the loop closes meanwhile
            raise SMTPError("connection closed during the TLS handshake")
        reader.transport = tls_transport
        # RFC 3207: forget everything learnt before TLS, and ask again.
        await self.ehlo(local_hostname)

    async def _login(self, username: str, password: str) -> None:
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in mechanisms:
            token = _b64(b"\0" + username.encode() + b"\0" + password.encode())
            await self._expect(b"AUTH PLAIN " + token + b"\r\n", 235, "AUTH PLAIN")
        elif "LOGIN" in mechanisms:
            # The credentials' own lines are named for what they are, never echoed.
            await self._expect(b"AUTH LOGIN\r\n", 334, "AUTH LOGIN")
            await self._expect(_b64(username.encode()) + b"\r\n", 334, "AUTH LOGIN username")
            await self._expect(_b64(password.encode()) + b"\r\n", 235, "AUTH LOGIN password")
        else:
            raise SMTPError("the server offers neither AUTH PLAIN nor AUTH LOGIN")


def _extensions(ehlo_reply: str) -> dict[str, str]:
    extensions: dict[str, str] = {}
    for line in ehlo_reply.split("\n")[1:]:  # the first line is the server's name
        keyword, _, params = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword.startswith("AUTH="):  # the pre-RFC 4954 form some servers still send
            keyword, params = "AUTH", f"{keyword[5:]} {params}"
        if keyword:
            extensions[keyword] = f"{extensions.get(keyword, '')} {params}".strip()
    return extensions


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
