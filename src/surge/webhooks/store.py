"""SQL for webhooks. Every query a tenant can reach filters by organization_id."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import args_row, class_row

from surge.webhooks.schemas import Endpoint, EndpointCreated

Conn = AsyncConnection[Any]

# One statement on the caller's path. The EXISTS probe (a few index entries of the
# organisation's endpoints) means an organisation with no subscriber for this type writes
# nothing at all, which is the common case at giving-day rates.
EMIT = """
insert into webhook_events (organization_id, type, data, traceparent)
select %(org)s, %(type)s, %(data)s::jsonb, %(traceparent)s
where exists (
    select 1 from webhook_endpoints
    where organization_id = %(org)s and enabled
      and event_types && array[%(type)s::text, '*']
)
"""

# The relay, in one statement: claim the oldest unrelayed events (skipping those another
# relay holds), mark them relayed and create one pending delivery per enabled endpoint of
# the same organisation subscribed to the event's type.
RELAY = """
with claimed as (
    select id from webhook_events
    where not relayed
    order by id
    limit %(limit)s
    for update skip locked
), relayed as (
    update webhook_events e set relayed = true
    from claimed where e.id = claimed.id
    returning e.id, e.organization_id, e.type, e.traceparent
), inserted as (
    insert into webhook_deliveries (organization_id, endpoint_id, event_id, next_attempt_at)
    select r.organization_id, ep.id, r.id, now()
    from relayed r
    join webhook_endpoints ep
      on ep.organization_id = r.organization_id and ep.enabled
     and ep.event_types && array[r.type, '*']
    order by r.id, ep.id
    returning id, organization_id, event_id
)
select (select count(*) from relayed) as events,
       coalesce(array_agg(i.id), '{}') as delivery_ids,
       coalesce(array_agg(i.organization_id), '{}') as organization_ids,
       coalesce(array_agg(r.traceparent), '{}') as traceparents
from inserted i join relayed r on r.id = i.event_id
"""

#: In the order of ``schemas.Endpoint``'s fields (``list_endpoints`` reads them by position):
#: endpoints are read straight into the response structs, with nothing to add on the way.
ENDPOINT_COLUMNS = (
    "id, url, description, event_types, enabled, disabled_reason, failing_since,"
    " consecutive_failures, created_at, updated_at"
)

#: In the order of ``DeliveryRow``'s fields (``list_deliveries`` reads them by position).
DELIVERY_COLUMNS = (
    "d.id, d.event_id, e.type as event_type, d.status, d.attempts, d.last_status_code,"
    " d.last_error, d.next_attempt_at, d.created_at, d.updated_at, d.delivered_at"
)


@dataclass(frozen=True, slots=True)
class Relayed:
    """What one ``relay`` did: events relayed, and the deliveries made with their
    organisations (``delivery_ids[i]`` belongs to ``organization_ids[i]``)."""

    events: int
    delivery_ids: list[int]
    organization_ids: list[int]
    #: The trace each delivery continues: its event's (None: not traced).
    traceparents: list[str | None]


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A line of an endpoint's delivery log (``DELIVERY_COLUMNS``)."""

    id: int
    event_id: int
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryToSend:
    """What an attempt needs: the delivery, its endpoint's URL and secret, the event."""

    id: int
    status: str
    attempts: int
    endpoint_id: int
    url: str
    secret: str
    enabled: bool
    event_id: int
    type: str
    occurred_at: datetime
    #: The event's data as JSON text, sent as stored.
    data: str


async def insert_event(
    conn: Conn, organization_id: int, event_type: str, data: str, traceparent: str | None
) -> None:
    await conn.execute(
        EMIT,
        {"org": organization_id, "type": event_type, "data": data, "traceparent": traceparent},
    )


async def subscriptions(conn: Conn, orgs: Sequence[int]) -> dict[int, list[list[str]]]:
    """The event types each enabled endpoint of these organisations subscribes to."""
    cur = await conn.execute(
        "select organization_id, event_types from webhook_endpoints"
        " where organization_id = any(%s) and enabled",
        [list(orgs)],
    )
    found: dict[int, list[list[str]]] = {}
    for org, types in await cur.fetchall():
        found.setdefault(org, []).append(types)
    return found


