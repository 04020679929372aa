"""Webhook tasks: the relay (outbox → deliveries) and one delivery attempt per job.

The relay is periodic (``every=1``; the maintenance leader enqueues it on each heartbeat
tick, ~2 s) and each run keeps relaying for ``RELAY_WINDOW`` seconds, polling every
``RELAY_POLL`` when the outbox is empty, so there is nearly always one relay running and an
event waits ~0.25 s, not a whole tick, before its first attempt. Two relays overlapping is
harmless: they claim disjoint events with SKIP LOCKED.

A delivery job makes one HTTP attempt, then records the outcome, enqueues the next attempt
(``run_at`` from the retry schedule) and completes itself, all in one transaction.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC
from typing import Any

import httpx
import msgspec

from surge.jobs import JobContext, NewJob, enqueue, enqueue_many, task
from surge.observability import tracing
from surge.observability.metrics import webhook_attempt
from surge.webhooks import service, signing
from surge.webhooks.store import DeliveryToSend

RELAY_BATCH = 1000
RELAY_WINDOW = 2.0
RELAY_POLL = 0.25
#: The whole attempt (connect, send, response headers and the bit of body we read).
TIMEOUT = 10.0
#: Of a response body, only this much is read (to reuse the connection) and 200 bytes kept.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Surge-Webhooks/1"

DELIVER = "webhooks.deliver"


def new_client() -> httpx.AsyncClient:
    """The HTTP client of a worker process's deliveries (``Resources.webhooks``)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(TIMEOUT),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        headers={"user-agent": USER_AGENT},
    )


@task("webhooks.relay", queue="default", every=1, max_attempts=1)
async def relay(ctx: JobContext) -> None:
    deadline = time.monotonic() + RELAY_WINDOW
    while time.monotonic() < deadline:
        async with ctx.pool.connection() as conn, conn.transaction():
            relayed = await service.relay(conn, RELAY_BATCH)
            if relayed.delivery_ids:
                await enqueue_many(
                    conn,
                    (
                        NewJob(
                            DELIVER,
                            {"delivery_id": i, "attempt": 1},
                            organization_id=o,
                            traceparent=t,  # the trace of the change that emitted the event
                        )
                        for i, o, t in zip(
                            relayed.delivery_ids,
                            relayed.organization_ids,
                            relayed.traceparents,
                            strict=True,
                        )
                    ),
                )
        if relayed.events < RELAY_BATCH:
            await asyncio.sleep(RELAY_POLL)


_encode = msgspec.json.Encoder().encode


def payload(delivery: DeliveryToSend) -> bytes:
    """The body: ``{"type", "timestamp", "data"}``, data copied as stored (no re-parse)."""
    return _encode(
        {
            "type": delivery.type,
            "timestamp": delivery.occurred_at.astimezone(UTC),
            "data": msgspec.Raw(delivery.data.encode()),
        }
    )


async def attempt(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> service.Outcome:
    """One POST; never raises for what the receiver or the network does."""
    try:
        async with (
            asyncio.timeout(TIMEOUT),
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            excerpt = await _read_some(response)
    except TimeoutError:
        return service.Outcome(None, f"timed out after {TIMEOUT:g} s")
    except httpx.HTTPError as exc:
        return service.Outcome(None, f"{type(exc).__name__}: {exc}"[:500] or "HTTP error")
    if 200 <= response.status_code < 300:
        return service.Outcome(response.status_code, None)
    return service.Outcome(response.status_code, f"HTTP {response.status_code}: {excerpt}")


def _span_attributes(delivery: DeliveryToSend) -> dict[str, Any]:
    # Host and port only: a webhook URL's path and query often carry the receiver's secret.
    url = httpx.URL(delivery.url)
    return {
        "http.request.method": "POST",
        "url.scheme": url.scheme,
        "server.address": url.host,
        "server.port": url.port or (443 if url.scheme == "https" else 80),
        "surge.webhook.delivery_id": delivery.id,
        "surge.webhook.endpoint_id": delivery.endpoint_id,
        "surge.webhook.event_type": delivery.type,
        "surge.webhook.attempt": delivery.attempts + 1,
    }


def _record(span: tracing.Span, outcome: service.Outcome) -> None:
    if outcome.status_code is not None:
        span.set_attribute("http.response.status_code", outcome.status_code)
    if outcome.error is not None:
        kind = str(outcome.status_code) if outcome.status_code is not None else "network"
        span.set_attribute("error.type", kind)
        span.set_status(tracing.Status(tracing.StatusCode.ERROR))


async def _read_some(response: httpx.Response) -> str:
    received = b""
    async for chunk in response.aiter_raw():
        received += chunk
        if len(received) >= MAX_RESPONSE_BYTES:
            break
    return received[:200].decode("utf-8", "replace")


@task(DELIVER, queue="default", max_attempts=5)
async def deliver(ctx: JobContext) -> None:
    delivery_id = int(ctx.job.args["delivery_id"])
    async with ctx.pool.connection() as conn:
        delivery = await service.load_delivery(conn, delivery_id)
    # Gone (endpoint deleted), finished, or a stale job of an attempt already recorded.
    if delivery is None or delivery.attempts + 1 != ctx.job.args.get("attempt", 1):
        return
    if not delivery.enabled:
        async with ctx.pool.connection() as conn:
            await service.cancel_delivery(conn, delivery_id, "endpoint disabled")
        return
    body = payload(delivery)
    msg_id = service.event_id(delivery.event_id)
    headers = signing.headers(delivery.secret, msg_id, int(time.time()), body)
    with tracing.span("POST", tracing.CLIENT) as span:
        if span.is_recording():
            span.set_attributes(_span_attributes(delivery))
        tracing.inject(headers)  # the receiver's spans continue ours
        outcome = await attempt(ctx.resources.webhooks, delivery.url, body, headers)
        if span.is_recording():
            _record(span, outcome)
    async with ctx.pool.connection() as conn, conn.transaction():
        policy = service.RetryPolicy.from_settings(ctx.settings)
        retry_at = await service.record_outcome(conn, delivery, outcome, policy)
        if retry_at is not None:
            await enqueue(
                conn,
                DELIVER,
                {"delivery_id": delivery_id, "attempt": delivery.attempts + 2},
                run_at=retry_at,
                organization_id=ctx.job.organization_id,
            )
        await ctx.complete_in(conn)
    webhook_attempt(outcome.delivered, retry_at is not None, delivery.occurred_at)
