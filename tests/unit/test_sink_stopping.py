"""The development sink, stopping: a message that ends after its mailbox closed is refused
with 421 (the sender keeps it and retries), never half-written or lost with a traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

from surge.delivery.sink import Mailbox, SinkProtocol, count_received


class Wire:
    """What the protocol writes, as a transport would carry it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass


def test_a_message_ending_after_the_mailbox_closed_gets_421(tmp_path: Path) -> None:
    mailbox = Mailbox(tmp_path, keep_bodies=False)
    session, wire = SinkProtocol(mailbox), Wire()
    session.connection_made(cast(asyncio.Transport, wire))
    session.data_received(b"EHLO client\r\nMAIL FROM:<a@example.org>\r\n")
    session.data_received(b"RCPT TO:<b@example.org>\r\nDATA\r\n")
    session.data_received(b"Message-ID: <one@example.org>\r\n\r\nkept\r\n.\r\n")
    assert wire.written[-1].startswith(b"250 2.0.0 queued")

    session.data_received(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    mailbox.close()  # SIGTERM: the sink stops while this message is on its way
    session.data_received(b"Message-ID: <two@example.org>\r\n\r\nlate\r\n.\r\n")

    assert wire.written[-1].startswith(b"421 ")
    assert count_received(tmp_path) == {"<one@example.org>": 1}
