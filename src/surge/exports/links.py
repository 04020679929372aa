"""Signed download links: what a browser (a future console page) follows without an API key.

A link is ``/exports/<token>``; the token carries the export, its organisation and when the
link stops working, with an HMAC-SHA256 tag (128 bits) under a key derived from Surge's
signing key for this use only. Nothing is stored, so any API process verifies any link; a
tampered, forged or expired token is a 404. Links are short-lived (``LINK_SECONDS``) since
whoever holds one can download the file: the API hands out a fresh one with the export.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass

#: How long a download link works after it is made.
LINK_SECONDS = 3600
_PAYLOAD = struct.Struct(">QQQ")  # export id, organisation id, expiry (Unix seconds)
_MAC_BYTES = 16


@dataclass(frozen=True, slots=True)
class Link:
    export_id: int
    organization_id: int
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class LinkSigner:
    def __init__(self, key: str) -> None:
        self._key = hmac.new(key.encode(), b"surge-token:export-download", hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def sign(self, export_id: int, organization_id: int, expires: int) -> str:
        payload = _PAYLOAD.pack(export_id, organization_id, expires)
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, now: float) -> Link | None:
        """The link a token stands for; None if forged, tampered with, malformed or expired."""
        body, _, tag = token.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            mac = base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4))
        except ValueError:  # binascii.Error, and non-ASCII text
            return None
        if len(payload) != _PAYLOAD.size or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        link = Link(*_PAYLOAD.unpack(payload))
        return link if now < link.expires else None
