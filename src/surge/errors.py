"""Domain errors. Services raise these; ``api/errors.py`` maps them to HTTP once."""

from __future__ import annotations


class SurgeError(Exception):
    """Base of every error a user can cause and be told about."""

    code = "error"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(SurgeError):
    """Input that breaks a rule; ``field`` names the offending field."""

    code = "invalid"

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason, field)


class NotFound(SurgeError):
    """No such thing, or not this organisation's (the two are indistinguishable on purpose)."""

    code = "not_found"


class Conflict(SurgeError):
    """The request clashes with the current state."""

    code = "conflict"


class Unauthorized(SurgeError):
    code = "unauthorized"


class Forbidden(SurgeError):
    code = "forbidden"
