"""The development SMTP sink: a real SMTP server on loopback that keeps what it receives.

For local development and benchmarks only; it delivers nothing anywhere. Each message is
appended to ``<dir>/sink.mbox`` and its Message-ID to ``<dir>/message-ids.log``, so a
benchmark can count what arrived, and how many times, by Message-ID.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

log = logging.getLogger(__name__)

# The Message-ID header in the header block (before the first empty line). A regex, not
# the email package: parsing every header of every message was a third of the sink's time.
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)


def _message_id(data: bytes) -> str:
    head = data.split(b"\r\n\r\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    return match[1].decode("ascii", "replace").strip() if match else ""


class MailboxHandler:
    """aiosmtpd handler that appends each message to an mbox file."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.mbox = (directory / "sink.mbox").open("ab", buffering=1 << 20)
        self.ids = (directory / "message-ids.log").open("a", buffering=1 << 16)
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data: bytes = envelope.original_content or b""
        message_id = _message_id(data)
        self.mbox.write(b"From surge-sink\n" + data.replace(b"\nFrom ", b"\n>From ") + b"\n")
        for _ in envelope.rcpt_tos:
            self.ids.write(message_id.strip() + "\n")
        # Written through before the 250: what the sink acknowledged, a reader can count.
        self.flush()
        self.received += 1
        return "250 Message accepted for delivery"

    def flush(self) -> None:
        self.mbox.flush()
        self.ids.flush()

    def close(self) -> None:
        self.mbox.close()
        self.ids.close()


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


async def serve(host: str, port: int, directory: Path, ready: asyncio.Event | None = None) -> None:
    """Run the sink until SIGTERM or SIGINT."""
    handler = MailboxHandler(directory)
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(handler, hostname="surge-sink", data_size_limit=50 * 1024 * 1024)

    server = await loop.create_server(factory, host, port)
    log.info("smtp sink listening", extra={"host": host, "port": port, "dir": str(directory)})
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        handler.flush()
        handler.close()
