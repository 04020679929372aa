"""The Stripe gateway: donations charged as PaymentIntents, refunds, and what webhooks need.

A charge is two steps, so that no re-run ever charges twice, whatever Stripe remembers:
1. the PaymentIntent for the charge key is created (unconfirmed: nothing is charged) with
   Stripe's Idempotency-Key ``<key>:create``, and its id recorded in
   ``stripe_payment_intents`` under our key (the first one recorded wins);
2. that recorded PaymentIntent is confirmed with ``<key>:confirm``. A re-run confirms the
   same one: Stripe answers the first confirmation again, or, once its idempotency keys
   have expired (24 h: think of ``surge jobs retry`` days later) or on a test server without
   them, refuses to confirm it twice, and we read its status instead.
A refund is looked up by its key in the PaymentIntent's refunds (metadata ``surge_key``)
before one is created with ``<key>:refund``, for the same reason.

Errors: a card decline is ``declined`` with Stripe's decline code (``insufficient_funds``
…, else the error code); rate limits, connection errors, timeouts, 409s and 5xx raise
``GatewayUnavailable`` (the job retries with the same keys); a refused API key raises
``GatewayMisconfigured`` (the job is discarded and logged: retrying cannot help); any
other refusal is a decline with Stripe's error code.

The library (``stripe``, official) talks over its httpx client with no retries of its own:
the job engine's backoff does that, with the same keys.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, TypeVar

import msgspec
import stripe
from psycopg_pool import AsyncConnectionPool

from surge.config import ConfigError, Settings
from surge.donations.gateway import (
    ChargeResult,
    GatewayMisconfigured,
    GatewayUnavailable,
    RefundResult,
)
from surge.donations.refund_store import known_intent, remember_intent
from surge.donations.stripe_events import REFUND_MADE, Charge, Intent, PaymentError, StripeRefund

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds one Stripe request may take before it counts as a temporary failure.
TIMEOUT = 30.0
#: Currencies whose minor unit at Stripe is not ISO 4217's (Surge's): Stripe takes ariary as
#: zero-decimal, ISO (and so ``amount``) counts hundredths. Refused rather than mis-charged.
UNLIKE_ISO = frozenset({"MGA"})
#: Stripe's longest Idempotency-Key.
MAX_STRIPE_KEY = 255
#: Our refund reasons Stripe knows; ``other`` is sent without one (it is in the metadata).
STRIPE_REFUND_REASONS = {
    "duplicate": "duplicate",
    "fraudulent": "fraudulent",
    "requested_by_customer": "requested_by_customer",
}


def as_struct(obj: stripe.StripeObject, kind: type[T]) -> T:
    """A Stripe library object as one of the structs of ``stripe_events``."""
    return msgspec.convert(obj.to_dict(), kind, strict=False)


# -- keys, parameters and errors ----------------------------------------------------------


def stripe_key(key: str, step: str) -> str:
    """Stripe's Idempotency-Key for ``step`` of our ``key``: at most 255 characters."""
    full = f"{key}:{step}"
    if len(full) <= MAX_STRIPE_KEY:
        return full
    return f"sha256:{hashlib.sha256(key.encode()).hexdigest()}:{step}"


def intent_params(
    amount: int, currency: str, token: str, key: str, description: str
) -> dict[str, Any]:
    """The PaymentIntent for a charge: card payment methods, confirmed in step 2.

    ``description`` goes to the metadata, not to Stripe's ``description``: the test
    server (localstripe) refuses that parameter, and the metadata shows in the dashboard.
    """
    return {
        "amount": amount,
        "currency": currency.lower(),
        "payment_method": token,
        "payment_method_types": ["card"],
        "metadata": {"surge_key": key, "description": description[:500]},
    }


