"""Value rules every API schema shares: ids and amounts that fit PostgreSQL, storable times.

msgspec checks the bounds as it decodes, so an out-of-range number is a 400 naming the
field rather than a database error later. Times cannot be bounded by msgspec, so services
call ``check_time`` before they write.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Annotated

from msgspec import Meta

from surge.errors import Invalid

#: Largest value of PostgreSQL's bigint.
MAX_BIGINT = 2**63 - 1

#: A row id: what a bigint identity column can hold.
Id = Annotated[int, Meta(ge=1, le=MAX_BIGINT)]
#: A non-negative count or amount in minor units, stored as bigint.
Amount = Annotated[int, Meta(ge=0, le=MAX_BIGINT)]

#: Times Surge accepts: from the Unix epoch to the end of year 9999, in UTC. Earlier or
#: later values are mistakes, and at the edges a UTC offset would push them past what
#: Python's datetime (and so every reader) can represent.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, tzinfo=UTC)


def check_time(field: str, value: datetime | None) -> datetime | None:
    """``value`` in UTC (a naive time is taken as UTC), or Invalid naming ``field``."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise Invalid(field, "must be a time from 1970-01-01 to 9999-12-31 (UTC)")
    return utc


# The WHATWG (HTML) e-mail rule, plus a dot in the domain: what browsers accept, which is
# what people type. Internationalised addresses (non-ASCII) are not accepted yet.
EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)
MAX_EMAIL = 254

#: An address in a request body. msgspec's ``pattern`` would let a trailing newline through
#: (it searches with ``$``), so services apply ``check_email``; the schema documents it.
Email = Annotated[str, Meta(max_length=MAX_EMAIL, extra_json_schema={"format": "email"})]


def valid_email(email: str) -> bool:
    """Whether ``email`` (already stripped) is an address Surge stores and sends to.

    The one rule for every address: contacts, imports, donors, senders, reply-to and the
    receipts' sender.
    """
    return len(email) <= MAX_EMAIL and EMAIL.fullmatch(email) is not None


def check_email(field: str, value: str) -> str:
    """``value`` stripped, or Invalid naming ``field`` if it is not an address."""
    email = value.strip()
    if not valid_email(email):
        raise Invalid(field, f"{value!r} is not an email address")
    return email


# -- cursors of keyset pages -----------------------------------------------------------


def encode_cursor(last_id: int) -> str:
    """An opaque cursor: clients must not build or parse it, so its format may change."""
    return base64.urlsafe_b64encode(f"k1:{last_id}".encode()).decode().rstrip("=")


def next_cursor(ids: Sequence[int], limit: int) -> str | None:
    """The cursor after a page whose items have ``ids``: None once a page comes back short.
    (A full page may be the last one; the next request then returns an empty page.)"""
    return encode_cursor(ids[-1]) if ids and len(ids) == limit else None


def decode_cursor(cursor: str | None, field: str = "after") -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = text.partition(":")
        if prefix == "k1" and value.isdigit() and int(value) <= MAX_BIGINT:
            return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise Invalid(field, "invalid cursor; pass the 'next' value of a previous page")


def check_choice(field: str, value: str | None, choices: Collection[str]) -> None:
    """Invalid naming ``field`` unless ``value`` is None or one of ``choices``."""
    if value is not None and value not in choices:
        raise Invalid(field, f"{field} must be one of {', '.join(choices)}")


def like_escape(text: str) -> str:
    """``text`` for a LIKE or ILIKE pattern, its wildcards (``%``, ``_``) taken literally."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: A page address part (an organisation's or a campaign's slug): what /g/{org}/{campaign}
#: shows. The same rule is a check constraint in migration 0030.
SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
Slug = Annotated[
    str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$")
]
#: How much of a name a generated slug keeps, leaving room for a "-<n>" suffix.
SLUG_BASE = 50


def slugify(name: str, fallback: str) -> str:
    """A slug made of ``name``: accents dropped, lower case, other characters as hyphens
    (``"Ünïcorn Fund 2025!"`` → ``"unicorn-fund-2025"``); ``fallback`` if nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:SLUG_BASE].strip("-") or fallback


def check_slug(field: str, value: str) -> str:
    """``value`` if it is a slug (1-64 of a-z, 0-9 and inner hyphens), else Invalid."""
    if SLUG.fullmatch(value) is None:
        raise Invalid(
            field,
            f"{field} must be 1 to 64 lower-case letters, digits or hyphens, "
            "starting and ending with a letter or digit",
        )
    return value
