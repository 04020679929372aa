"""A file upload read as it arrives: multipart/form-data parsed piece by piece.

The upload form posts with htmx, which sends the CSRF token as a header, so the route's
CSRF check leaves the body unread and the file streams from the socket into the import's
stored chunks: memory stays at a few pieces whatever the file's size (2 GB included).
The text fields must come before the file (the form is written so; browsers send fields in
document order); fields after it are not read.

A plain form post (no JavaScript) carries the token in the body, so the CSRF check has read
the whole form already: Starlette spools its file to a temporary file on disk, which
``spooled_chunks`` then reads in pieces. Memory stays flat that way too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import UploadFile
from starlette.requests import Request

from surge.errors import Invalid

#: A text field of the upload form is short: longer ones are refused.
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 20
#: Pieces read from a spooled file at a time.
PIECE = 1024 * 1024

Event = tuple[str, bytes | dict[str, str] | None]


class MultipartStream:
    """The parts of a multipart/form-data body, read from the request as they arrive."""

    def __init__(self, request: Request, file_field: str) -> None:
        content_type, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise Invalid(file_field, "send the file from the upload form (multipart/form-data)")
        self.file_field = file_field
        self._events: deque[Event] = deque()
        self._body = request.stream().__aiter__()
        self._ended = False
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": lambda: self._events.append(("part", self._headers)),
                "on_part_data": lambda d, s, e: self._events.append(("data", bytes(d[s:e]))),
                "on_part_end": lambda: self._events.append(("end", None)),
                "on_end": lambda: self._events.append(("eof", None)),
            },
        )

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").lower()
        self._headers[name] = self._value.decode("utf-8", "replace")
        self._field.clear()
        self._value.clear()

    async def _next(self) -> Event:
        while not self._events:
            if self._ended:
                return ("eof", None)
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._ended = True
                self._parser.finalize()
                continue
            try:
                self._parser.write(chunk)
            except MultipartParseError:
                raise Invalid(self.file_field, "the upload was malformed; try again") from None
        return self._events.popleft()

    async def fields_until_file(self) -> tuple[dict[str, str], str | None]:
        """The text fields before the file, and the file's name (None: no file part)."""
        fields: dict[str, str] = {}
        while True:
            kind, value = await self._next()
            if kind == "eof":
                return fields, None
            if kind != "part" or not isinstance(value, dict):
                continue
            _, params = parse_options_header(value.get("content-disposition", ""))
            name = params.get(b"name", b"").decode("utf-8", "replace")
            filename = params.get(b"filename")
            if name == self.file_field and filename is not None:
                return fields, filename.decode("utf-8", "replace")
            if len(fields) >= MAX_FIELDS:
                raise Invalid(self.file_field, "the form has too many fields")
            fields.setdefault(name, await self._text())

    async def _text(self) -> str:
        value = bytearray()
        while True:
            kind, data = await self._next()
            if kind == "data" and isinstance(data, bytes):
                value += data
                if len(value) > MAX_FIELD_BYTES:
                    raise Invalid(self.file_field, "a field of the form is too long")
            elif kind in ("end", "eof"):
                return value.decode("utf-8", "replace")

    async def file_chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes, as they arrive (after ``fields_until_file`` found it)."""
        while True:
            kind, data = await self._next()
            if kind == "data" and isinstance(data, bytes):
                if data:
                    yield data
            elif kind in ("end", "eof"):
                return


async def spooled_chunks(upload: UploadFile) -> AsyncIterator[bytes]:
    """A spooled upload's bytes, a piece at a time."""
    while piece := await upload.read(PIECE):
        yield piece
