"""The login throttle: failed logins counted in PostgreSQL per address and per client.

Counting in the database makes the limit hold across every API process behind a load
balancer. Only failures count; a success clears its address's count. Past the limit within
the window the login page answers 429 with ``Retry-After`` until the window ends, and the
password is not even checked (no argon2 work for a guesser).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

#: Failed logins allowed per email address, and per client address, in one window.
PER_EMAIL = 10
PER_CLIENT = 50
#: The window, in seconds.
WINDOW = 15 * 60

# console_login_failures.key primary key.
CHECK = """
select coalesce(max(extract(epoch from
    window_start + make_interval(secs => %(window)s) - now())), 0)
from console_login_failures
where key = any(%(keys)s) and window_start > now() - make_interval(secs => %(window)s)
    and failures >= case when key like 'email:%%' then %(per_email)s else %(per_client)s end
"""

FAIL = """
insert into console_login_failures as f (key, failures, window_start)
select k, 1, now() from unnest(%(keys)s::text[]) as k
on conflict (key) do update set
    failures = case when f.window_start > now() - make_interval(secs => %(window)s)
        then f.failures + 1 else 1 end,
    window_start = case when f.window_start > now() - make_interval(secs => %(window)s)
        then f.window_start else now() end
"""


@dataclass(frozen=True, slots=True)
class Limits:
    per_email: int = PER_EMAIL
    per_client: int = PER_CLIENT
    window: float = WINDOW


def keys(email: str, client: str | None) -> list[str]:
    found = [f"email:{email.strip().lower()[:254]}"]
    if client:
        found.append(f"addr:{client}")
    return found


async def retry_after(conn: AsyncConnection[Any], keys: list[str], limits: Limits) -> int:
    """Seconds until a login may be tried again (0: now)."""
    cur = await conn.execute(
        CHECK,
        {
            "keys": keys,
            "window": limits.window,
            "per_email": limits.per_email,
            "per_client": limits.per_client,
        },
    )
    row = await cur.fetchone()
    return max(0, math.ceil(float(row[0]))) if row else 0


async def failed(conn: AsyncConnection[Any], keys: list[str], limits: Limits) -> None:
    # Keys in a fixed order, so two concurrent failures never deadlock on the two rows.
    await conn.execute(FAIL, {"keys": sorted(keys), "window": limits.window})


async def succeeded(conn: AsyncConnection[Any], email_key: str) -> None:
    await conn.execute("delete from console_login_failures where key = %s", [email_key])


async def prune(conn: AsyncConnection[Any], limits: Limits) -> int:
    """Forget windows that ended (console_login_failures_window_idx)."""
    cur = await conn.execute(
        "delete from console_login_failures where window_start < now() - make_interval(secs => %s)",
        [limits.window],
    )
    return cur.rowcount
