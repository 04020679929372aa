"""DKIM signatures (RFC 6376) on outgoing mail, RSA-SHA256 and Ed25519-SHA256 (RFC 8463).

Bulk senders must sign: Gmail and Yahoo refuse unauthenticated bulk mail, and DMARC needs a
signature by the From domain. Each message gets one signature per active key of its From
domain, usually two (RSA-2048 for every verifier, Ed25519 for the ones that know it).

Signing is done here with ``cryptography`` rather than through dkimpy: dkimpy's RSA is pure
Python and re-parses the message, a few milliseconds each, and a chunk signs a thousand
messages. The tests check every signature with dkimpy's verifier.

Canonicalisation is relaxed/relaxed (survives the whitespace changes relays make). Signed
headers: those present of ``SIGNED``, each named once more than it occurs so that nobody can
add one (From, Subject, List-Unsubscribe … "over-signing", RFC 6376 8.15).
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
ALGORITHMS: tuple[Algorithm, ...] = ("rsa-sha256", "ed25519-sha256")

#: Headers signed when present, in this order. List-Unsubscribe(-Post) must be signed for
#: Gmail's one-click unsubscribe; the rest are what a forger would want to change.
SIGNED = (
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-id",
    "feedback-id",
)
_SIGNED = frozenset(SIGNED)

_WSP_RUN = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
_TRAILING_WSP = re.compile(rb"[ \t]+\r\n")
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)


def valid_selector(selector: str) -> bool:
    return _SELECTOR.fullmatch(selector) is not None


def valid_domain(domain: str) -> bool:
    return len(domain) <= 253 and _DOMAIN.fullmatch(domain) is not None


# -- canonicalisation (RFC 6376 3.4.2 and 3.4.4) -------------------------------------------


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """``name:value`` in relaxed form: lower-case name, unfolded, one space per run, no CRLF."""
    if b"\r\n" in value:
        value = _FOLD.sub(b"", value)
    if b"  " in value or b"\t" in value:
        value = _WSP_RUN.sub(b" ", value)
    return name.strip().lower() + b":" + value.strip(b" ")


def relaxed_body(body: bytes) -> bytes:
    """The body in relaxed form: runs of spaces made one, line ends and trailing lines trimmed."""
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    # Mail Surge composes is quoted-printable or base64: usually nothing to change but
    # the trailing empty lines, and a substring search is far cheaper than the regexes.
    if b"\t" in body or b"  " in body:
        body = _WSP_RUN.sub(b" ", body)
    if b" \r\n" in body:
        body = _TRAILING_WSP.sub(b"\r\n", body)
    body = body.rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def split_message(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(headers as (name, raw value with folds), body) of a CRLF message."""
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, body = message.rstrip(b"\r\n"), b""
    headers: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b"\r\n" + line)
        else:
            name, _, value = line.partition(b":")
            headers.append((name, value))
    return headers, body


# -- keys ----------------------------------------------------------------------------------

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def generate_key(algorithm: Algorithm) -> PrivateKey:
    """A new key: RSA-2048 (what every verifier accepts) or Ed25519."""
    if algorithm == "rsa-sha256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def private_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def load_private_key(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise ValueError("a DKIM key is RSA or Ed25519")
    return key


def dns_value(key: PrivateKey) -> str:
    """The TXT record's value that publishes ``key``'s public half."""
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def dns_record(domain: str, selector: str, value: str) -> str:
    """A zone-file line; the value in quoted strings of at most 255 characters (RFC 7208 3.3)."""
    parts = " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255))
    return f"{selector}._domainkey.{domain}. IN TXT ( {parts} )"


# -- signing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signer:
    """Signs messages for ``domain`` with the key published under ``selector``."""

    domain: str
    selector: str
    key: PrivateKey

    @property
    def algorithm(self) -> Algorithm:
        return "rsa-sha256" if isinstance(self.key, rsa.RSAPrivateKey) else "ed25519-sha256"

    def signature(self, message: bytes, now: int | None = None) -> bytes:
        """The ``DKIM-Signature:`` header (folded, ending in CRLF) for ``message``."""
        headers, body = split_message(message)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
        counts: dict[str, int] = {}
        for name, _ in headers:
            lowered = name.strip().lower().decode("ascii", "replace")
            if lowered in _SIGNED:
                counts[lowered] = counts.get(lowered, 0) + 1
        # Each present header once per instance, plus once more (over-signing).
        names = [n for n in SIGNED if n in counts for _ in range(counts[n] + 1)]
        if "from" not in counts:
            raise ValueError("a message without a From header cannot be signed")
        stamp = int(time.time()) if now is None else now
        tokens = [
            (" ", "v=1;"),
            (" ", f"a={self.algorithm};"),
            (" ", "c=relaxed/relaxed;"),
            (" ", f"d={self.domain};"),
            (" ", f"s={self.selector};"),
            (" ", f"t={stamp};"),
            *(
                (" " if i == 0 else "", f"{'h=' if i == 0 else ''}{n}:")
                for i, n in enumerate(names)
            ),
            (" ", f"bh={body_hash};"),
            (" ", "b="),
        ]
        # The h= list ends with ';' rather than ':'.
        sep, last = tokens[-3]
        tokens[-3] = (sep, last[:-1] + ";")
        head = _fold("DKIM-Signature:", tokens)
        value = head[len("DKIM-Signature:") :].encode()
        signed = _signed_headers(headers, names) + relaxed_header(b"dkim-signature", value)
        b = base64.b64encode(self._sign(signed)).decode()
        pieces = [("", b[i : i + 64]) for i in range(0, len(b), 64)]
        return (_fold(head, pieces) + "\r\n").encode()

    def sign(self, message: bytes, now: int | None = None) -> bytes:
        """``message`` with this signer's signature prepended."""
        return self.signature(message, now) + message

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        # RFC 8463: Ed25519 (pure) over the SHA-256 hash of the canonicalised data.
        return self.key.sign(hashlib.sha256(data).digest())


def sign_all(signers: Sequence[Signer], message: bytes, now: int | None = None) -> bytes:
    """``message`` signed by each of ``signers`` (each signature covers only the message)."""
    if not signers:
        return message
    return b"".join(s.signature(message, now) for s in signers) + message


def _signed_headers(headers: list[tuple[bytes, bytes]], names: list[str]) -> bytes:
    """The canonical header block: for each name, the next instance from the bottom up."""
    by_name: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        by_name.setdefault(name.strip().lower(), []).append(value)
    out: list[bytes] = []
    used: dict[bytes, int] = {}
    for signed in names:
        key = signed.encode()
        instances = by_name.get(key, [])
        n = used.get(key, 0)
        used[key] = n + 1
        if n < len(instances):  # past the last one, a name signs "no such header"
            out.append(relaxed_header(key, instances[len(instances) - 1 - n]) + b"\r\n")
    return b"".join(out)


def _fold(start: str, tokens: list[tuple[str, str]]) -> str:
    """``start`` followed by ``tokens`` (separator, text), folded before lines pass 76."""
    lines = start.split("\r\n")
    line = lines.pop()
    for sep, text in tokens:
        if len(line) + len(sep) + len(text) > 76:
            lines.append(line)
            line = " " + text
        else:
            line += sep + text
    return "\r\n".join([*lines, line])