async def insert_events(
    conn: Conn, events: Sequence[tuple[int, str, str]], traceparent: str | None
) -> None:
    """Outbox rows for many (organisation, type, data), in their order, in one INSERT."""
    orgs, types, datas = (list(c) for c in zip(*events, strict=True))
    await conn.execute(
        "insert into webhook_events (organization_id, type, data, traceparent)"
        " select org, type, data::jsonb, %s from unnest(%s::bigint[], %s::text[], %s::text[])"
        " with ordinality as e(org, type, data, n) order by n",
        [traceparent, orgs, types, datas],
    )


async def relay(conn: Conn, limit: int) -> Relayed:
    """Relay up to ``limit`` events into deliveries."""
    cur = conn.cursor(row_factory=class_row(Relayed))
    await cur.execute(RELAY, {"limit": limit})
    row = await cur.fetchone()
    assert row is not None
    return row


# -- endpoints ----------------------------------------------------------------------------


async def count_endpoints(conn: Conn, org: int) -> int:
    cur = await conn.execute(
        "select count(*) from webhook_endpoints where organization_id = %s", [org]
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def insert_endpoint(conn: Conn, org: int, values: dict[str, Any]) -> EndpointCreated:
    cur = conn.cursor(row_factory=class_row(EndpointCreated))
    await cur.execute(
        "insert into webhook_endpoints (organization_id, url, description, event_types, secret)"
        " values (%(org)s, %(url)s, %(description)s, %(event_types)s, %(secret)s)"
        f" returning {ENDPOINT_COLUMNS}, secret",
        {"org": org, **values},
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def list_endpoints(conn: Conn, org: int) -> list[Endpoint]:
    cur = conn.cursor(row_factory=args_row(Endpoint))
    await cur.execute(
        f"select {ENDPOINT_COLUMNS} from webhook_endpoints where organization_id = %s order by id",
        [org],
    )
    return await cur.fetchall()


async def get_endpoint(conn: Conn, org: int, endpoint_id: int) -> Endpoint | None:
    cur = conn.cursor(row_factory=class_row(Endpoint))
    await cur.execute(
        f"select {ENDPOINT_COLUMNS} from webhook_endpoints where organization_id = %s and id = %s",
        [org, endpoint_id],
    )
    return await cur.fetchone()


# Absent fields are NULL parameters and keep their value (description has its own flag,
# since null is a value it may take). Re-enabling a disabled endpoint clears its streak.
UPDATE_ENDPOINT = f"""
update webhook_endpoints set
    url = coalesce(%(url)s::text, url),
    event_types = coalesce(%(event_types)s::text[], event_types),
    description = case when %(set_description)s::boolean then %(description)s::text
                       else description end,
    enabled = coalesce(%(enabled)s::boolean, enabled),
    disabled_reason = case
        when %(enabled)s::boolean then null
        when not %(enabled)s::boolean and enabled then %(reason)s::text
        else disabled_reason end,
    failing_since = case when %(enabled)s::boolean and not enabled then null
                         else failing_since end,
    consecutive_failures = case when %(enabled)s::boolean and not enabled then 0
                                else consecutive_failures end,
    updated_at = now()
where organization_id = %(org)s and id = %(id)s
returning {ENDPOINT_COLUMNS}
"""


async def update_endpoint(
    conn: Conn, org: int, endpoint_id: int, values: dict[str, Any]
) -> Endpoint | None:
    cur = conn.cursor(row_factory=class_row(Endpoint))
    await cur.execute(UPDATE_ENDPOINT, {"org": org, "id": endpoint_id, **values})
    return await cur.fetchone()


async def delete_endpoint(conn: Conn, org: int, endpoint_id: int) -> bool:
    cur = await conn.execute(
        "delete from webhook_endpoints where organization_id = %s and id = %s",
        [org, endpoint_id],
    )
    return cur.rowcount == 1


async def list_deliveries(
    conn: Conn, org: int, endpoint_id: int, before: int | None, limit: int
) -> list[DeliveryRow]:
    cur = conn.cursor(row_factory=args_row(DeliveryRow))
    await cur.execute(
        f"select {DELIVERY_COLUMNS} from webhook_deliveries d"
        " join webhook_events e on e.id = d.event_id"
        " where d.organization_id = %s and d.endpoint_id = %s and d.id < %s"
        " order by d.id desc limit %s",
        [org, endpoint_id, before if before is not None else 2**63 - 1, limit],
    )
    return await cur.fetchall()


# -- delivery attempts ----------------------------------------------------------------------

LOAD_DELIVERY = """
select d.id, d.status, d.attempts, d.endpoint_id, ep.url, ep.secret, ep.enabled,
       e.id as event_id, e.type, e.created_at as occurred_at, e.data::text as data
from webhook_deliveries d
join webhook_endpoints ep on ep.id = d.endpoint_id
join webhook_events e on e.id = d.event_id
where d.id = %s
"""


async def load_delivery(conn: Conn, delivery_id: int) -> DeliveryToSend | None:
    """A delivery with what an attempt needs: the endpoint's URL and secret, the event."""
    cur = conn.cursor(row_factory=class_row(DeliveryToSend))
    await cur.execute(LOAD_DELIVERY, [delivery_id])
    return await cur.fetchone()


async def cancel_delivery(conn: Conn, delivery_id: int, reason: str) -> None:
    await conn.execute(
        "update webhook_deliveries set status = 'cancelled', last_error = %s,"
        " next_attempt_at = null, updated_at = now() where id = %s and status = 'pending'",
        [reason, delivery_id],
    )


async def record_attempt(
    conn: Conn,
    delivery_id: int,
    *,
    delivered: bool,
    status_code: int | None,
    error: str | None,
    next_attempt_at: datetime | None,
) -> bool:
    """Record one attempt's outcome; False if the delivery was no longer pending."""
    cur = await conn.execute(
        """
        update webhook_deliveries set
            status = case when %(delivered)s then 'delivered'
                          when %(next)s::timestamptz is null then 'failed'
                          else 'pending' end,
            attempts = attempts + 1,
            last_status_code = %(code)s,
            last_error = %(error)s,
            next_attempt_at = %(next)s,
            delivered_at = case when %(delivered)s then now() end,
            updated_at = now()
        where id = %(id)s and status = 'pending'
        """,
        {
            "id": delivery_id,
            "delivered": delivered,
            "code": status_code,
            "error": error,
            "next": next_attempt_at,
        },
    )
    return cur.rowcount == 1


async def reset_streak(conn: Conn, endpoint_id: int) -> None:
    # The WHERE makes a healthy endpoint's success a no-op that takes no row lock, so
    # concurrent deliveries to one busy endpoint do not queue on its row.
    await conn.execute(
        "update webhook_endpoints set failing_since = null, consecutive_failures = 0,"
        " updated_at = now()"
        " where id = %s and (failing_since is not null or consecutive_failures > 0)",
        [endpoint_id],
    )


# In SET, every column reference is the row's value before this update.
EXTEND_STREAK = """
update webhook_endpoints set
    consecutive_failures = consecutive_failures + 1,
    failing_since = coalesce(failing_since, now()),
    enabled = enabled
        and coalesce(failing_since, now()) > now() - make_interval(secs => %(after)s),
    disabled_reason = case
        when enabled and coalesce(failing_since, now()) <= now() - make_interval(secs => %(after)s)
        then %(reason)s else disabled_reason end,
    updated_at = now()
where id = %(id)s
returning enabled
"""


async def extend_streak(conn: Conn, endpoint_id: int, disable_after: float, reason: str) -> bool:
    """Count a failed attempt; disables the endpoint past the threshold. Returns enabled."""
    cur = await conn.execute(
        EXTEND_STREAK, {"id": endpoint_id, "after": disable_after, "reason": reason}
    )
    row = await cur.fetchone()
    return bool(row and row[0])
