"""The donation jobs, both on the ``critical`` queue: charge, then receipt.

Exactly once, and the bound on "once":
- charge: the gateway is asked with a key fixed per donation, so a re-run (worker crash
  after the gateway answered, rescue, duplicate job) gets the first charge back and never
  charges twice; the decision, totals, receipt job, webhook event and job completion commit
  together, and a donation already final is never charged again.
- receipt: ``receipt_sent_at`` is committed with the job's completion, so a re-run does not
  send again. A crash between the SMTP server's 250 and that commit sends one duplicate
  (same Message-ID); nothing can close that window without the server's help.
"""

from __future__ import annotations

import logging

from surge.config import Settings
from surge.delivery.bounces import SendStatus
from surge.delivery.dkim import sign_all
from surge.donations import receipts, recurring, service, store
from surge.donations.gateway import ChargeResult, GatewayMisconfigured, GatewayUnavailable
from surge.errors import Invalid
from surge.jobs import JobContext, task
from surge.observability import tracing
from surge.observability.metrics import donation as count_donation
from surge.retry import Backoff

log = logging.getLogger(__name__)

#: Longest wait between two charge attempts, in seconds.
CHARGE_BACKOFF_CAP = 600.0


def charge_backoff(settings: Settings) -> Backoff:
    """Waits between charge attempts: ``donations_charge_backoff`` doubling, ±50 %.

    The default 2 s gives 2, 4, 8 … s, ~4 min over the default 8 attempts: enough to ride
    out a short gateway blip.
    """
    return Backoff(base=settings.donations_charge_backoff, cap=CHARGE_BACKOFF_CAP)


class ReceiptDeferred(Exception):
    """The SMTP server refused the receipt for now (4xx or unreachable): retry later."""


@task(
    "donations.charge",
    queue="critical",
    # create_donation enqueues with SURGE_DONATIONS_CHARGE_ATTEMPTS; 8 is its default.
    max_attempts=8,
    backoff=charge_backoff,
)
async def charge(ctx: JobContext) -> None:
    """Charge a pending donation once, then record the outcome atomically with the job."""
    donation_id = int(ctx.job.args["donation_id"])
    async with ctx.pool.connection() as conn:
        donation = await store.donation_to_charge(conn, donation_id)
    if donation is None or donation.status != "pending":
        return  # final already (a duplicate run) or deleted with its campaign
    assert donation.token is not None  # dropped only when the donation is made final
    if donation.gift_status not in (None, "active"):
        # A period of a recurring gift cancelled (or ended) since it was due: no charge.
        declined = ChargeResult("declined", reason="recurring_cancelled")
        async with ctx.pool.connection() as conn, conn.transaction():
            await service.finish_charge(conn, donation_id, declined)
            await ctx.complete_in(conn)
        return
    gateway = ctx.resources.gateway
    attributes = {
        "payment.gateway": gateway.name,
        "payment.amount_minor": donation.amount_minor,
        "payment.currency": donation.currency,
        "surge.donation_id": donation_id,
    }
    try:
        with tracing.span("payment.charge", tracing.CLIENT, attributes) as span:
            result = await gateway.charge(
                # A donor who covers the fee is charged it on top of the gift.
                amount=donation.amount_minor + donation.fee_minor,
                currency=donation.currency,
                token=donation.token,
                idempotency_key=service.gateway_key(
                    donation.organization_id, donation.idempotency_key
                ),
                description=f"Donation to {donation.campaign_name}",
            )
            span.set_attribute("payment.outcome", result.status)
            if result.reason is not None:
                span.set_attribute("payment.decline_reason", result.reason)
    except GatewayUnavailable as exc:
        if ctx.job.attempt < ctx.job.max_attempts:
            raise  # the job engine retries with charge_backoff
        log.warning("charge gave up", extra={"donation": donation_id, "error": str(exc)})
        result = ChargeResult("declined", reason="gateway_unavailable")
    except GatewayMisconfigured as exc:
        # A refused API key: no retry mends it. The donation stays pending; once the key
        # is fixed, `surge jobs retry` charges it (with the same key, so once).
        log.error("charge discarded", extra={"donation": donation_id, "error": str(exc)})
        await ctx.discard(str(exc))
        return
    async with ctx.pool.connection() as conn, conn.transaction():
        done = await service.finish_charge(conn, donation_id, result)
        await ctx.complete_in(conn)
    if done is not None:  # None: a duplicate run, counted by the first
        count_donation(done.status, done.currency, done.amount)


@task("donations.recurring", queue="critical", every=2, max_attempts=3)
async def recurring_gifts(ctx: JobContext) -> None:
    """Charge the recurring gifts whose period is due, each period once (recurring.py)."""
    for _ in range(RECURRING_BATCHES):
        async with ctx.pool.connection() as conn, conn.transaction():
            taken = await recurring.charge_due(
                conn, charge_attempts=ctx.settings.donations_charge_attempts
            )
        if taken < recurring.BATCH:
            return


#: Batches one run of donations.recurring charges at most; the next slot takes the rest.
RECURRING_BATCHES = 25


@task("donations.receipt", queue="critical", max_attempts=10)
async def receipt(ctx: JobContext) -> None:
    """Email the receipt of a succeeded donation, once (see the module docstring)."""
    donation_id = int(ctx.job.args["donation_id"])
    async with ctx.pool.connection() as conn:
        donation = await store.donation_to_receipt(conn, donation_id)
    if donation is None or donation.status != "succeeded":
        return
    if donation.receipt_sent_at is not None or donation.receipt_error is not None:
        return  # sent (or refused for good) by an earlier run
    error = await _send(ctx, donation)
    async with ctx.pool.connection() as conn, conn.transaction():
        await store.record_receipt(conn, donation_id, error)
        await ctx.complete_in(conn)


async def _send(ctx: JobContext, donation: store.DonationToReceipt) -> str | None:
    """Send the receipt; None when sent, the reason when refused for good; raise to retry."""
    from_email = receipts.receipt_from(ctx.settings)
    try:
        data = receipts.compose(donation, from_email, receipts.manage_url(ctx.settings, donation))
    except Invalid as exc:
        return f"cannot compose: {exc.message}"
    assert donation.email is not None  # compose refuses a donation without one
    signers = await ctx.resources.dkim.signers(from_email.rpartition("@")[2])
    data = sign_all(signers, data)
    smtp, bucket = ctx.resources.senders.get(None, ctx.pool)
    await bucket.take()
    outcome = await smtp.send(from_email, donation.email, data)
    if outcome.status is SendStatus.TEMPORARY:
        raise ReceiptDeferred(outcome.reply)
    return None if outcome.sent else outcome.reply
