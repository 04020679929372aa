"""Send windows: each recipient gets a message when their own clock is inside the window.

A window is a local time of day, ``start`` to ``end`` (``end`` excluded; an ``end`` before
``start`` runs over midnight, 22:00–06:00). The instant a recipient's window next opens is
computed by PostgreSQL, which knows the IANA zones (``pg_timezone_names``), with the one
expression ``opening`` builds: plan uses it once per chunk, and ``send_chunk`` again when
its job starts, so both always agree.
"""

from __future__ import annotations

import re
from datetime import time

from psycopg import sql

from surge.errors import Invalid

_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def parse_clock(field: str, value: str) -> time:
    """``"HH:MM"`` (24-hour, 00:00–23:59) as a time of day, or Invalid naming ``field``."""
    match = _CLOCK.fullmatch(value)
    if match is None:
        raise Invalid(field, f"{value!r} is not a time of day as HH:MM (00:00 to 23:59)")
    return time(int(match[1]), int(match[2]))


# The local date and time of ``at`` in ``zone``, then: inside the window → ``at`` itself;
# before today's start → today's start; otherwise (past today's end) → tomorrow's start. A
# start that falls in a daylight-saving gap is read by PostgreSQL as the standard time.
_OPENING = """(select case
    when ({start} < {end} and v.local::time >= {start} and v.local::time < {end})
      or ({start} > {end} and (v.local::time >= {start} or v.local::time < {end}))
      then {at}
    when v.local::time < {start} then (v.local::date + {start}) at time zone {zone}
    else (v.local::date + 1 + {start}) at time zone {zone}
  end from (select {at} at time zone {zone}) as v(local))"""


def opening(
    at: sql.Composable, zone: sql.Composable, start: sql.Composable, end: sql.Composable
) -> sql.Composed:
    """SQL for the first instant at or after ``at`` (timestamptz) when the clock of ``zone``
    (an IANA name) reads a time of day in [``start``, ``end``) (both ``time``)."""
    return sql.SQL(_OPENING).format(at=at, zone=zone, start=start, end=end)