def refund_params(reference: str, amount: int, reason: str, key: str) -> dict[str, Any]:
    """A refund of the PaymentIntent ``reference``, with Stripe's reason when it has ours."""
    params: dict[str, Any] = {
        "payment_intent": reference,
        "amount": amount,
        "metadata": {"surge_key": key, "surge_reason": reason},
    }
    if reason in STRIPE_REFUND_REASONS:
        params["reason"] = STRIPE_REFUND_REASONS[reason]
    return params


def decline_reason(exc: stripe.StripeError) -> str:
    """Stripe's decline code (``insufficient_funds``) when it gives one, else its code."""
    error = exc.error
    code = getattr(error, "decline_code", None) if error is not None else None
    return str(code or exc.code or "card_declined")


def classify(exc: stripe.StripeError) -> str:
    """The reason of a permanent refusal; raises for temporary trouble and a refused key."""
    status = exc.http_status or 0
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        raise GatewayMisconfigured(
            f"Stripe refuses the API key (SURGE_STRIPE_SECRET_KEY): {exc.user_message or exc}"
        ) from exc
    if isinstance(exc, stripe.IdempotencyError):
        return "idempotency_key_reused"
    temporary = (stripe.RateLimitError, stripe.APIConnectionError, stripe.APIError)
    if isinstance(exc, temporary) or status >= 500 or status in (409, 429) or not status:
        raise GatewayUnavailable(f"Stripe: {type(exc).__name__}: {exc.user_message or exc}")
    if isinstance(exc, stripe.CardError):
        return decline_reason(exc)
    return str(exc.code or "invalid_request")


# -- the gateway ----------------------------------------------------------------------------


