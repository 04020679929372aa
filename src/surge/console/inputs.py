"""What the campaign, message, donation and webhook pages read from forms and show.

Amounts are typed in major units ("25", "1,250.50") and stored in minor units of their
currency; times are typed and shown in UTC, like every time in the console (the overview's
"today" is a UTC day too). Form values come as text: these turn them into what the domain
services take, or ``Invalid`` naming the form's field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from starlette.requests import Request

from surge.api.decode import decode_json
from surge.api.reads import note_org
from surge.console.sessions import Session
from surge.console.web import require_user, templates
from surge.donations.currencies import MINOR_UNITS, format_amount
from surge.errors import Invalid
from surge.fields import MAX_BIGINT, decode_cursor

#: What a datetime-local input sends ("2025-12-02T09:30", seconds optional).
_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?")


def signed_in(request: Request, role: str = "viewer") -> Session:
    """The signed-in person (``require_user``), their organisation noted for read-your-writes
    (docs/scaling.md): a page's writes get the token that makes the next page read them."""
    user = require_user(request, role)
    note_org(request, user.organization_id)
    return user


def minor_units(field: str, text: str | None, currency: str | None) -> int | None:
    """``"1,250.50"`` in USD → 125050; blank → None; Invalid naming ``field`` otherwise."""
    value = (text or "").strip().replace(",", "").replace("_", "")
    if not value:
        return None
    digits = MINOR_UNITS.get(currency or "", 2)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise Invalid(field, f"{text!r} is not an amount (write it like 25 or 1250.50)") from None
    if not amount.is_finite() or amount < 0:
        raise Invalid(field, "the amount must be a positive number")
    scaled = amount.scaleb(digits)
    if scaled != scaled.to_integral_value():
        places = f"{digits} decimal places" if digits else "no decimals"
        raise Invalid(field, f"{currency or 'this currency'} amounts have {places}")
    if scaled > MAX_BIGINT:
        raise Invalid(field, "the amount is too large")
    return int(scaled)


def major_units(amount: int | None, currency: str | None) -> str:
    """The form value of an amount in minor units (``125050`` USD → ``"1250.50"``)."""
    if amount is None:
        return ""
    digits = MINOR_UNITS.get(currency or "", 2)
    return str(Decimal(amount).scaleb(-digits))


def utc_time(field: str, text: str | None) -> datetime | None:
    """A datetime-local value, taken as UTC; blank → None."""
    value = (text or "").strip()
    if not value:
        return None
    if _LOCAL.fullmatch(value) is None:
        raise Invalid(field, "write the time as YYYY-MM-DD HH:MM (UTC)")
    try:
        return datetime.fromisoformat(value.replace(" ", "T")).replace(tzinfo=UTC)
    except ValueError:
        raise Invalid(field, f"{value!r} is not a time") from None


def local_value(when: datetime | None) -> str:
    """The datetime-local form value of a time, in UTC."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if when is not None else ""


def checked(form: dict[str, str], name: str) -> bool:
    """Whether a checkbox was ticked (an unticked one is not sent at all)."""
    return form.get(name, "") not in ("", "0", "off", "false")


def text_or_none(form: dict[str, str], name: str) -> str | None:
    value = form.get(name, "").strip()
    return value or None


def struct(values: dict[str, Any], schema: type[Any]) -> Any:
    """``values`` as ``schema`` (a request body Struct), with the API's own checks: the first
    mistake is Invalid naming its field (NUL characters included)."""
    return decode_json(msgspec.json.encode(values), schema)


def cursor(request: Request, name: str = "before") -> str | None:
    """A keyset cursor from the query string, checked (Invalid: a 400 page)."""
    value = request.query_params.get(name) or None
    decode_cursor(value, name)
    return value


def query_id(request: Request, name: str) -> int | None:
    """An optional id filter from the query string; blank → None."""
    value = (request.query_params.get(name) or "").strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= MAX_BIGINT:
        raise Invalid(name, f"{name} must be an id")
    return int(value)


def money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return "—"
    return format_amount(amount, currency) if currency else f"{amount:,}"


def when(value: datetime | None) -> str:
    """A time as the console shows it: UTC, to the minute."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value is not None else "—"


def duration(seconds: float | None) -> str:
    """``3725`` → ``"1 h 2 min"``; ``42`` → ``"42 s"``."""
    if seconds is None:
        return "—"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


# Named so as not to clash with other pages' filters in the shared environment.
templates.filters["amount_text"] = money
templates.filters["utc_minute"] = when
templates.filters["seconds_text"] = duration
