"""The MIME builder: what it writes must read back, with the stdlib parser, as it was given."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr

import pytest

from surge.bench.mime import mime_bench
from surge.delivery.mime import Composer, html_to_text
from surge.errors import Invalid

TEXT = "Hello Zoë,\n\nThanks — your gift doubles today.\n"
HTML = "<p>Hello <b>Zoë</b>,</p><p>Thanks — your gift <a href='https://x.org/g'>doubles</a></p>"


def parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects
    return msg


def composer(**kwargs: object) -> Composer:
    defaults: dict[str, object] = {
        "from_email": "news@example.org",
        "from_name": "Example School",
        "unsubscribe_mailto": "unsubscribe@example.org",
    }
    defaults.update(kwargs)
    return Composer(**defaults)  # type: ignore[arg-type]


def body(msg: EmailMessage, kind: str) -> str:
    part = msg.get_body((kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    # Text travels with CRLF line breaks, and the parser hands them back as they came.
    return content.replace("\r\n", "\n")


def test_multipart_message_round_trips_headers_and_both_bodies() -> None:
    data = composer(headers={"X-Surge-Message": "42"}).compose(
        "bob@example.com",
        "Giving day is here",
        text=TEXT,
        html=HTML,
        to_name="Bob Smith",
        message_id="d1.m42@example.org",
        unsubscribe_url="https://example.org/u/tok123",
    )
    msg = parse(data)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["From"] == "Example School <news@example.org>"
    assert msg["To"] == "Bob Smith <bob@example.com>"
    assert msg["Subject"] == "Giving day is here"
    assert msg["Message-ID"] == "<d1.m42@example.org>"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Date"].datetime is not None
    assert msg["List-Unsubscribe"] == (
        "<https://example.org/u/tok123>, <mailto:unsubscribe@example.org>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Surge-Message"] == "42"
    assert body(msg, "plain") == TEXT
    assert body(msg, "html") == HTML + "\n"
    assert [p.get_content_charset() for p in msg.iter_parts()] == ["utf-8", "utf-8"]


def test_text_only_message_is_a_single_part() -> None:
    msg = parse(composer().compose("bob@example.com", "Hi", text="Just text\n"))
    assert msg.get_content_type() == "text/plain"
    assert not msg.is_multipart()
    assert msg.get_content() == "Just text\r\n"
    # No one-click header without a URL to POST to; the mailto alone is still offered.
    assert msg["List-Unsubscribe"] == "<mailto:unsubscribe@example.org>"
    assert msg["List-Unsubscribe-Post"] is None


def test_html_only_message_gets_a_plain_text_part_from_the_html() -> None:
    msg = parse(composer().compose("bob@example.com", "Hi", html=HTML))
    assert body(msg, "plain") == "Hello Zoë,\n\nThanks — your gift doubles (https://x.org/g)\n"


def test_a_message_without_any_body_is_invalid() -> None:
    with pytest.raises(Invalid):
        composer().compose("bob@example.com", "Hi")


@pytest.mark.parametrize(
    "subject",
    [
        "Zoë's giving day — 24 hours to double your gift",
        "募金のお願い：今日だけ寄付が二倍になります。ご協力をお願いいたします。" * 3,
        "Привет, " * 40,
        "=?utf-8?q?not_an_encoded_word?= but looks like one",
    ],
)
def test_non_ascii_and_long_subjects_read_back_exactly(subject: str) -> None:
    data = composer().compose("bob@example.com", subject, text="x")
    assert parse(data)["Subject"] == subject
    head = data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 998


def test_long_ascii_subject_is_folded_and_reads_back() -> None:
    subject = " ".join(f"word{i}" for i in range(80))
    data = composer().compose("bob@example.com", subject, text="x")
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in head) <= 78
    assert parse(data)["Subject"] == subject


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Zoë Ünïcode", "Zoë Ünïcode"),
        ('Smith, Bob "the donor"', 'Smith, Bob "the donor"'),
        ("O'Brien", "O'Brien"),
        ("山田太郎 (寄付者)", "山田太郎 (寄付者)"),
    ],
)
def test_display_names_read_back_exactly(name: str, expected: str) -> None:
    msg = parse(composer(from_name=name).compose("bob@example.com", "Hi", text="x", to_name=name))
    for field in ("From", "To"):
        assert msg[field].addresses[0].display_name == expected
    assert msg["To"].addresses[0].addr_spec == "bob@example.com"


def test_long_non_ascii_display_name_is_split_into_short_encoded_words() -> None:
    name = "名前" * 40
    data = composer().compose("bob@example.com", "Hi", text="x", to_name=name)
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in head) <= 998
    # RFC 2047 ignores the folding between encoded-words; the stdlib address parser keeps it
    # as a space (it does the same with the stdlib's own output), hence the replace.
    display_name = parse(data)["To"].addresses[0].display_name
    assert display_name.replace(" ", "") == name


def test_international_domain_is_punycoded() -> None:
    msg = parse(composer().compose("bob@bücher.example", "Hi", text="x"))
    assert parseaddr(str(msg["To"]))[1] == "bob@xn--bcher-kva.example"


def test_long_body_lines_are_wrapped_and_read_back() -> None:
    text = ("a" * 5000 + "\n") + ("é" * 3000 + "\n") + ("x " * 2000 + "\n")
    data = composer().compose("bob@example.com", "Hi", text=text, html=f"<pre>{text}</pre>")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    msg = parse(data)
    assert body(msg, "plain") == text
    assert body(msg, "html") == f"<pre>{text}</pre>"


def test_mostly_non_ascii_body_uses_base64_and_reads_back() -> None:
    text = "今日だけ寄付が二倍になります。\n" * 50
    data = composer().compose("bob@example.com", "Hi", text=text)
    assert b"Content-Transfer-Encoding: base64" in data
    assert parse(data).get_content().replace("\r\n", "\n") == text


def test_output_is_seven_bit_with_crlf_line_ends_only() -> None:
    data = composer().compose(
        "bob@example.com", "Zoë", text="line\rmac\r\nwindows\nunix", html=HTML
    )
    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert body(parse(data), "plain") == "line\nmac\nwindows\nunix\n"


def test_header_injection_in_values_is_neutralised() -> None:
    data = composer(headers={"X-Tag": "a\r\nBcc: evil@example.net"}).compose(
        "bob@example.com",
        "Hello\r\nBcc: evil@example.net",
        text="x",
        headers={"X-Other": "b\nCc: evil@example.net"},
    )
    msg = parse(data)
    assert msg["Bcc"] is None and msg["Cc"] is None
    assert msg["Subject"] == "Hello Bcc: evil@example.net"
    assert msg["X-Tag"] == "a Bcc: evil@example.net"


@pytest.mark.parametrize(
    "call",
    [
        {"to": "bob@example.com\r\nBcc: evil@example.net"},
        {"to": "not-an-address"},
        {"to": "bob@example.com", "headers": {"Bad Name": "x"}},
        {"to": "bob@example.com", "headers": {"X-A:b": "x"}},
        {"to": "bob@example.com", "headers": {"Content-Type": "text/evil"}},
        {"to": "bob@example.com", "unsubscribe_url": "https://x.org/u\r\nBcc: e@x.org"},
        {"to": "bob@example.com", "message_id": "<a\r\nBcc: e@x.org>"},
        {"to": "zoë@example.com"},
    ],
)
def test_injection_in_addresses_names_and_urls_is_rejected(call: dict[str, object]) -> None:
    with pytest.raises(Invalid):
        composer().compose(subject="Hi", text="x", **call)  # type: ignore[arg-type]


def test_generated_message_ids_are_unique_and_use_the_from_domain() -> None:
    c = composer(from_domain="mail.example.org")
    ids = {parse(c.compose("bob@example.com", "Hi", text="x"))["Message-ID"] for _ in range(50)}
    assert len(ids) == 50
    assert all(i.endswith("@mail.example.org>") for i in ids)


def test_html_to_text_keeps_structure_and_drops_scripts() -> None:
    html = """<html><head><title>T</title><style>p {color: red}</style></head><body>
      <h1>Giving&nbsp;day</h1><script>alert(1)</script>
      <p>Line one<br>line   two</p>
      <ul><li>First</li><li>Second</li></ul>
      <p><a href="https://example.org/give">Give</a> or <a href="https://e.org">https://e.org</a></p>
      <img src="x.png" alt="Logo"><table><tr><td>a</td><td>b</td></tr></table>
    </body></html>"""
    assert html_to_text(html) == (
        "Giving\xa0day\n\nLine one\nline two\n\n- First\n- Second\n\n"
        "Give (https://example.org/give) or https://e.org\n\nLogo\n\na b\n"
    )


def test_mime_bench_reports_both_rates_and_their_ratio() -> None:
    result = mime_bench(300)
    print(result)
    assert result["messages"] == 300
    assert result["surge_per_s"] > 0 and result["stdlib_per_s"] > 0
    assert result["ratio"] == pytest.approx(result["surge_per_s"] / result["stdlib_per_s"], 0.1)


def test_address_headers_encode_names_but_not_addresses() -> None:
    headers = {"Reply-To": "Zoë Ünïcode <zoe@example.org>, plain@example.org"}
    msg = parse(composer(headers=headers).compose("bob@example.com", "Hi", text="x"))
    addresses = msg["Reply-To"].addresses
    assert [(a.display_name, a.addr_spec) for a in addresses] == [
        ("Zoë Ünïcode", "zoe@example.org"),
        ("", "plain@example.org"),
    ]


def test_address_header_without_an_address_is_invalid() -> None:
    with pytest.raises(Invalid):
        composer(headers={"Reply-To": "nobody at all"})


def test_control_characters_in_headers_go_out_encoded() -> None:
    from surge.delivery.mime import format_address, header

    raw = header("Subject", "tab\tstays, form\x0cfeed and bell\x07 do not")
    assert raw.startswith(b"Subject: =?utf-8?") and b"\x0c" not in raw and b"\x07" not in raw
    assert header("Subject", "a\tb") == b"Subject: a\tb\r\n"
    assert b"\x0b" not in format_address("a@example.org", "Vertical\x0btab").encode()
