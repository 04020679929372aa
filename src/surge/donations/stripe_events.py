"""Stripe's webhook: ``POST /gateway/stripe/webhook``, verified, stored once, handled by a job.

The endpoint is off (404) unless ``SURGE_PAYMENT_GATEWAY=stripe`` and
``SURGE_STRIPE_WEBHOOK_SECRET`` are set. It checks the ``Stripe-Signature`` header (HMAC-SHA256
with the endpoint's signing secret, timestamp at most 5 minutes old; else 400 and nothing
stored), stores the event under its id and, in the same transaction, enqueues its
``donations.stripe_event`` job on the ``critical`` queue; a replayed event id is answered 200
and changes nothing. Stripe gets its 200 as soon as the event is durable; the job calls
Stripe when it needs more (a charge's refunds) and retries on temporary trouble.

Handled: ``payment_intent.succeeded`` / ``payment_intent.payment_failed`` (settle the
donation, see ``reconcile.settle_charge``), ``charge.refunded`` (``record_gateway_refund``
for each of the charge's refunds) and ``charge.dispute.created`` (``record_dispute``). Other
types are stored as ignored. Events about payments Surge did not make are ignored too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol, TypeVar, cast

import msgspec
from psycopg import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from surge.api.decode import decode_json, read_body
from surge.api.responses import json_response
from surge.donations import reconcile, refund_store
from surge.donations.gateway import ChargeResult
from surge.errors import Invalid, NotFound
from surge.jobs import JobContext, enqueue

log = logging.getLogger(__name__)

Conn = AsyncConnection[Any]
#: Applies a handled event inside the job's transaction; says what it did.
Apply = Callable[[Conn], Awaitable[str]]

PATH = "/gateway/stripe/webhook"
SIGNATURE_HEADER = "Stripe-Signature"
#: Oldest signature timestamp accepted, in seconds: Stripe's own libraries' default.
TOLERANCE = 300
#: Stripe's events are a few kilobytes; a charge with its refunds a few more.
MAX_BODY = 1024 * 1024
TASK = "donations.stripe_event"
#: Days a handled event's id is remembered against replays (Stripe resends for 3 days).
RETENTION_DAYS = 30

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
T = TypeVar("T")


# -- Stripe's objects, as much of them as Surge reads (from events and from the API) -------


class PaymentError(msgspec.Struct):
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None


class Intent(msgspec.Struct):
    """A PaymentIntent."""

    id: str
    status: str
    metadata: dict[str, Any] = {}
    last_payment_error: PaymentError | None = None


class StripeRefund(msgspec.Struct):
    id: str
    amount: int
    status: str | None = None
    reason: str | None = None
    failure_reason: str | None = None
    metadata: dict[str, Any] = {}


class RefundPage(msgspec.Struct):
    data: list[StripeRefund] = []
    has_more: bool = False


class Charge(msgspec.Struct):
    id: str
    payment_intent: str | None = None
    status: str | None = None
    paid: bool = False
    #: Absent unless expanded since API version 2022-11-15: then the refunds are listed.
    refunds: RefundPage | None = None


class Dispute(msgspec.Struct):
    id: str
    amount: int
    currency: str
    charge: str | None = None
    payment_intent: str | None = None
    reason: str | None = None
    status: str | None = None


#: Stripe's refund statuses that mean the money is on its way back.
REFUND_MADE = ("succeeded", "pending")


class EventData(msgspec.Struct):
    object: dict[str, Any]


class Event(msgspec.Struct):
    """The envelope of every Stripe event."""

    id: Text
    type: Text
    data: EventData


class StripeLookups(Protocol):
    """What the handlers ask Stripe (``stripe.StripeGateway``)."""

    async def refunds_of_charge(self, charge: Charge) -> list[StripeRefund]: ...

    async def intent_of_charge(self, charge_id: str) -> str | None: ...


def _convert(obj: dict[str, Any], kind: type[T]) -> T:
    """An event's object as one of the structs above; a malformed one is an error of the
    job (retried, then a dead letter to look at), never of the webhook's answer."""
    return msgspec.convert(obj, kind, strict=False)


# -- the endpoint ---------------------------------------------------------------------------


def verify_signature(payload: bytes, header: str | None, secret: str) -> None:
    """Invalid naming the header unless ``payload`` is signed with ``secret`` within the
    tolerance (Stripe's scheme, checked by the official library)."""
    import stripe  # only a process that receives Stripe's webhooks loads the library

    try:
        text = payload.decode()
    except UnicodeDecodeError:
        raise Invalid(
            SIGNATURE_HEADER, "the body is not UTF-8, so not what Stripe signed"
        ) from None
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance=TOLERANCE)
    except stripe.SignatureVerificationError as exc:
        raise Invalid(
            SIGNATURE_HEADER, f"the signature does not verify: {exc.user_message or exc}"
        ) from None


