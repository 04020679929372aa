"""The jobs that talk to the payment gateway after a charge, on the ``critical`` queue:
refunds, and the gateway's webhook events (with their daily prune).

Exactly once, as for charges (``jobs.py``): the refund is asked for with a key fixed per
refund, so a re-run gets the first refund back; its outcome, totals, donation status,
webhook event and the job's completion commit together. A refused API key discards the job
with an error in the log (``surge jobs retry`` resumes it once the key is mended) rather
than retrying for hours.
"""

from __future__ import annotations

import logging

from surge.donations import refund_store, refunds, stripe_events
from surge.donations.gateway import GatewayMisconfigured, GatewayUnavailable, RefundResult
from surge.donations.jobs import charge_backoff
from surge.jobs import JobContext, task
from surge.observability import tracing

log = logging.getLogger(__name__)


@task("donations.refund", queue="critical", max_attempts=8, backoff=charge_backoff)
async def refund(ctx: JobContext) -> None:
    """Ask the gateway for a pending refund once, then record the outcome atomically."""
    refund_id = int(ctx.job.args["refund_id"])
    async with ctx.pool.connection() as conn:
        found = await refund_store.refund_to_send(conn, refund_id)
    if found is None or found.status != "pending":
        return  # final already (a duplicate run, or the gateway's webhook came first)
    if found.charge_reference is None:
        result = RefundResult("failed", reason="charge_not_found")
    else:
        gateway = ctx.resources.gateway
        attributes = {
            "payment.gateway": gateway.name,
            "payment.amount_minor": found.amount,
            "surge.refund_id": refund_id,
            "surge.donation_id": found.donation_id,
        }
        try:
            with tracing.span("payment.refund", tracing.CLIENT, attributes) as span:
                result = await gateway.refund(
                    reference=found.charge_reference,
                    amount=found.amount,
                    reason=found.reason,
                    idempotency_key=refunds.refund_key(found.organization_id, refund_id),
                )
                span.set_attribute("payment.outcome", result.status)
        except GatewayUnavailable as exc:
            if ctx.job.attempt < ctx.job.max_attempts:
                raise  # retried with charge_backoff
            log.warning("refund gave up", extra={"refund": refund_id, "error": str(exc)})
            result = RefundResult("failed", reason="gateway_unavailable")
        except GatewayMisconfigured as exc:
            log.error("refund discarded", extra={"refund": refund_id, "error": str(exc)})
            await ctx.discard(str(exc))
            return
    async with ctx.pool.connection() as conn, conn.transaction():
        await refunds.finish_refund(conn, found.organization_id, refund_id, result)
        await ctx.complete_in(conn)


@task(stripe_events.TASK, queue="critical", max_attempts=12, backoff=charge_backoff)
async def stripe_event(ctx: JobContext) -> None:
    """Handle one of Stripe's webhook events (``stripe_events.handle``)."""
    try:
        await stripe_events.handle(ctx, str(ctx.job.args["event_id"]))
    except GatewayMisconfigured as exc:
        log.error("stripe event discarded", extra={"job": ctx.job.id, "error": str(exc)})
        await ctx.discard(str(exc))


@task("donations.stripe_events_prune", queue="default", every=24 * 3600, max_attempts=3)
async def prune_stripe_events(ctx: JobContext) -> None:
    """Forget handled Stripe events after ``stripe_events.RETENTION_DAYS``."""
    async with ctx.pool.connection() as conn:
        await refund_store.prune_stripe_events(conn, stripe_events.RETENTION_DAYS)
