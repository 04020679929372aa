"""The development SMTP sink is a real SMTP server: the stdlib client talks to it."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from surge.db.embedded import free_port
from surge.delivery.sink import count_received
from tests.conftest import Process, surge_env


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    data_dir = tmp_path_factory.mktemp("sink")
    port = free_port()
    proc = Process(
        ["smtp-sink", "--port", str(port)],
        surge_env("postgresql://unused", SURGE_DATA_DIR=str(data_dir)),
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, proc.stop()
            time.sleep(0.05)
    yield port, data_dir / "mail"
    proc.stop()


def test_messages_are_stored_and_counted_by_message_id(sink: tuple[int, Path]) -> None:
    port, mail = sink
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        code, features = smtp.ehlo()
        assert code == 250 and b"PIPELINING" in features
        for i in range(3):
            smtp.sendmail(
                "a@example.org",
                ["b@example.org", "c@example.org"],
                f"Message-ID: <id{i}@x>\r\nSubject: s\r\n\r\n.leading dot\r\nbody".encode(),
            )
    counts = count_received(mail)
    assert counts["<id0@x>"] == 2  # one line per recipient
    assert {k for k in counts if k.startswith("<id")} == {"<id0@x>", "<id1@x>", "<id2@x>"}
    mbox = (mail / "sink.mbox").read_bytes()
    assert b"\r\n.leading dot\r\n" in mbox  # dot-stuffing undone


def test_protocol_errors_get_smtp_replies(sink: tuple[int, Path]) -> None:
    port, _ = sink
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.docmd("RCPT TO:<x@y>")[0] == 503  # MAIL first
        assert smtp.docmd("DATA")[0] == 503
        assert smtp.docmd("BOGUS")[0] == 502
        assert smtp.docmd("NOOP")[0] == 250
        assert smtp.docmd("MAIL FROM:<a@b>")[0] == 250
        assert smtp.docmd("RSET")[0] == 250


def test_bdat_chunks_make_one_message(sink: tuple[int, Path]) -> None:
    port, mail = sink
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        code, features = smtp.ehlo()
        assert b"CHUNKING" in features
        assert smtp.docmd("MAIL FROM:<a@b>")[0] == 250
        assert smtp.docmd("RCPT TO:<c@d>")[0] == 250
        first = b"Message-ID: <bdat@x>\r\n\r\n.no stuffing"
        smtp.send(b"BDAT %d\r\n" % len(first) + first)
        assert smtp.getreply()[0] == 250
        last = b"\r\nend\r\n"
        smtp.send(b"BDAT %d LAST\r\n" % len(last) + last)
        assert smtp.getreply() == (250, b"2.0.0 queued")
        # A chunk with no recipients is read whole, then refused.
        smtp.send(b"BDAT 5 LAST\r\nNOOP\r")
        assert smtp.getreply()[0] == 503
        assert smtp.docmd("NOOP")[0] == 250
    assert count_received(mail)["<bdat@x>"] == 1
    assert b"\r\n.no stuffing\r\nend\r\n" in (mail / "sink.mbox").read_bytes()
