"""VERP envelope senders: ``bounces+<token>@<bounce domain>``, one per delivery.

A bounce comes back to the envelope sender (Return-Path), often days after the SMTP
conversation and in a format each server words its own way. With the delivery encoded in
the address itself, the bounce server knows which delivery bounced without parsing
anything: the RCPT address says it.

The token is lower-case base32 (local parts pass through systems that fold case) of the
message and contact ids and an 80-bit HMAC with a key derived from the signing key: 42
characters, so the local part stays under the 64 RFC 5321 allows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

_IDS = struct.Struct(">QQ")
_MAC_BYTES = 10
#: Bounces come back to ``bounces+…``; ``unsubscribe+…`` is the mailto: of List-Unsubscribe.
LOCAL = "bounces"
UNSUBSCRIBE = "unsubscribe"


class Verp:
    """Makes and reads the per-delivery addresses of one installation."""

    def __init__(self, key: str, domain: str) -> None:
        self.domain = domain.lower()
        # One key per purpose: the Return-Path a recipient sees is no unsubscribe address.
        self._keys = {
            local: hmac.new(key.encode(), b"surge-verp:" + local.encode(), hashlib.sha256).digest()
            for local in (LOCAL, UNSUBSCRIBE)
        }

    def address(self, message_id: int, contact_id: int, local: str = LOCAL) -> str:
        payload = _IDS.pack(message_id, contact_id)
        mac = hmac.new(self._keys[local], payload, hashlib.sha256).digest()[:_MAC_BYTES]
        token = base64.b32encode(payload + mac).decode("ascii").rstrip("=").lower()
        return f"{local}+{token}@{self.domain}"

    def parse(self, address: str, local: str = LOCAL) -> tuple[int, int] | None:
        """(message id, contact id) of an address of ours for ``local``; else None."""
        mailbox, _, domain = address.strip().strip("<>").rpartition("@")
        prefix, plus, token = mailbox.partition("+")
        if not plus or prefix.lower() != local or domain.lower() != self.domain:
            return None
        text = token.upper()
        try:
            raw = base64.b32decode(text + "=" * (-len(text) % 8))
        except ValueError:  # binascii.Error too
            return None
        if len(raw) != _IDS.size + _MAC_BYTES:
            return None
        payload, mac = raw[: _IDS.size], raw[_IDS.size :]
        expected = hmac.new(self._keys[local], payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            return None
        message_id, contact_id = _IDS.unpack(payload)
        return message_id, contact_id
