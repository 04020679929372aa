"""What the SMTP client puts on the wire: DATA content, paths, EHLO keywords."""

from __future__ import annotations

import pytest

from surge.delivery.mime import Composer
from surge.delivery.smtp_client import _extensions, mailbox, message_body


def unstuff(body: bytes) -> bytes:
    """What a server keeps of DATA content (RFC 5321 4.5.2), to check the round trip."""
    assert body.endswith(b"\r\n.\r\n") or body == b".\r\n"
    lines = body[:-3].split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def test_crlf_message_is_dot_stuffed_and_terminated() -> None:
    body = message_body(b"Subject: x\r\n\r\n.\r\n..two\r\nend\r\n")
    assert body == b"Subject: x\r\n\r\n..\r\n...two\r\nend\r\n.\r\n"


def test_dot_on_the_first_line_is_stuffed_too() -> None:
    assert message_body(b".hidden\r\n") == b"..hidden\r\n.\r\n"


def test_bare_lf_and_cr_line_ends_become_crlf_before_stuffing() -> None:
    assert message_body(b"a\n.b\rc\r\n.") == b"a\r\n..b\r\nc\r\n..\r\n.\r\n"


def test_missing_final_line_end_is_added_and_empty_message_is_just_the_dot() -> None:
    assert message_body(b"no newline") == b"no newline\r\n.\r\n"
    assert message_body(b"") == b".\r\n"


def test_composed_message_survives_stuffing_unchanged() -> None:
    data = Composer("news@example.org", "News").compose(
        "bob@example.com", "Hi", text=".\n..x\nZoë\n", message_id="<m1@example.org>"
    )
    assert unstuff(message_body(data)) == data


@pytest.mark.parametrize("address", ["a@b.org\r\nRCPT TO:<x@y>", "zoë@example.org", "a\n@b"])
def test_addresses_that_could_inject_commands_or_need_smtputf8_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        mailbox(address)


def test_addresses_are_wrapped_in_angle_brackets_once() -> None:
    assert mailbox("a@b.org") == b"<a@b.org>"
    assert mailbox("<a@b.org>") == b"<a@b.org>"
    assert mailbox("") == b"<>"  # the null reverse-path of bounces


def test_ehlo_keywords_are_upper_cased_with_their_parameters() -> None:
    reply = "mx.example.org greets you\nPIPELINING\nsize 1000\nAUTH LOGIN PLAIN\nAUTH=CRAM-MD5"
    assert _extensions(reply) == {
        "PIPELINING": "",
        "SIZE": "1000",
        "AUTH": "LOGIN PLAIN CRAM-MD5",
    }
