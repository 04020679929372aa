"""Building campaign messages as RFC 5322 / MIME bytes, fast.

A ``send_chunk`` job renders ~1,000 messages that differ only in recipient, subject, bodies,
Message-ID and unsubscribe link. Building a stdlib ``EmailMessage`` for each costs several
times more than the rest of the job, so a ``Composer`` is made once per chunk: it encodes
every header that is the same for all recipients (From, MIME-Version, constant extra headers,
the multipart boundary) once, and ``compose`` only joins bytes around the per-recipient parts.

Bodies are always UTF-8 in quoted-printable (mostly-ASCII text) or base64 (mostly non-ASCII
text), so every line is short and the message is 7-bit clean. That also makes a fixed
boundary safe: it starts with ``=_``, which neither encoding can ever produce.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import getaddresses

from surge.delivery.html_text import html_to_text
from surge.errors import Invalid

__all__ = ["Composer", "encode_body", "format_address", "header", "html_to_text"]

CRLF = b"\r\n"
# RFC 5322 recommends 78 characters per header line; 998 is the hard limit.
_FOLD_AT = 78
_ASCII = bytes(range(128))
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ':' (RFC 5322 3.6.8)
_ATEXT_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*")
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"@]+@[^\s<>()\[\],;:\"@]+")
_CRLF_RUN = re.compile(r"[\r\n]+")
# Controls other than tab may not stand in a header (RFC 5322 allows VCHAR and WSP): text
# holding one goes out as an encoded-word, which carries any byte.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Headers the composer writes itself; letting callers add them would give duplicates.
_RESERVED = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)
_TEXT_PLAIN = b'Content-Type: text/plain; charset="utf-8"\r\n'
_TEXT_HTML = b'Content-Type: text/html; charset="utf-8"\r\n'
_QP = b"Content-Transfer-Encoding: quoted-printable\r\n"
_B64 = b"Content-Transfer-Encoding: base64\r\n"


def encode_body(text: str) -> tuple[bytes, bytes]:
    """UTF-8 ``text`` as (Content-Transfer-Encoding header line, encoded CRLF body)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    raw = text.encode("utf-8")
    non_ascii = len(raw.translate(None, _ASCII))
    # Quoted-printable triples every non-ASCII byte; past ~1/3 of them base64 is smaller.
    if non_ascii * 3 > len(raw):
        # Text is base64-encoded in its canonical form, with CRLF line breaks (RFC 2045 6.8).
        canonical = raw.replace(b"\n", CRLF)
        return _B64, base64.encodebytes(canonical).replace(b"\n", CRLF)
    encoded = binascii.b2a_qp(raw, istext=True)
    if not encoded.endswith(b"\n"):
        encoded += b"\n"
    return _QP, encoded.replace(b"\n", CRLF)


def clean_value(value: str) -> str:
    """A header value with CR/LF runs replaced by one space, so it cannot inject headers."""
    if "\r" in value or "\n" in value:
        return _CRLF_RUN.sub(" ", value)
    return value


