"""Password hashing (argon2id) and TOTP codes (RFC 6238) for console users.

Hashing and verifying take ~50 ms of CPU and 64 MiB on purpose, so they run in a thread:
the event loop keeps serving while a login is checked.
"""

from __future__ import annotations

import asyncio
import hmac
import time

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from surge.errors import Invalid

#: argon2-cffi's defaults are RFC 9106's second recommended option (argon2id, t=3, 64 MiB).
_hasher = PasswordHasher()
#: Verified when no such user exists, so a wrong address takes as long as a wrong password.
_DUMMY = _hasher.hash("surge-dummy-password")

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
#: TOTP codes from one step before or after now are accepted (clock drift).
TOTP_DRIFT_STEPS = 1
TOTP_ISSUER = "Surge"


def check_password(field: str, password: str) -> str:
    """``password`` if it is long enough (NIST 800-63B: length, not composition rules)."""
    if len(password) < MIN_PASSWORD:
        raise Invalid(field, f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise Invalid(field, f"the password must have at most {MAX_PASSWORD} characters")
    return password


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches; ``None`` (no such user) takes as long and is False."""
    if len(password) > MAX_PASSWORD:
        return False
    return await asyncio.to_thread(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, email: str, organization: str) -> str:
    """The otpauth:// URI an authenticator app reads from a QR code or a pasted link."""
    return pyotp.TOTP(secret).provisioning_uri(
        name=email, issuer_name=f"{TOTP_ISSUER} {organization}"
    )


def totp_step(
    secret: str, code: str, last_step: int | None, now: float | None = None
) -> int | None:
    """The time step ``code`` is valid for (within the drift), or None.

    A step at or before ``last_step`` is refused: a code works once, even within its 30 s.
    """
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now if now is not None else time.time()) // totp.interval
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None
