"""Replaying a webhook delivery: the same event to the same endpoint, once more.

Staff replay a delivery their receiver mishandled (it failed for good, or it was delivered
and lost on the receiver's side). A replay is a new delivery of the same event to the same
endpoint, with its own attempts and retries, enqueued in the caller's transaction; the old
one stays in the log as it was. Receivers see the same ``webhook-id`` (the event's id), so
one that did process the first can tell the replay is a duplicate.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from surge.errors import Conflict, NotFound
from surge.jobs import enqueue
from surge.webhooks import replay_store as store
from surge.webhooks.jobs import DELIVER

Conn = AsyncConnection[Any]
MAX_ID = 2**63 - 1


async def replay(conn: Conn, org: int, endpoint_id: int, delivery_id: int) -> int:
    """A new delivery of delivery ``delivery_id``'s event to its endpoint, with its first
    attempt enqueued, in the caller's transaction; returns the new delivery's id.

    NotFound if the delivery is not the organisation's (or not that endpoint's); Conflict if
    the endpoint is disabled, or a delivery of the event to it is still pending (it is
    being tried already).
    """
    found = None
    if max(endpoint_id, delivery_id) <= MAX_ID:
        found = await store.lock_original(conn, org, endpoint_id, delivery_id)
    if found is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    if not found.enabled:
        raise Conflict(f"webhook endpoint {endpoint_id} is disabled; enable it to replay")
    pending = await store.pending_of(conn, found.event_id, endpoint_id)
    if pending is not None:
        raise Conflict(
            f"delivery {pending} of this event is still being tried; wait for it to finish"
        )
    new_id = await store.insert_delivery(conn, org, endpoint_id, found.event_id)
    await enqueue(conn, DELIVER, {"delivery_id": new_id, "attempt": 1}, organization_id=org)
    return new_id
