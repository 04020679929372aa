"""Reading request bodies: size-limited, strictly typed, errors naming the field."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec
from starlette.requests import Request

from surge.api.errors import PayloadTooLarge, UnsupportedMediaType
from surge.errors import Invalid

T = TypeVar("T")

_PATH = re.compile(r" - at `\$\.?(.*)`$")


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``limit`` bytes."""
    limit = request.app.state.settings.max_body_bytes if limit is None else limit
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, schema: type[T], limit: int | None = None) -> T:
    """Decode the JSON body into ``schema``; any mistake is a 400 naming the field."""
    ctype = request.headers.get("content-type", "application/json")
    if "json" not in ctype:
        raise UnsupportedMediaType("expected an application/json body")
    body = await read_body(request, limit)
    return decode_json(body, schema)


def decode_json(body: bytes, schema: type[T]) -> T:
    if not body:
        raise Invalid(None, "request body is empty; expected JSON")
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH.search(message)
        field = match[1] if match else None
        raise Invalid(field or None, _PATH.sub("", message)) from None
    except msgspec.DecodeError as exc:
        raise Invalid(None, f"malformed JSON: {exc}") from None
