"""Signed tokens in tracking and unsubscribe URLs.

A token carries what the hit is about (message, contact, and for clicks the target URL)
and an HMAC over it, so the endpoint needs no lookup to trust it; a tampered or forged
token does not verify and the endpoint answers 404. Each kind has its own salt, so an
open token cannot be replayed as an unsubscribe.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer

from surge.config import Settings

KINDS = ("open", "click", "unsubscribe")


def signing_key(settings: Settings) -> str:
    """SURGE_SECRET_KEY, or a key generated once into the data dir (single machine only)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


@dataclass(frozen=True, slots=True)
class Hit:
    kind: str
    message_id: int
    contact_id: int
    url: str | None = None


class TokenSigner:
    def __init__(self, key: str) -> None:
        self._serializers = {kind: URLSafeSerializer(key, salt=kind) for kind in KINDS}

    def sign(self, kind: str, message_id: int, contact_id: int, url: str | None = None) -> str:
        payload: list[object] = (
            [message_id, contact_id]
            if url is None
            else [
                message_id,
                contact_id,
                url,
            ]
        )
        token: str = self._serializers[kind].dumps(payload)
        return token

    def verify(self, kind: str, token: str) -> Hit | None:
        """The hit a token stands for, or None if it was not signed by us for ``kind``."""
        try:
            payload = self._serializers[kind].loads(token)
        except (BadSignature, UnicodeDecodeError, ValueError):
            return None
        if not isinstance(payload, list) or len(payload) not in (2, 3):
            return None
        if not all(isinstance(v, int) for v in payload[:2]):
            return None
        url = payload[2] if len(payload) == 3 else None
        if url is not None and not isinstance(url, str):
            return None
        return Hit(kind, payload[0], payload[1], url)
