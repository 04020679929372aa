"""Domain errors, each with the HTTP status it means. Services raise these; ``api/errors.py``
turns any of them into the JSON error body, in one place.

The status lives on the class so that adding an error is one class, not a class plus an
entry in a table somewhere else; domain code still never imports anything HTTP.
"""

from __future__ import annotations


class SurgeError(Exception):
    """Base of every error a user can cause and be told about."""

    code = "error"
    status = 400
    #: Seconds a client should wait before trying again (sent as Retry-After), if any.
    retry_after: int | None = None

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(SurgeError):
    """Input that breaks a rule; ``field`` names the offending field."""

    code = "invalid"

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason, field)


class Unauthorized(SurgeError):
    code = "unauthorized"
    status = 401


class Forbidden(SurgeError):
    code = "forbidden"
    status = 403


class NotFound(SurgeError):
    """No such thing, or not this organisation's (the two are indistinguishable on purpose)."""

    code = "not_found"
    status = 404


class Conflict(SurgeError):
    """The request clashes with the current state."""

    code = "conflict"
    status = 409


class PayloadTooLarge(SurgeError):
    """A body, file or event larger than its limit."""

    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(SurgeError):
    """A body in a format (Content-Type or Content-Encoding) the endpoint does not take."""

    code = "unsupported_media_type"
    status = 415


class Overloaded(SurgeError):
    """More requests in flight than this process serves well; try again in a second."""

    code = "overloaded"
    status = 503
    retry_after = 1
