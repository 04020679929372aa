"""The development SMTP sink: a real SMTP server on loopback that keeps what it receives.

For local development and benchmarks only; it delivers nothing anywhere. Each message is
appended to ``<dir>/sink.mbox`` and its Message-ID to ``<dir>/message-ids.log`` before
the 250 reply, so a benchmark can count what arrived, and how many times, by Message-ID.

It speaks the part of RFC 5321 a submission client uses (EHLO/HELO, MAIL, RCPT, DATA with
dot-unstuffing, RSET, NOOP, VRFY, QUIT) and RFC 2920 PIPELINING, as a plain asyncio
protocol. It started on aiosmtpd, which spent ~370 µs of CPU per message here (more than
the whole dispatcher): on a 2-core machine the sink then measured itself, not Surge.
aiosmtpd remains what the tests use to build misbehaving servers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from pathlib import Path
from typing import cast

log = logging.getLogger(__name__)

MAX_MESSAGE = 50 * 1024 * 1024
MAX_LINE = 4096
# The Message-ID header in the header block: a regex, not the email package, which cost a
# third of the sink's time.
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)
_EHLO = b"".join(
    [
        b"250-surge-sink\r\n",
        b"250-PIPELINING\r\n",
        b"250-8BITMIME\r\n",
        b"250-CHUNKING\r\n",
        b"250-SIZE %d\r\n" % MAX_MESSAGE,
        b"250 ENHANCEDSTATUSCODES\r\n",
    ]
)


def _message_id(data: bytes) -> str:
    head = data.split(b"\r\n\r\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    return match[1].decode("ascii", "replace").strip() if match else ""


class Mailbox:
    """Where the sink keeps messages: an mbox file and a log of Message-IDs.

    With ``keep_bodies`` off only the Message-IDs are kept: a million-recipient benchmark
    counts deliveries and has no use for gigabytes of mbox.
    """

    def __init__(self, directory: Path, keep_bodies: bool = True) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.mbox = (directory / "sink.mbox").open("ab", buffering=1 << 20) if keep_bodies else None
        self.ids = (directory / "message-ids.log").open("ab", buffering=1 << 16)
        self.received = 0

    def store(self, data: bytes, recipients: int) -> bool:
        """Keep a message; False once the sink is stopping (the message is not kept)."""
        if self.ids.closed:
            return False
        message_id = _message_id(data).encode("ascii", "replace")
        if self.mbox is not None:
            mbox = b"From surge-sink\n" + data.replace(b"\nFrom ", b"\n>From ") + b"\n"
            self.mbox.write(mbox)
        self.ids.write((message_id + b"\n") * recipients)
        self.received += 1
        return True

    def flush(self) -> None:
        if self.mbox is not None:
            self.mbox.flush()
        self.ids.flush()

    def close(self) -> None:
        if self.mbox is not None:
            self.mbox.close()
        self.ids.close()


#: The answer to a message that ends after the sink began to stop: not kept, send it again.
_CLOSING = b"421 4.3.2 the sink is stopping; try again later\r\n"


class SinkProtocol(asyncio.Protocol):
    """One SMTP session. Replies to pipelined commands go out in one write."""

    def __init__(self, mailbox: Mailbox, chunking: bool = True) -> None:
        self.mailbox = mailbox
        self.ehlo = _EHLO if chunking else _EHLO.replace(b"250-CHUNKING\r\n", b"")
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.in_data = False
        self.sender: bytes | None = None
        self.recipients = 0
        #: RFC 3030 BDAT: bytes of the current chunk still to read, whether it is the last,
        #: and the message so far.
        self.chunk_left = -1
        self.chunk_last = False
        self.message = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.write(b"220 surge-sink ESMTP development sink: nothing is delivered\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies: list[bytes] = []
        stored = False
        while self.transport is not None:
            if self.chunk_left >= 0:
                take = min(self.chunk_left, len(self.buffer))
                self.message += self.buffer[:take]
                del self.buffer[:take]
                self.chunk_left -= take
                if self.chunk_left > 0:
                    break
                reply = self._chunk_done()
                stored = stored or reply.startswith(b"250 2.0.0 queued")
                replies.append(reply)
                continue
            if self.in_data:
                if self.buffer.startswith(b".\r\n"):  # an empty message
                    self.buffer[:0] = b"\r\n"
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_MESSAGE:
                        replies.append(b"552 5.3.4 message too big\r\n")
                        self._reset()
                        self.buffer.clear()
                    break
                body = bytes(self.buffer[: end + 2]).replace(b"\r\n..", b"\r\n.")
                if body.startswith(b".."):
                    body = body[1:]
                del self.buffer[: end + 5]
                kept = self.mailbox.store(body, self.recipients)
                stored = stored or kept
                replies.append(b"250 2.0.0 queued\r\n" if kept else _CLOSING)
                self._reset()
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                if len(self.buffer) > MAX_LINE:
                    replies.append(b"500 5.5.6 line too long\r\n")
                    self.buffer.clear()
                break
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            reply = self._command(line)
            if reply:  # BDAT answers once its chunk has arrived
                replies.append(reply)
        if stored:
            self.mailbox.flush()  # written through before the 250 goes out
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))
            if replies[-1].startswith(b"221"):
                self.transport.close()
                self.transport = None

    def _reset(self) -> None:
        self.in_data = False
        self.sender = None
        self.recipients = 0
        self.chunk_left = -1
        self.message = bytearray()

    def _bdat(self, line: bytes) -> bytes:
        parts = line.split()
        if len(parts) not in (2, 3) or not parts[1].isdigit() or parts[2:] not in ([], [b"LAST"]):
            return b"501 5.5.4 syntax: BDAT <size> [LAST]\r\n"
        # The chunk is read even when it is refused (RFC 3030 2): the reply follows it.
        self.chunk_left = int(parts[1])
        self.chunk_last = len(parts) == 3
        return b""

    def _chunk_done(self) -> bytes:
        self.chunk_left = -1
        if len(self.message) > MAX_MESSAGE:
            self._reset()
            return b"552 5.3.4 message too big\r\n"
        if not self.recipients:
            self._reset()
            return b"503 5.5.1 no valid recipients\r\n"
        if not self.chunk_last:
            return b"250 2.0.0 chunk accepted\r\n"
        stored = self.mailbox.store(bytes(self.message), self.recipients)
        self._reset()
        return b"250 2.0.0 queued\r\n" if stored else _CLOSING

    def _command(self, line: bytes) -> bytes:
        verb = line[:4].upper()
        if verb == b"EHLO":
            self._reset()
            return self.ehlo
        if verb == b"HELO":
            self._reset()
            return b"250 surge-sink\r\n"
        if verb == b"MAIL":
            if not line[5:].upper().startswith(b"FROM:"):
                return b"501 5.5.4 syntax: MAIL FROM:<address>\r\n"
            self.sender, self.recipients = line[10:].strip(), 0
            return b"250 2.1.0 OK\r\n"
        if verb == b"RCPT":
            if self.sender is None:
                return b"503 5.5.1 MAIL first\r\n"
            if not line[5:].upper().startswith(b"TO:"):
                return b"501 5.5.4 syntax: RCPT TO:<address>\r\n"
            self.recipients += 1
            return b"250 2.1.5 OK\r\n"
        if verb == b"BDAT":
            return self._bdat(line)
        if verb == b"DATA":
            if not self.recipients:
                return b"503 5.5.1 RCPT first\r\n"
            self.in_data = True
            return b"354 end data with <CR><LF>.<CR><LF>\r\n"
        return _simple(verb, self)


def _simple(verb: bytes, session: SinkProtocol) -> bytes:
    if verb == b"RSET":
        session._reset()
        return b"250 2.0.0 OK\r\n"
    if verb == b"NOOP":
        return b"250 2.0.0 OK\r\n"
    if verb == b"VRFY":
        return b"252 2.0.0 cannot verify\r\n"
    if verb == b"QUIT":
        return b"221 2.0.0 bye\r\n"
    return b"502 5.5.2 command not implemented\r\n"


def count_received(directory: Path) -> dict[str, int]:
    """Times each Message-ID arrived at the sink in ``directory``."""
    counts: dict[str, int] = {}
    path = directory / "message-ids.log"
    if path.exists():
        with path.open() as f:
            for line in f:
                key = line.strip()
                counts[key] = counts.get(key, 0) + 1
    return counts


async def until_stopped() -> None:
    """Return on SIGTERM or SIGINT: how a server command runs until it is told to stop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def serve(host: str, port: int, directory: Path, keep_bodies: bool = True) -> None:
    """Run the sink until SIGTERM or SIGINT."""
    mailbox = Mailbox(directory, keep_bodies)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(mailbox), host, port)
    log.info("smtp sink listening", extra={"host": host, "port": port, "dir": str(directory)})
    try:
        await until_stopped()
    finally:
        server.close()
        await server.wait_closed()
        mailbox.close()
