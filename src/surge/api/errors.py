"""The one place where errors become HTTP responses: ``{"error": {code, message, field}}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from psycopg import OperationalError
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from surge import errors
from surge.api.responses import json_response
from surge.observability.metrics import http_errors

log = logging.getLogger(__name__)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, object]:
    # "code" and "message" are repeated at the top level because Segment-style SDKs read
    # them there (rudder-sdk-python raises KeyError without them and retries a 4xx for ~17
    # minutes); the "error" object is the contract every other client reads.
    return {
        "error": {"code": code, "message": message, "field": field},
        "code": code,
        "message": message,
    }


async def surge_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.SurgeError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, errors.Unauthorized) else None
    if exc.retry_after is not None:
        headers = {"Retry-After": str(exc.retry_after)}
    return json_response(error_body(exc.code, exc.message, exc.field), exc.status, headers)


HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return json_response(error_body(code, str(exc.detail)), exc.status_code, exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # A bug: log it with its traceback, tell the client nothing about our internals.
    log.exception("unhandled error", extra={"path": request.url.path})
    template = getattr(request.scope.get("route"), "path", None) or "unmatched"
    http_errors.labels(template).inc()
    return json_response(error_body("internal", "internal error"), 500)


#: Seconds a client should wait before retrying while the database is unreachable.
RETRY_AFTER_UNAVAILABLE = 5


async def database_unavailable(request: Request, exc: Exception) -> Response:
    # The database is down, restarting or every pooled connection is busy past the pool's
    # timeout: the request did nothing, and the same request later will work.
    log.warning("database unavailable", extra={"path": request.url.path, "error": repr(exc)})
    body = error_body("unavailable", "the database is unavailable; retry shortly")
    return json_response(body, 503, {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)})


HANDLERS = {
    errors.SurgeError: surge_error,
    HTTPException: http_error,
    PoolTimeout: database_unavailable,
    OperationalError: database_unavailable,
    Exception: unexpected_error,
}


def handler_for(exc: Exception) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The handler ``HANDLERS`` gives ``exc`` (for routes served outside Starlette)."""
    for cls in type(exc).__mro__:
        if cls in HANDLERS:
            return HANDLERS[cls]
    return unexpected_error
