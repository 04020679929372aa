"""What Segment's client libraries send besides JSON: the write key as the basic-auth user,
and, optionally, a gzip-compressed body (``Content-Encoding: gzip``)."""

from __future__ import annotations

import base64
import binascii
import zlib

from surge.errors import Invalid, PayloadTooLarge, UnsupportedMediaType


def basic_auth_user(header: str) -> str | None:
    """The user of ``Authorization: Basic base64(user:password)``; None for other schemes."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[0].strip()


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """``body`` decompressed per its Content-Encoding, refused (413) past ``limit`` bytes."""
    if not encoding or encoding.lower() == "identity":
        return body
    if encoding.lower() != "gzip":
        raise UnsupportedMediaType(f"unsupported Content-Encoding {encoding!r}; use gzip")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise Invalid(None, "body is not valid gzip") from None
    if len(data) > limit:
        raise PayloadTooLarge(f"decompressed body is larger than {limit} bytes")
    return data