async def webhook(request: Request) -> Response:
    settings = request.app.state.settings
    secret = settings.stripe_webhook_secret
    if settings.payment_gateway != "stripe" or not secret:
        raise NotFound("Stripe webhooks are not configured (SURGE_STRIPE_WEBHOOK_SECRET)")
    body = await read_body(request, MAX_BODY)
    verify_signature(body, request.headers.get(SIGNATURE_HEADER), secret)
    event = decode_json(body, Event)
    handled = event.type in HANDLERS
    async with request.app.state.pool.connection() as conn, conn.transaction():
        new = await refund_store.insert_stripe_event(
            conn, event.id, event.type, body.decode(), None if handled else "ignored: type"
        )
        if new and handled:
            await enqueue(conn, TASK, {"event_id": event.id}, queue="critical")
    return json_response({"received": True, "replayed": not new})


routes = [Route(PATH, webhook, methods=["POST"])]


# -- handling (the job) ---------------------------------------------------------------------


async def handle(ctx: JobContext, event_id: str) -> None:
    """Handle one stored event, once: its effects, its ``handled_at`` and the job's
    completion commit together."""
    async with ctx.pool.connection() as conn:
        event = await refund_store.stripe_event(conn, event_id)
    if event is None or event.handled_at is not None:
        return
    gateway = ctx.resources.gateway
    handler = HANDLERS.get(event.type)
    obj = event.payload.get("data", {}).get("object", {})
    if handler is None or gateway.name != "stripe":
        apply = _says("ignored: the payment gateway is not stripe")
    else:
        apply = await handler(cast(StripeLookups, gateway), obj)
    async with ctx.pool.connection() as conn, conn.transaction():
        outcome = await apply(conn)
        await refund_store.mark_stripe_event(conn, event_id, outcome)
        await ctx.complete_in(conn)
    log.info(
        "stripe event handled", extra={"event": event_id, "type": event.type, "outcome": outcome}
    )


def _says(outcome: str) -> Apply:
    async def apply(conn: Conn) -> str:
        return outcome

    return apply


async def _charge_key(conn: Conn, intent: str | None) -> str | None:
    return await refund_store.key_of_intent(conn, intent) if intent else None


async def payment_succeeded(gateway: StripeLookups, obj: dict[str, Any]) -> Apply:
    intent = _convert(obj, Intent)

    async def apply(conn: Conn) -> str:
        key = await _charge_key(conn, intent.id)
        if key is None:
            return "ignored: not a Surge payment"
        result = ChargeResult("succeeded", reference=intent.id)
        return await reconcile.settle_charge(conn, key, result)

    return apply


async def payment_failed(gateway: StripeLookups, obj: dict[str, Any]) -> Apply:
    intent = _convert(obj, Intent)
    error = intent.last_payment_error or PaymentError()

    async def apply(conn: Conn) -> str:
        key = await _charge_key(conn, intent.id)
        if key is None:
            return "ignored: not a Surge payment"
        reason = error.decline_code or error.code or "declined"
        return await reconcile.settle_charge(conn, key, ChargeResult("declined", reason=reason))

    return apply


async def charge_refunded(gateway: StripeLookups, obj: dict[str, Any]) -> Apply:
    charge = _convert(obj, Charge)
    made = [r for r in await gateway.refunds_of_charge(charge) if r.status in REFUND_MADE]

    async def apply(conn: Conn) -> str:
        key = await _charge_key(conn, charge.payment_intent)
        if key is None:
            return "ignored: not a Surge payment"
        said = []
        if charge.paid or charge.status == "succeeded":  # it was charged, whatever we knew
            paid = ChargeResult("succeeded", reference=charge.payment_intent)
            said.append(await reconcile.settle_charge(conn, key, paid))
        for refund in reversed(made):  # Stripe lists the newest first
            seen = reconcile.GatewayRefund(
                refund.id, refund.amount, refund.reason, refund.metadata.get("surge_key")
            )
            said.append(await reconcile.record_gateway_refund(conn, key, seen))
        return "; ".join(said)

    return apply


async def dispute_created(gateway: StripeLookups, obj: dict[str, Any]) -> Apply:
    dispute = _convert(obj, Dispute)
    intent = dispute.payment_intent
    if intent is None and dispute.charge:
        intent = await gateway.intent_of_charge(dispute.charge)

    async def apply(conn: Conn) -> str:
        key = await _charge_key(conn, intent)
        if key is None:
            return "ignored: not a Surge payment"
        seen = reconcile.GatewayDispute(
            dispute.id, dispute.amount, dispute.currency, dispute.reason, dispute.status
        )
        return await reconcile.record_dispute(conn, key, seen)

    return apply


#: Event type → what reads the gateway first (outside any transaction), returning what
#: then applies the event inside one.
HANDLERS: dict[str, Callable[[StripeLookups, dict[str, Any]], Awaitable[Apply]]] = {
    "payment_intent.succeeded": payment_succeeded,
    "payment_intent.payment_failed": payment_failed,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": dispute_created,
}
