"""Webhooks: what other domains call (``emit``) and the rules of endpoints and deliveries.

``emit`` writes the event to an outbox inside the caller's transaction (the event exists iff
the caller's change commits); the relay (``jobs.relay``) turns outbox rows into deliveries and
delivery jobs, which POST signed requests and retry on the schedule in ``delivery``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec
from psycopg import AsyncConnection

from surge.config import Settings
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import decode_cursor, next_cursor
from surge.observability.tracing import current_traceparent
from surge.retry import Backoff, parse_steps
from surge.webhooks import signing, store
from surge.webhooks.schemas import (
    Delivery,
    DeliveryPage,
    Endpoint,
    EndpointCreated,
    EndpointIn,
    EndpointList,
    EndpointPatch,
)

Conn = AsyncConnection[Any]
T = TypeVar("T")

EVENT_TYPE = re.compile(r"^[a-z]+(\.[a-z_]+)+$")

_encode = msgspec.json.Encoder().encode


async def emit(conn: Conn, organization_id: int, event_type: str, data: dict[str, Any]) -> None:
    """Announce ``event_type`` with ``data`` to the organisation's subscribed endpoints.

    Call it inside the transaction that makes the change: one INSERT on ``conn``, no HTTP,
    no per-endpoint work, so the event is delivered if and only if that transaction commits.
    If no enabled endpoint of the organisation subscribes to the type, nothing is written.
    ``data`` must be JSON-encodable; a malformed type or data is a programming error
    (``ValueError`` / ``TypeError``), raised before anything touches the database.
    """
    _check_type(event_type)
    # Its deliveries continue the trace of the change that emitted it (none when untraced).
    data_text = _encode(data).decode()
    await store.insert_event(conn, organization_id, event_type, data_text, current_traceparent())


async def emit_many(
    conn: Conn, events: Sequence[tuple[int, str, T]], data: Callable[[T], dict[str, Any]]
) -> None:
    """``emit`` of many (organisation, event type, subject), in this order, each with
    ``data(subject)`` as its data: one read of the organisations' subscriptions, then one
    INSERT of the events someone subscribes to. ``data`` is called for those only (a giving
    day's charges are mostly of organisations without endpoints: nothing is encoded)."""
    if not events:
        return
    for _, event_type, _ in events:
        _check_type(event_type)
    subscribed = await store.subscriptions(conn, sorted({org for org, _, _ in events}))
    wanted = [
        (org, event_type, _encode(data(subject)).decode())
        for org, event_type, subject in events
        if any(event_type in types or "*" in types for types in subscribed.get(org, ()))
    ]
    if wanted:
        await store.insert_events(conn, wanted, current_traceparent())


def _check_type(event_type: str) -> None:
    if not EVENT_TYPE.match(event_type):
        raise ValueError(f"webhook event type {event_type!r} must look like 'donation.succeeded'")


# -- retry schedule and the disable rule ----------------------------------------------------

#: Seconds to wait after failed attempt 1, 2, …; one attempt more than entries (12 in all),
#: spanning ~2.8 days: the Standard Webhooks (Svix) schedule, with 10 h steps until then.
DEFAULT_SCHEDULE = "5,300,1800,7200,18000,36000,36000,36000,36000,36000,36000"
#: Each delay is multiplied by uniform(1 - JITTER, 1 + JITTER).
JITTER = 0.2


def parse_schedule(text: str) -> tuple[float, ...]:
    """``"5,300,1800"`` → (5.0, 300.0, 1800.0): seconds to wait after each failed attempt."""
    return parse_steps(text, "webhook retry schedule")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed delivery is tried again, and when its endpoint is disabled."""

    #: Waits after each failed attempt; past its end the delivery has failed for good.
    schedule: Backoff
    #: An endpoint whose attempts have all failed for this many seconds (since the first
    #: failure after its last success) is disabled at its next failed attempt.
    disable_after: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """SURGE_WEBHOOK_RETRY_SCHEDULE (default: ``DEFAULT_SCHEDULE``) and _DISABLE_AFTER."""
        steps = parse_schedule(settings.webhook_retry_schedule or DEFAULT_SCHEDULE)
        return cls(Backoff(steps=steps, jitter=JITTER), settings.webhook_disable_after)


def next_attempt_delay(attempts: int, schedule: Backoff) -> float | None:
    """Seconds until the next attempt after ``attempts`` failed ones; None means give up."""
    return schedule.after(attempts) if schedule.steps else None


def disabled_reason(disable_after: float) -> str:
    days = disable_after / 86400
    span = f"{days:g} days" if days >= 1 else f"{disable_after:g} seconds"
    return f"every delivery attempt failed for {span}; PATCH enabled=true to re-enable"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one HTTP attempt came to: a status code, or an error (timeout, refused …)."""

    status_code: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def record_outcome(
    conn: Conn,
    delivery: store.DeliveryToSend,
    outcome: Outcome,
    policy: RetryPolicy,
    *,
    now: datetime | None = None,
) -> datetime | None:
    """Record an attempt on the delivery and its endpoint's failure streak.

    Run it in the transaction that completes the delivery job. A success resets the
    streak; a failure extends it and may disable the endpoint (``policy.disable_after``). Returns
    when to try again, or None when the delivery is finished (delivered, failed for good,
    or its endpoint was just disabled).
    """
    if outcome.delivered:
        await store.record_attempt(
            conn,
            delivery.id,
            delivered=True,
            status_code=outcome.status_code,
            error=None,
            next_attempt_at=None,
        )
        await store.reset_streak(conn, delivery.endpoint_id)
        return None
    disable_after = policy.disable_after
    enabled = await store.extend_streak(
        conn, delivery.endpoint_id, disable_after, disabled_reason(disable_after)
    )
    delay = next_attempt_delay(delivery.attempts + 1, policy.schedule) if enabled else None
    retry_at = None
    if delay is not None:
        retry_at = (now or datetime.now(UTC)) + timedelta(seconds=delay)
    error = outcome.error or f"HTTP {outcome.status_code}"
    if not enabled:
        error += "; endpoint disabled"
    await store.record_attempt(
        conn,
        delivery.id,
        delivered=False,
        status_code=outcome.status_code,
        error=error[:1000],
        next_attempt_at=retry_at,
    )
    return retry_at


async def load_delivery(conn: Conn, delivery_id: int) -> store.DeliveryToSend | None:
    """A pending delivery with its endpoint (url, secret, enabled) and event; else None."""
    row = await store.load_delivery(conn, delivery_id)
    return row if row is not None and row.status == "pending" else None


async def cancel_delivery(conn: Conn, delivery_id: int, reason: str) -> None:
    """Give up a pending delivery without an attempt (its endpoint is disabled)."""
    await store.cancel_delivery(conn, delivery_id, reason)


async def relay(conn: Conn, limit: int) -> store.Relayed:
    """Turn up to ``limit`` outbox events into deliveries, in the caller's transaction.

    Returns how many events were relayed and the new deliveries with their organisations;
    the caller enqueues one delivery job per delivery in the same transaction.
    """
    return await store.relay(conn, limit)


# -- endpoints ----------------------------------------------------------------------------

#: Every type Surge announces; an endpoint subscribes to some of them, or to ``*``.
EVENT_TYPES = frozenset(
    {
        "contact.deleted",
        "contact.unsubscribed",
        "contact.updated",
        "donation.disputed",
        "donation.failed",
        "donation.refund_failed",
        "donation.refunded",
        "donation.succeeded",
        "event.received",
        "export.completed",
        "export.failed",
        "import.completed",
        "import.failed",
        "journey.step",
        "message.completed",
        "recurring.cancelled",
        "recurring.created",
        "recurring.failed",
    }
)
#: Endpoints per organisation: every event of a subscribed type costs one delivery each.
MAX_ENDPOINTS = 50
MAX_ID = 2**63 - 1
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def check_event_types(types: list[str]) -> list[str]:
    """The distinct types, sorted; Invalid naming the first one Surge never sends."""
    for index, name in enumerate(types):
        if name != "*" and name not in EVENT_TYPES:
            known = ", ".join(sorted(EVENT_TYPES))
            raise Invalid(f"event_types[{index}]", f"unknown event type {name!r}; one of: {known}")
    return sorted(set(types))


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host, or ``Invalid("url")``."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        raise Invalid("url", "url is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise Invalid("url", "url must be an http or https URL")
    if not parts.hostname:
        raise Invalid("url", "url must name a host")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise Invalid("url", "url must not contain spaces or control characters")
    return url


async def create_endpoint(conn: Conn, org: int, body: EndpointIn) -> EndpointCreated:
    """Register an endpoint; its signing secret is returned here and never again."""
    url = check_url(body.url)
    if await store.count_endpoints(conn, org) >= MAX_ENDPOINTS:
        raise Conflict(f"an organisation may have at most {MAX_ENDPOINTS} webhook endpoints")
    row = await store.insert_endpoint(
        conn,
        org,
        {
            "url": url,
            "description": body.description,
            "event_types": check_event_types(body.event_types),
            "secret": signing.new_secret(),
        },
    )
    return row


async def list_endpoints(conn: Conn, org: int) -> EndpointList:
    """Every endpoint of the organisation (there are at most ``MAX_ENDPOINTS``)."""
    return EndpointList(await store.list_endpoints(conn, org))


async def get_endpoint(conn: Conn, org: int, endpoint_id: int) -> Endpoint:
    """One endpoint with its state; another organisation's is NotFound."""
    row = await store.get_endpoint(conn, org, endpoint_id) if endpoint_id <= MAX_ID else None
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return row


async def update_endpoint(conn: Conn, org: int, endpoint_id: int, patch: EndpointPatch) -> Endpoint:
    """Change url, event types, description or enabled; re-enabling clears the streak."""
    values: dict[str, Any] = {
        "url": None if patch.url is msgspec.UNSET else check_url(patch.url),
        "event_types": (
            None if patch.event_types is msgspec.UNSET else check_event_types(patch.event_types)
        ),
        "set_description": patch.description is not msgspec.UNSET,
        "description": None if patch.description is msgspec.UNSET else patch.description,
        "enabled": None if patch.enabled is msgspec.UNSET else patch.enabled,
        "reason": "disabled through the API",
    }
    row = None
    if endpoint_id <= MAX_ID:
        row = await store.update_endpoint(conn, org, endpoint_id, values)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return row


async def delete_endpoint(conn: Conn, org: int, endpoint_id: int) -> None:
    """Delete an endpoint with its delivery log; pending deliveries are dropped."""
    if endpoint_id > MAX_ID or not await store.delete_endpoint(conn, org, endpoint_id):
        raise NotFound(f"webhook endpoint {endpoint_id} not found")


def event_id(event_row_id: int) -> str:
    """The public id of an event: the ``webhook-id`` header, stable across retries."""
    return f"evt_{event_row_id}"


def _delivery(row: store.DeliveryRow) -> Delivery:
    return Delivery(
        id=row.id,
        event_id=event_id(row.event_id),
        event_type=row.event_type,
        status=row.status,
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivered_at=row.delivered_at,
    )


async def list_deliveries(
    conn: Conn, org: int, endpoint_id: int, *, after: str | None, limit: int
) -> DeliveryPage:
    """One page of an endpoint's delivery log, newest first."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid("limit", f"limit must be between 1 and {MAX_LIMIT}")
    before = decode_cursor(after) if after else None
    await get_endpoint(conn, org, endpoint_id)  # NotFound for another tenant's endpoint
    rows = await store.list_deliveries(conn, org, endpoint_id, before, limit)
    data = [_delivery(row) for row in rows]
    return DeliveryPage(data, next_cursor([d.id for d in data], limit))
