"""Per-request plumbing as plain ASGI: request id, access log, latency histogram."""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from surge.observability import tracing
from surge.observability.logging import request_id
from surge.observability.metrics import http_request_duration

log = logging.getLogger("surge.access")


# Request ids: a random per-process prefix and a counter. Unique across processes without
# drawing random bytes per request (the intake path counts microseconds).
_prefix = secrets.token_hex(4)
_counter = itertools.count(1)


def _new_id() -> str:
    return f"{_prefix}{next(_counter):08x}"


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Histogram children by (method, route, status): labels() costs a lock and a hash
        # of the label values on every call.
        self._observe: dict[tuple[str, str, int], Callable[[float], None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or _new_id()
        token = request_id.set(rid)
        start = time.perf_counter()
        status = 500
        # The server span, when tracing is on (observability/tracing.py).
        traced = tracing.begin_request(scope, rid) if tracing.active else None
        error: BaseException | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            error = exc
            raise
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            key = (scope["method"], template, status)
            observe = self._observe.get(key)
            if observe is None:
                observe = http_request_duration.labels(key[0], key[1], str(status)).observe
                self._observe[key] = observe
            observe(elapsed)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                    },
                )
            if traced is not None:  # after the access log, which then names the trace
                tracing.end_request(traced, scope, status, error)
            request_id.reset(token)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if 0 < len(text) <= 64 and text.isprintable():
                return text
    return None
