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

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from surge.config import Settings
from surge.delivery.bounces import SendStatus
from surge.delivery.dkim import sign_all
from surge.donations import receipts, recurring, service, store
from surge.donations.gateway import ChargeResult, GatewayMisconfigured, GatewayUnavailable
from surge.donations.intake import batch_jobs
from surge.errors import Invalid
from surge.jobs import JobContext, enqueue, enqueue_many, task
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
    """Charge a pending donation once, then record the outcome atomically with the job
    (``{"donation_ids": […]}``: a batch, see ``charge_many``)."""
    if "donation_ids" in ctx.job.args:
        await charge_many(ctx, [int(i) for i in ctx.job.args["donation_ids"]])
        return
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
    try:
        result = await _gateway_charge(ctx, donation)
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


async def _gateway_charge(ctx: JobContext, donation: store.DonationToCharge) -> ChargeResult:
    """Ask the gateway to charge ``donation`` (amount + fee) under its fixed key."""
    assert donation.token is not None  # dropped only when the donation is made final
    gateway = ctx.resources.gateway
    attributes = {
        "payment.gateway": gateway.name,
        "payment.amount_minor": donation.amount_minor,
        "payment.currency": donation.currency,
        "surge.donation_id": donation.id,
    }
    with tracing.span("payment.charge", tracing.CLIENT, attributes) as span:
        result = await gateway.charge(
            # A donor who covers the fee is charged it on top of the gift.
            amount=donation.amount_minor + donation.fee_minor,
            currency=donation.currency,
            token=donation.token,
            idempotency_key=service.gateway_key(donation.organization_id, donation.idempotency_key),
            description=f"Donation to {donation.campaign_name}",
        )
        span.set_attribute("payment.outcome", result.status)
        if result.reason is not None:
            span.set_attribute("payment.decline_reason", result.reason)
    return result


# -- batches -----------------------------------------------------------------------------------
# The donation intake commits many donations per flush; charging and receipting each with a
# job of its own costs two claims, two completions and ~20 round trips per donation. A flush
# of several donations gets one charge job for all of them instead (a flush of one keeps the
# single form above): one read, the gateway calls side by side, one transaction for every
# outcome, and one receipt job for all the receipts. What a batch cannot decide (the gateway
# is unavailable, or refuses our credentials) goes on as single jobs, with the retries,
# backoff and dead letters the single form has.

#: Gateway calls one batch makes at once.
BATCH_CONCURRENCY = 50


async def charge_many(ctx: JobContext, ids: list[int]) -> None:
    """Charge a batch of pending donations, each once; record every outcome, enqueue one
    receipt job for the succeeded and a single charge job for each undecided one, and
    complete this job, in one transaction."""
    async with ctx.pool.connection() as conn:
        found = [d for d in await store.donations_to_charge(conn, ids) if d.status == "pending"]
    limit = asyncio.Semaphore(BATCH_CONCURRENCY)

    async def decide(donation: store.DonationToCharge) -> ChargeResult | None:
        if donation.gift_status not in (None, "active"):
            return ChargeResult("declined", reason="recurring_cancelled")
        async with limit:
            try:
                return await _gateway_charge(ctx, donation)
            except (GatewayUnavailable, GatewayMisconfigured):
                return None  # decided by a single job: retried with backoff, or discarded

    results = await asyncio.gather(*(decide(d) for d in found))
    attempts = ctx.job.max_attempts - 1  # this batch made the first
    decisions: list[tuple[int, ChargeResult]] = []
    async with ctx.pool.connection() as conn, conn.transaction():
        for donation, result in zip(found, results, strict=True):
            if result is None and attempts < 1:
                result = ChargeResult("declined", reason="gateway_unavailable")
            if result is not None:
                decisions.append((donation.id, result))
                continue
            await enqueue(
                conn,
                "donations.charge",
                {"donation_id": donation.id},
                queue="critical",
                run_at=datetime.now(UTC) + timedelta(seconds=charge_backoff(ctx.settings)(1)),
                organization_id=donation.organization_id,
                max_attempts=attempts,
            )
        done = await service.finish_charges(conn, decisions)
        org = {d.id: d.organization_id for d in found}
        succeeded = [(org[d.id], d.id) for d in done if d.status == "succeeded"]
        if succeeded:
            await enqueue_many(conn, batch_jobs("donations.receipt", succeeded))
        await ctx.complete_in(conn)
    for finished in done:
        count_donation(finished.status, finished.currency, finished.amount)


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
    """Email the receipt of a succeeded donation, once (see the module docstring);
    ``{"donation_ids": […]}``: a batch's receipts, see ``receipt_many``."""
    if "donation_ids" in ctx.job.args:
        await receipt_many(ctx, [int(i) for i in ctx.job.args["donation_ids"]])
        return
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


async def receipt_many(ctx: JobContext, ids: list[int]) -> None:
    """Send a batch's receipts side by side; record the sent and the refused, and give each
    one the server deferred a single receipt job of its own, with this job's completion."""
    async with ctx.pool.connection() as conn:
        found = await store.donations_to_receipt(conn, ids)
    todo = [
        d
        for d in found
        if d.status == "succeeded" and d.receipt_sent_at is None and d.receipt_error is None
    ]

    async def attempt(donation: store.DonationToReceipt) -> tuple[int, str | None, bool]:
        try:
            return donation.id, await _send(ctx, donation), False
        except (ReceiptDeferred, OSError, TimeoutError):
            return donation.id, None, True

    outcomes = await asyncio.gather(*(attempt(d) for d in todo))
    sent = [i for i, error, deferred in outcomes if not deferred and error is None]
    refused = {i: error for i, error, deferred in outcomes if not deferred and error is not None}
    deferred = [i for i, _, later in outcomes if later]
    org = {d.id: d.organization_id for d in todo}
    async with ctx.pool.connection() as conn, conn.transaction():
        await store.record_receipts(conn, sent, refused)
        for donation_id in deferred:
            await enqueue(
                conn,
                "donations.receipt",
                {"donation_id": donation_id},
                queue="critical",
                organization_id=org[donation_id],
            )
        await ctx.complete_in(conn)
