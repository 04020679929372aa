"""Reading request bodies: size-limited, strictly typed, errors naming the field."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from surge.errors import Invalid, NotFound, PayloadTooLarge, UnsupportedMediaType

T = TypeVar("T")

_PATH = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"Object missing required field `([^`]*)`")


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The whole body, refusing (413) as soon as it passes ``limit`` bytes."""
    limit = request.app.state.settings.max_body_bytes if limit is None else limit
    return await read_limited(request.receive, request.headers.get("content-length"), limit)


async def read_limited(receive: Receive, declared: str | bytes | None, limit: int) -> bytes:
    """The whole body from ASGI ``receive``, refusing (413) as soon as it passes ``limit``.

    ``declared`` is the Content-Length header, if any: a body declared too big is refused
    before a byte is read. The intake fast path calls this without a Starlette Request.
    """
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json(request: Request, schema: type[T], limit: int | None = None) -> T:
    """Decode the JSON body into ``schema``; any mistake is a 400 naming the field."""
    ctype = request.headers.get("content-type", "application/json")
    if "json" not in ctype:
        raise UnsupportedMediaType("expected an application/json body")
    body = await read_body(request, limit)
    return decode_json(body, schema)


def decode_json(body: bytes, schema: type[T]) -> T:
    """``body`` decoded into ``schema``; any mistake is Invalid naming the field.

    Besides the schema's own rules, no string or key may hold NUL: PostgreSQL's text and
    jsonb cannot store it, so it would otherwise fail later, as a database error.
    """
    if not body:
        raise Invalid(None, "request body is empty; expected JSON")
    try:
        decoded = msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH.search(message)
        field = match[1] if match else None
        # A missing field is named by the message, not the path (the path is its object's).
        missing = _MISSING.match(message)
        if missing:
            field = f"{field}.{missing[1]}" if field else missing[1]
        raise Invalid(field or None, _PATH.sub("", message)) from None
    except msgspec.DecodeError as exc:
        raise Invalid(None, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise Invalid(None, "JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise Invalid(None, f"malformed JSON: {exc}") from None
    # Raw control characters are malformed JSON already; NUL can only come escaped.
    if b"\\u0000" in body:
        where = nul_path(msgspec.json.decode(body))
        if where is not None:
            raise Invalid(where or None, "text may not contain the NUL character (\\u0000)")
    return decoded


def nul_path(value: Any, path: str = "") -> str | None:
    """The path (``a.b[2]``) of the first string holding NUL in ``value``; None if none does.

    A key holding NUL is reported as its object's path.
    """
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return path
            found = nul_path(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = nul_path(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


_DIGITS = re.compile(r"[0-9]{1,19}")


def query_int(request: Request, name: str, default: int, *, low: int = 1, high: int) -> int:
    """Query parameter ``name`` as an integer from ``low`` to ``high``; Invalid otherwise.

    Only ASCII digits count: ``str.isdigit`` also accepts "²" and other digits ``int``
    refuses or reads differently.
    """
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if _DIGITS.fullmatch(raw) is None or not low <= int(raw) <= high:
        raise Invalid(name, f"{name} must be an integer from {low} to {high}")
    return int(raw)


def query_id(request: Request, name: str) -> int | None:
    """An optional id in the query string (1 to 2^63 - 1)."""
    if request.query_params.get(name) is None:
        return None
    return query_int(request, name, 0, high=MAX_ID)


def query_text(request: Request, name: str, max_length: int = 1000) -> str | None:
    """Query parameter ``name`` as text, without NUL and at most ``max_length`` characters."""
    raw = request.query_params.get(name)
    if raw is not None and ("\x00" in raw or len(raw) > max_length):
        raise Invalid(name, f"{name} must be at most {max_length} characters, without NUL")
    return raw


#: Largest id PostgreSQL's bigint holds.
MAX_ID = 2**63 - 1
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 255
_KEY = re.compile(r"[\x20-\x7e]+")


def idempotency_key(request: Request, *, required: bool = False) -> str | None:
    """The request's ``Idempotency-Key`` header, checked (``check_idempotency_key``)."""
    return check_idempotency_key(request.headers.get(IDEMPOTENCY_HEADER), required=required)


def check_idempotency_key(value: str | None, *, required: bool) -> str | None:
    """An Idempotency-Key: 1 to 255 printable ASCII characters, or Invalid naming the header.

    Keys are stored and compared as text: a bound keeps the unique index small, and control
    characters (NUL above all) cannot be stored at all.
    """
    if value is None or not value.strip():
        if required:
            raise Invalid(IDEMPOTENCY_HEADER, "the Idempotency-Key header is required")
        return None
    if len(value) > MAX_IDEMPOTENCY_KEY or _KEY.fullmatch(value) is None:
        raise Invalid(
            IDEMPOTENCY_HEADER,
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters",
        )
    return value


def path_id(request: Request, name: str) -> int:
    """The id in path parameter ``name`` (routes match digits only, ``{name:int}``); a number
    too big to be an id is a 404 like any id that does not exist."""
    value: int = request.path_params[name]
    if value > MAX_ID:
        raise NotFound("no such id")
    return value
