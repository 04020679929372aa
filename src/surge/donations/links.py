"""Signed links a donor follows without an account: managing a recurring gift.

A token carries the recurring gift's id and an HMAC-SHA256 tag (128 bits) under a key
derived from Surge's signing key for this use only, like the unsubscribe tokens
(``tracking/tokens.py``): nothing is stored, any process verifies any link, and a tampered
or forged token does not verify (the endpoints answer 404). The link does not expire: it is
in every receipt of the gift, and cancelling is the only thing it allows besides reading.

``GET /v1/recurring/{token}`` and ``POST /v1/recurring/{token}/cancel`` are its JSON API;
the page a donor sees is ``{public_url}/recurring/{token}``, rendered by the giving-day pages.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import struct
from pathlib import Path

from surge.config import Settings
from surge.tracking.tokens import signing_key

_ID = struct.Struct(">Q")
_MAC_BYTES = 16
#: Where the donor's page for the gift lives (served by surge/givingday).
MANAGE_PATH = "/recurring/{token}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RecurringLinks:
    def __init__(self, key: str, public_url: str) -> None:
        self._key = hmac.new(key.encode(), b"surge-token:recurring", hashlib.sha256).digest()
        self.public_url = public_url.rstrip("/")

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def token(self, gift_id: int) -> str:
        payload = _ID.pack(gift_id)
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str) -> int | None:
        """The gift id a token stands for, or None if we did not sign it."""
        body, _, tag = token.partition(".")
        try:
            payload, mac = _unb64(body), _unb64(tag)
        except ValueError:
            return None
        if len(payload) != _ID.size or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        gift_id: int = _ID.unpack(payload)[0]
        return gift_id

    def manage_url(self, gift_id: int) -> str:
        """The page where the donor sees and cancels the gift."""
        return self.public_url + MANAGE_PATH.format(token=self.token(gift_id))


def links(settings: Settings) -> RecurringLinks:
    """The process's signer (the key file, if any, is read once)."""
    return _links(settings.secret_key, str(settings.data_dir), settings.public_url)


@functools.cache
def _links(secret: str | None, data_dir: str, public_url: str) -> RecurringLinks:
    settings = Settings(secret_key=secret, data_dir=Path(data_dir))
    return RecurringLinks(signing_key(settings), public_url)
