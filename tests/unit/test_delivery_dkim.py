"""DKIM signatures checked by dkimpy, the reference verifier (RFC 6376, RFC 8463)."""

from __future__ import annotations

import re

import dkim as dkimpy
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from surge.delivery import dkim
from surge.delivery.mime import Composer

KEYS = {alg: dkim.generate_key(alg) for alg in dkim.ALGORITHMS}


def compose(
    subject: str = "Giving day is here", text: str = "Hello Ada,\n\nGive today.\n"
) -> bytes:
    composer = Composer("news@example.org", "Example", headers={"Reply-To": "help@example.org"})
    return composer.compose(
        "ada@example.com",
        subject,
        text=text,
        html="<p>Hello Ada, <a href='https://example.org/g'>give</a></p>",
        to_name="Ada Lovelace",
        message_id="<m1.c1@example.org>",
        unsubscribe_url="https://example.org/u/token",
    )


def verify(message: bytes, index: int = 0, records: dict[str, str] | None = None) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes:
        selector = name.decode().split(".", 1)[0]
        return (records or {})[selector].encode()

    try:
        ok: bool = dkimpy.DKIM(message).verify(idx=index, dnsfunc=dns)
    except dkimpy.ValidationError:  # e.g. "body hash mismatch"
        return False
    return ok


def signer(alg: dkim.Algorithm, selector: str = "s1") -> dkim.Signer:
    return dkim.Signer("example.org", selector, KEYS[alg])


@pytest.mark.parametrize("alg", dkim.ALGORITHMS)
def test_a_signed_message_verifies(alg: dkim.Algorithm) -> None:
    signed = signer(alg).sign(compose())
    assert verify(signed, records={"s1": dkim.dns_value(KEYS[alg])})
    signature = signed[: signed.index(b"\r\nFrom:")]
    assert all(len(line) <= 78 for line in signature.split(b"\r\n"))


def test_rsa_and_ed25519_signatures_side_by_side_both_verify() -> None:
    rsa, ed = signer("rsa-sha256", "r1"), signer("ed25519-sha256", "e1")
    signed = dkim.sign_all([rsa, ed], compose())
    records = {
        "r1": dkim.dns_value(KEYS["rsa-sha256"]),
        "e1": dkim.dns_value(KEYS["ed25519-sha256"]),
    }
    assert verify(signed, 0, records) and verify(signed, 1, records)


def test_the_headers_a_forger_would_change_are_signed_and_over_signed() -> None:
    signed = signer("ed25519-sha256").sign(compose())
    tags = signed.split(b"\r\n\r\n")[0].replace(b"\r\n ", b" ").decode()
    h = re.search(r"h=([^;]+);", tags)
    assert h is not None
    names = [n.strip() for n in h[1].split(":")]
    for name in ("from", "subject", "to", "date", "message-id", "list-unsubscribe"):
        assert names.count(name) == 2, name  # one more than present: none can be added
    assert "list-unsubscribe-post" in names


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Subject: Giving day is here", b"Subject: Giving day is over"),
        (b"Give today.", b"Give never."),
        (b"From: Example", b"From: Mallory <m@evil.example>\r\nFrom: Example"),
        (b"List-Unsubscribe: <https://example.org", b"List-Unsubscribe: <https://evil.example"),
    ],
)
def test_a_changed_or_added_header_or_body_fails_verification(old: bytes, new: bytes) -> None:
    record = {"s1": dkim.dns_value(KEYS["ed25519-sha256"])}
    signed = signer("ed25519-sha256").sign(compose())
    assert old in signed
    assert not verify(signed.replace(old, new, 1), records=record)


def test_whitespace_changes_by_relays_do_not_break_it() -> None:
    record = {"s1": dkim.dns_value(KEYS["rsa-sha256"])}
    signed = signer("rsa-sha256").sign(compose())
    relayed = signed.replace(b"Subject: Giving", b"Subject:   Giving").replace(
        b"Give today.", b"Give  today.   "
    )
    relayed += b"\r\n\r\n"  # trailing empty lines added
    assert verify(relayed, records=record)


@settings(max_examples=60, deadline=None)
@given(
    subject=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300),
    text=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=2000),
)
@example(subject="\x0c", text="")  # a form feed once went out raw and broke verification
def test_any_subject_and_body_sign_and_verify(subject: str, text: str) -> None:
    record = {"s1": dkim.dns_value(KEYS["ed25519-sha256"])}
    assert verify(signer("ed25519-sha256").sign(compose(subject or "x", text)), records=record)


def test_the_dns_record_is_split_into_strings_of_at_most_255_characters() -> None:
    value = dkim.dns_value(KEYS["rsa-sha256"])
    record = dkim.dns_record("example.org", "s1", value)
    assert record.startswith("s1._domainkey.example.org. IN TXT (")
    strings = re.findall(r'"([^"]*)"', record)
    assert "".join(strings) == value and all(len(s) <= 255 for s in strings)
    assert value.startswith("v=DKIM1; k=rsa; p=")
    assert dkim.dns_value(KEYS["ed25519-sha256"]).startswith("v=DKIM1; k=ed25519; p=")


def test_keys_survive_their_pem_form() -> None:
    for alg, key in KEYS.items():
        again = dkim.load_private_key(dkim.private_pem(key))
        assert dkim.dns_value(again) == dkim.dns_value(key), alg


def test_a_message_without_from_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="From"):
        signer("ed25519-sha256").sign(b"Subject: x\r\n\r\nbody\r\n")


@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        (b"", b""),
        (b"\r\n\r\n", b""),
        (b"a  b \t\r\nc\r\n\r\n", b"a b\r\nc\r\n"),
        (b"no final line end", b"no final line end\r\n"),
    ],
)
def test_relaxed_body_canonicalisation(body: bytes, canonical: bytes) -> None:
    assert dkim.relaxed_body(body) == canonical
