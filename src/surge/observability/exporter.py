"""The metrics port of processes that serve no HTTP otherwise (workers, the bounce server).

A few lines of HTTP/1.1 on the process's own event loop: ``GET /metrics`` (this process's
registry) and ``GET /healthz``; anything else is 404 or 405, every answer closes the
connection. No thread and no web framework: the worker's loop already runs everything else,
and a scrape every few seconds needs nothing more. A request line and headers larger than
``MAX_HEAD`` bytes, or slower than ``READ_TIMEOUT`` seconds, are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from surge.config import ConfigError
from surge.observability.metrics import CONTENT_TYPE, render

log = logging.getLogger(__name__)

MAX_HEAD = 8 * 1024
READ_TIMEOUT = 5.0


class MetricsUnavailable(ConfigError):
    """The metrics port cannot be listened on (in use, not allowed): the CLI says so, exit 2."""


class MetricsListener:
    """Serves ``render()`` at ``/metrics`` on ``host:port`` until ``close()``."""

    def __init__(self, render: Callable[[], bytes] = render) -> None:
        self.render = render
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful with ``port=0``). Raises ``MetricsUnavailable``."""
        try:
            self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise MetricsUnavailable(f"cannot serve metrics on {host}:{port}: {reason}") from None
        bound: int = self._server.sockets[0].getsockname()[1]
        log.info("serving metrics", extra={"host": host, "port": bound})
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, kind = self._answer(head)
            writer.write(
                b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                b"Connection: close\r\n\r\n" % (status, kind, len(body))
            )
            if not head.startswith(b"HEAD "):
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a half-open, slow or oversized request: just hang up
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[bytes, bytes, bytes]:
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return b"400 Bad Request", b"bad request\n", b"text/plain"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target not in (b"/metrics", b"/healthz"):
            return b"404 Not Found", b"not found\n", b"text/plain"
        if method not in (b"GET", b"HEAD"):
            return b"405 Method Not Allowed", b"method not allowed\n", b"text/plain"
        if target == b"/healthz":
            return b"200 OK", b'{"status":"ok"}', b"application/json"
        return b"200 OK", self.render(), CONTENT_TYPE.encode()
