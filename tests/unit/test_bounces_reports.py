"""VERP addresses and the reading of DSNs (RFC 3464) and ARF complaints (RFC 5965)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from surge.bounces import reports
from surge.bounces.verp import Verp

VERP = Verp("key", "Bounces.Example.org")


def dsn(
    action: str, status: str, diagnostic: str, original_id: str = "<m7.c9@charity.example>"
) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.com\r\n"
        "To: bounces+x@bounces.example.org\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n\r\n"
        "Final-Recipient: rfc822; ada@example.com\r\n"
        f"Action: {action}\r\nStatus: {status}\r\nDiagnostic-Code: {diagnostic}\r\n"
        "\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: appeals@charity.example\r\nMessage-ID: {original_id}\r\n"
        "\r\n--B--\r\n"
    ).encode()


def arf(feedback: str = "abuse") -> bytes:
    return (
        "From: fbl@isp.example\r\nTo: fbl@bounces.example.org\r\nSubject: complaint\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n'
        "\r\n--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback}\r\nUser-Agent: isp-fbl/1.0\r\nVersion: 1\r\n"
        "\r\n--F\r\nContent-Type: message/rfc822\r\n\r\n"
        "From: appeals@charity.example\r\nMessage-ID: <m12.c34@charity.example>\r\n"
        "Subject: Give today\r\n\r\nbody\r\n"
        "--F--\r\n"
    ).encode()


def postfix_dsn() -> bytes:
    """What Postfix 3.7 sends when local(8) finds no such user (tests/integration/
    test_postfix_bounces.py runs the real thing): per-message X-Postfix fields, an
    ``X-Postfix`` diagnostic type, and the whole original message quoted back."""
    return (
        b"Received: by mta.example.test (Postfix)\r\n\tid CD6872100F4; Tue,  1 Dec 2026 05:28:25"
        b" +0000 (UTC)\r\n"
        b"From: Mail Delivery System <MAILER-DAEMON@mta.example.test>\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n"
        b"To: bounces+abc@bounces.example.org\r\n"
        b"Auto-Submitted: auto-replied\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status;\r\n"
        b'\tboundary="C8EBB2100F0.1796102905/mta.example.test"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"Message-Id: <20261201052825.CD6872100F4@mta.example.test>\r\n"
        b"\r\nThis is a MIME-encapsulated message.\r\n"
        b"\r\n--C8EBB2100F0.1796102905/mta.example.test\r\n"
        b"Content-Description: Notification\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\nThis is the mail system at host mta.example.test.\r\n"
        b'\r\n<gone0@example.test>: unknown user: "gone0"\r\n'
        b"\r\n--C8EBB2100F0.1796102905/mta.example.test\r\n"
        b"Content-Description: Delivery report\r\n"
        b"Content-Type: message/delivery-status\r\n"
        b"\r\nReporting-MTA: dns; mta.example.test\r\n"
        b"X-Postfix-Queue-ID: C8EBB2100F0\r\n"
        b"X-Postfix-Sender: rfc822; bounces+abc@bounces.example.org\r\n"
        b"Arrival-Date: Tue,  1 Dec 2026 05:28:25 +0000 (UTC)\r\n"
        b"\r\nFinal-Recipient: rfc822; gone0@example.test\r\n"
        b"Original-Recipient: rfc822;gone0@example.test\r\n"
        b"Action: failed\r\n"
        b"Status: 5.1.1\r\n"
        b'Diagnostic-Code: X-Postfix; unknown user: "gone0"\r\n'
        b"\r\n--C8EBB2100F0.1796102905/mta.example.test\r\n"
        b"Content-Description: Undelivered Message\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\nReturn-Path: <bounces+abc@bounces.example.org>\r\n"
        b"From: appeals@charity.example\r\n"
        b"To: gone0@example.test\r\n"
        b"Message-ID: <m7.c9@charity.example>\r\n"
        b"Subject: Hello\r\n"
        b"\r\nbody\r\n"
        b"\r\n--C8EBB2100F0.1796102905/mta.example.test--\r\n"
    )


def test_a_verp_address_round_trips_whatever_case_it_comes_back_in() -> None:
    address = VERP.address(2**63 - 1, 42)
    local = address.split("@")[0]
    assert len(local) <= 64 and local == local.lower()
    assert VERP.parse(address) == (2**63 - 1, 42)
    assert VERP.parse(address.upper()) == (2**63 - 1, 42)
    assert VERP.parse(f"<{address}>") == (2**63 - 1, 42)


@pytest.mark.parametrize(
    "address",
    ["bounces@bounces.example.org", "fbl@bounces.example.org", "bounces+abc@bounces.example.org"],
)
def test_other_addresses_are_not_verp(address: str) -> None:
    assert VERP.parse(address) is None


def test_a_tampered_or_foreign_token_is_refused() -> None:
    address = VERP.address(7, 9)
    local, domain = address.split("@")
    flipped = local[:-1] + ("a" if local[-1] != "a" else "b")
    assert VERP.parse(f"{flipped}@{domain}") is None
    assert Verp("another key", "bounces.example.org").parse(address) is None
    assert VERP.parse(address.replace("bounces.example.org", "elsewhere.example")) is None


@given(st.text(max_size=200))
def test_any_address_parses_to_a_delivery_or_none(address: str) -> None:
    assert VERP.parse(address) is None or isinstance(VERP.parse(address), tuple)


def test_a_dsn_for_an_unknown_user_is_a_hard_bounce_of_the_quoted_delivery() -> None:
    report = reports.parse(
        dsn("failed", "5.1.1", "smtp; 550 5.1.1 <ada@example.com>: user unknown")
    )
    assert report is not None
    assert (report.kind, report.status, report.delivery) == ("hard_bounce", "5.1.1", (7, 9))
    assert "user unknown" in report.detail


def test_postfix_own_dsn_for_an_unknown_local_user_is_a_hard_bounce() -> None:
    report = reports.parse(postfix_dsn())
    assert report is not None
    assert (report.kind, report.status, report.delivery) == ("hard_bounce", "5.1.1", (7, 9))
    assert report.detail == 'X-Postfix; unknown user: "gone0"'


def test_a_permanent_failure_not_about_the_address_is_a_soft_bounce() -> None:
    report = reports.parse(dsn("failed", "5.7.1", "smtp; 554 5.7.1 message rejected as spam"))
    assert report is not None and report.kind == "soft_bounce"


def test_a_delay_notice_is_only_news() -> None:
    report = reports.parse(dsn("delayed", "4.4.1", "smtp; 451 4.4.1 connection timed out"))
    assert report is not None and report.kind == "delayed"


def test_an_arf_report_is_a_complaint_about_the_quoted_message() -> None:
    report = reports.parse(arf())
    assert report is not None
    assert (report.kind, report.status, report.delivery) == ("complaint", "abuse", (12, 34))


def test_a_foreign_message_id_attributes_nothing() -> None:
    report = reports.parse(dsn("failed", "5.1.1", "smtp; 550 5.1.1", "<abc@elsewhere.example>"))
    assert report is not None and report.delivery is None


@pytest.mark.parametrize(
    "data",
    [
        b"From: a@b.example\r\nSubject: I am on holiday\r\n\r\nBack on Monday.\r\n",
        b"",
        b"\x00\xff garbage",
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n--B--',
    ],
)
def test_anything_else_is_not_a_report(data: bytes) -> None:
    assert reports.parse(data) is None


@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_raising(data: bytes) -> None:
    reports.parse(data)


def test_unsubscribe_addresses_are_their_own_kind() -> None:
    from surge.bounces.verp import UNSUBSCRIBE

    unsubscribe = VERP.address(7, 9, UNSUBSCRIBE)
    assert unsubscribe.startswith("unsubscribe+")
    assert VERP.parse(unsubscribe, UNSUBSCRIBE) == (7, 9)
    assert VERP.parse(unsubscribe) is None
    # The Return-Path a recipient sees cannot be turned into an unsubscribe address.
    bounce_token = VERP.address(7, 9).split("+", 1)[1]
    assert VERP.parse(f"unsubscribe+{bounce_token}", UNSUBSCRIBE) is None