def encode_words(text: str) -> str:
    """RFC 2047 encoded-words (UTF-8, base64) for ``text``, each at most 75 characters."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        n = len(char.encode("utf-8"))
        # 45 bytes of UTF-8 become 60 base64 characters: 72 with the =?utf-8?b?…?= wrapper.
        if size + n > 45:
            words.append(_word("".join(chunk)))
            chunk, size = [], 0
        chunk.append(char)
        size += n
    if chunk:
        words.append(_word("".join(chunk)))
    return "\r\n ".join(words)


def _word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def fold(name: str, value: str) -> str:
    """``name: value`` folded at spaces so that lines stay near 78 characters."""
    first = f"{name}:"
    lines: list[str] = []
    current = first
    for word in value.split(" "):
        # Never leave a line that is only whitespace: RFC 5322 forbids it.
        if len(current) + 1 + len(word) > _FOLD_AT and current != first and current.strip():
            lines.append(current)
            current = ""
        current += " " + word
    lines.append(current)
    return "\r\n".join(lines)


def header(name: str, value: str) -> bytes:
    """One unstructured header as CRLF-terminated bytes: cleaned, encoded if needed, folded."""
    if not _FIELD_NAME.fullmatch(name):
        raise Invalid("headers", f"{name!r} is not a valid header name")
    value = clean_value(value)
    # ASCII that looks like an encoded-word is encoded too, so it reads back as written.
    if not value.isascii() or "=?" in value or _CONTROL.search(value):
        return f"{name}: {encode_words(value)}\r\n".encode("ascii")
    if any(len(w) > 900 for w in value.split(" ")):
        raise Invalid("headers", f"{name} has a word too long to fit a header line")
    return (fold(name, value) + "\r\n").encode("ascii")


def format_address(email: str, name: str = "", *, field_name: str = "to") -> str:
    """``Name <email>`` with the name quoted or RFC 2047 encoded as needed; bad email → Invalid."""
    email = email.strip()
    if not _ADDRESS.fullmatch(email):
        raise Invalid(field_name, f"{email!r} is not an email address")
    local, _, domain = email.rpartition("@")
    if not local.isascii():
        # A non-ASCII mailbox needs SMTPUTF8 end to end, which Surge does not negotiate.
        raise Invalid(field_name, f"{email!r} has a non-ASCII mailbox name")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise Invalid(field_name, f"{email!r} has an invalid domain") from None
        email = f"{local}@{domain}"
    name = clean_value(name).strip()
    if not name:
        return email
    if not name.isascii() or _CONTROL.search(name):
        return f"{encode_words(name)} <{email}>"
    if _ATEXT_PHRASE.fullmatch(name):
        return f"{name} <{email}>"
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{email}>'


def _address_header(name: str, value: str) -> bytes:
    # Addresses are folded only between display name and angle address; a long encoded name
    # already carries its own folds.
    line = f"{name}: {value}"
    if len(line) > _FOLD_AT and " <" in value and "\r\n" not in value:
        line = f"{name}: " + value.replace(" <", "\r\n <", 1)
    return (line + "\r\n").encode("ascii")


def _url(value: str, field_name: str) -> str:
    if not value or any(c in value for c in " \t\r\n<>") or not value.isascii() or len(value) > 900:
        raise Invalid(field_name, f"{value[:80]!r} is not a usable URL")
    return value


def _message_id(value: str | None, domain: str) -> str:
    if value is None:
        return f"<{secrets.token_hex(16)}@{domain}>"
    value = value.strip().removeprefix("<").removesuffix(">")
    if "@" not in value or not _FIELD_NAME.fullmatch(value) or any(c in value for c in "<>"):
        raise Invalid("message_id", f"{value!r} is not a Message-ID")
    return f"<{value}>"


class _DateCache:
    """The Date header value, formatted once per second rather than once per message."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(second))
            self._second, self._value = second, f"Date: {stamp}\r\n".encode("ascii")
        return self._value