class StripeGateway:
    """Charges and refunds at Stripe (see the module docstring)."""

    name = "stripe"

    def __init__(self, settings: Settings, pool: AsyncConnectionPool) -> None:
        if not settings.stripe_secret_key:
            raise ConfigError("SURGE_PAYMENT_GATEWAY=stripe needs SURGE_STRIPE_SECRET_KEY")
        self.pool = pool
        self._http = stripe.HTTPXClient(timeout=TIMEOUT)
        self.client = stripe.StripeClient(
            settings.stripe_secret_key,
            base_addresses={"api": settings.stripe_api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=0,
        )

    async def aclose(self) -> None:
        """Close the HTTP connections to Stripe."""
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # charge ------------------------------------------------------------------------------

    async def charge(
        self, *, amount: int, currency: str, token: str, idempotency_key: str, description: str
    ) -> ChargeResult:
        """Create (once) and confirm (once) the PaymentIntent of ``idempotency_key``."""
        if currency in UNLIKE_ISO:
            return ChargeResult("declined", reason="currency_not_supported")
        try:
            intent = await self._intent(amount, currency, token, idempotency_key, description)
            if intent is None:
                return ChargeResult("declined", reason="idempotency_key_reused")
            return await self._confirm(intent, idempotency_key)
        except stripe.StripeError as exc:
            return ChargeResult("declined", reason=classify(exc))

    async def _intent(
        self, amount: int, currency: str, token: str, key: str, description: str
    ) -> str | None:
        """The key's PaymentIntent, created if it has none; None if it was for another sum."""
        async with self.pool.connection() as conn:
            known = await known_intent(conn, key)
        if known is not None:
            intent, known_amount, known_currency = known
            return intent if (known_amount, known_currency) == (amount, currency) else None
        created = await self.client.v1.payment_intents.create_async(
            intent_params(amount, currency, token, key, description),  # type: ignore[arg-type]
            {"idempotency_key": stripe_key(key, "create")},
        )
        async with self.pool.connection() as conn:
            return await remember_intent(conn, key, created.id, amount, currency)

    async def _confirm(self, intent_id: str, key: str) -> ChargeResult:
        try:
            confirmed = await self.client.v1.payment_intents.confirm_async(
                intent_id, None, {"idempotency_key": stripe_key(key, "confirm")}
            )
        except stripe.CardError as exc:
            return ChargeResult("declined", reason=decline_reason(exc))
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 409:
                raise GatewayUnavailable(f"Stripe: {exc.user_message or exc}") from exc
            # Confirmed before (a re-run), or not confirmable: its state says what happened.
            confirmed = await self.client.v1.payment_intents.retrieve_async(intent_id)
            if confirmed.status == "requires_confirmation":
                return ChargeResult("declined", reason=str(exc.code or "invalid_request"))
        return await self._outcome(as_struct(confirmed, Intent), key)

    async def _outcome(self, intent: Intent, key: str) -> ChargeResult:
        if intent.status == "succeeded":
            return ChargeResult("succeeded", reference=intent.id)
        if intent.status == "requires_payment_method":
            error = intent.last_payment_error or PaymentError()
            return ChargeResult("declined", reason=error.decline_code or error.code or "declined")
        if intent.status == "canceled":
            return ChargeResult("declined", reason="canceled")
        if intent.status == "requires_action":
            # 3-D Secure needs the donor, who is gone: let the payment go rather than dangle.
            await self._cancel(intent.id, key)
            return ChargeResult("declined", reason="authentication_required")
        # processing (or anything new): not final yet; the webhook or a later run settles it.
        raise GatewayUnavailable(f"Stripe: payment intent {intent.id} is {intent.status}")

    async def _cancel(self, intent_id: str, key: str) -> None:
        try:
            await self.client.v1.payment_intents.cancel_async(
                intent_id, None, {"idempotency_key": stripe_key(key, "cancel")}
            )
        except stripe.StripeError as exc:
            log.warning(
                "payment intent not cancelled", extra={"intent": intent_id, "error": str(exc)}
            )

    # refund ------------------------------------------------------------------------------

    async def refund(
        self, *, reference: str, amount: int, reason: str, idempotency_key: str
    ) -> RefundResult:
        """Refund ``amount`` of the PaymentIntent ``reference`` once per key."""
        try:
            made = await self._refund_made(reference, idempotency_key)
            if made is None:
                created = await self.client.v1.refunds.create_async(
                    refund_params(reference, amount, reason, idempotency_key),  # type: ignore[arg-type]
                    {"idempotency_key": stripe_key(idempotency_key, "refund")},
                )
                made = as_struct(created, StripeRefund)
        except stripe.StripeError as exc:
            return RefundResult("failed", reason=classify(exc))
        if made.amount != amount:
            return RefundResult("failed", reason="idempotency_key_reused")
        if made.status in REFUND_MADE:
            return RefundResult("succeeded", reference=made.id)
        return RefundResult("failed", reason=made.failure_reason or made.status or "failed")

    async def _refund_made(self, intent: str, key: str) -> StripeRefund | None:
        """The refund of ``intent`` an earlier run made under ``key``, if any."""
        for refund in await self._refunds({"payment_intent": intent}):
            if refund.metadata.get("surge_key") == key:
                return refund
        return None

    async def _refunds(self, params: dict[str, Any]) -> list[StripeRefund]:
        page = await self.client.v1.refunds.list_async({**params, "limit": 100})  # type: ignore[arg-type]
        return [as_struct(r, StripeRefund) async for r in page.auto_paging_iter()]

    # what the webhook handlers look up -----------------------------------------------------

    async def refunds_of_charge(self, charge: Charge) -> list[StripeRefund]:
        """Every refund of ``charge``: from the event when it carries them all, else listed."""
        if charge.refunds is not None and not charge.refunds.has_more:
            return charge.refunds.data
        try:
            return await self._refunds({"charge": charge.id})
        except stripe.StripeError as exc:
            log.warning("refunds not listed", extra={"charge": charge.id, "error": classify(exc)})
            return []

    async def intent_of_charge(self, charge_id: str) -> str | None:
        """The PaymentIntent of a charge (a dispute names only the charge in old versions)."""
        try:
            charge = await self.client.v1.charges.retrieve_async(charge_id)
        except stripe.StripeError as exc:
            log.warning("charge not read", extra={"charge": charge_id, "error": classify(exc)})
            return None
        return as_struct(charge, Charge).payment_intent