@dataclass(slots=True)
class Composer:
    """Everything constant for one chunk's messages, encoded once; ``compose`` does the rest.

    ``from_domain`` names the domain of generated Message-IDs (default: the From domain).
    ``unsubscribe_mailto`` is the ``mailto:`` half of List-Unsubscribe, the same for everyone.
    """

    from_email: str
    from_name: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    unsubscribe_mailto: str | None = None
    from_domain: str | None = None
    _prefix: bytes = field(init=False, repr=False)
    _boundary: bytes = field(init=False, repr=False)
    _domain: str = field(init=False, repr=False)
    _mailto: str = field(init=False, repr=False)
    _date: _DateCache = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from_value = format_address(self.from_email, self.from_name, field_name="from")
        self._domain = self.from_domain or self.from_email.rpartition("@")[2]
        self._prefix = _address_header("From", from_value) + b"MIME-Version: 1.0\r\n"
        self._prefix += _extra_headers(self.headers)
        self._mailto = ""
        if self.unsubscribe_mailto:
            mailto = self.unsubscribe_mailto
            if not mailto.startswith("mailto:"):
                mailto = "mailto:" + mailto
            self._mailto = _url(mailto, "unsubscribe_mailto")
        self._boundary = b"=_surge_" + secrets.token_hex(12).encode("ascii")
        self._date = _DateCache()

    def compose(
        self,
        to: str,
        subject: str,
        *,
        text: str | None = None,
        html: str | None = None,
        to_name: str = "",
        message_id: str | None = None,
        unsubscribe_url: str | None = None,
        unsubscribe_mailto: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """One message as CRLF bytes, ready for SMTP DATA.

        ``unsubscribe_mailto`` (an address) replaces the Composer's for this recipient.

        ``html`` alone gets a plain-text part made by ``html_to_text``; ``text`` alone makes
        a single-part message. Bad addresses, header names or URLs raise ``Invalid``;
        CR/LF inside header values are replaced by spaces.
        """
        head = [
            self._prefix,
            _address_header("To", format_address(to, to_name)),
            header("Subject", subject),
            self._date.now(),
            b"Message-ID: " + _message_id(message_id, self._domain).encode("ascii") + CRLF,
            self._unsubscribe(unsubscribe_url, unsubscribe_mailto),
        ]
        if headers:
            head.append(_extra_headers(headers))
        if html is None:
            if text is None:
                raise Invalid("body", "a message needs a text or an html body")
            return b"".join(head) + _part(_TEXT_PLAIN, text)
        if text is None:
            text = html_to_text(html)
        boundary = self._boundary
        head.append(b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\r\n\r\n')
        # The CRLF before each delimiter belongs to the delimiter (RFC 2046), hence the leading
        # CRLF: without it a part's last line break would be lost.
        delimiter = b"\r\n--" + boundary + CRLF
        head += (delimiter[2:], _part(_TEXT_PLAIN, text), delimiter, _part(_TEXT_HTML, html))
        head.append(b"\r\n--" + boundary + b"--\r\n")
        return b"".join(head)

    def _unsubscribe(self, url: str | None, mailto: str | None = None) -> bytes:
        targets = []
        if url:
            targets.append(f"<{_url(url, 'unsubscribe_url')}>")
        if mailto:
            targets.append(f"<{_url('mailto:' + mailto, 'unsubscribe_mailto')}>")
        elif self._mailto:
            targets.append(f"<{self._mailto}>")
        if not targets:
            return b""
        out = ("List-Unsubscribe: " + ",\r\n ".join(targets) + "\r\n").encode("ascii")
        if url:
            # RFC 8058 one-click: receivers POST to the URL; it must be HTTPS in production.
            out += b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        return out


def _part(content_type: bytes, body: str) -> bytes:
    encoding, encoded = encode_body(body)
    return content_type + encoding + CRLF + encoded


def _extra_headers(headers: Mapping[str, str]) -> bytes:
    out = []
    for name, value in headers.items():
        key = name.lower()
        if key in _RESERVED:
            raise Invalid("headers", f"{name} is set by the composer")
        if key in _ADDRESS_HEADERS:
            out.append(_address_list_header(name, value))
        else:
            out.append(header(name, value))
    return b"".join(out)


# Headers holding addresses: a display name may be encoded, the address itself never.
_ADDRESS_HEADERS = frozenset({"reply-to", "cc", "sender"})


def _address_list_header(name: str, value: str) -> bytes:
    pairs = getaddresses([clean_value(value)])
    if not pairs or any(not email for _, email in pairs):
        raise Invalid("headers", f"{name} must hold email addresses")
    formatted = [format_address(email, display, field_name="headers") for display, email in pairs]
    return _address_header(name, ",\r\n ".join(formatted))
