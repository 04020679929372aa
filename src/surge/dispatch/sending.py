"""Tier 2 of dispatch: one chunk of recipients, rendered and sent, outcomes recorded in batches.

One query loads the chunk; templates are compiled once; ``dispatch_concurrency`` sends are in
flight over the sender's persistent connections, within its rate limit shared by all worker
processes. Outcomes are written every ``FLUSH_EVERY`` recipients or ``FLUSH_SECONDS`` (and at the
end), each batch in one statement that only touches rows still ``queued``; each flush also
reads the message's status, so a pause or cancel stops a running chunk at its next flush.

Exactly-once, and its bound: a recipient whose row says ``sent`` is never sent again. A
worker killed mid-chunk loses the outcomes it had not yet written, and the re-run sends
those recipients again: at most ``FLUSH_EVERY + dispatch_concurrency`` duplicates per chunk
that was running at the moment of the kill (the unflushed outcomes plus the sends in
flight), and never more than the chunk's size. No recipient is skipped, because a row
leaves ``queued`` only when its outcome is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from surge.bounces.esp import carrier_headers
from surge.bounces.verp import UNSUBSCRIBE, Verp
from surge.contacts import service as contacts
from surge.delivery import warmup
from surge.delivery.bounces import SendOutcome, SendStatus
from surge.delivery.dkim import Signer, sign_all
from surge.delivery.domains import DomainThrottles, is_deferral
from surge.delivery.mime import Composer
from surge.delivery.ratelimit import TokenBucket
from surge.delivery.senders import Esp
from surge.delivery.smtp import SenderPool
from surge.dispatch import store
from surge.dispatch.store import MessageToSend, Recipient
from surge.dispatch.templates import CompiledMessage, compile_message
from surge.jobs import JobContext
from surge.observability import tracing
from surge.retry import Backoff
from surge.suppressions import service as suppressions
from surge.tracking.links import add_pixel, track_links
from surge.tracking.tokens import TokenSigner

log = logging.getLogger(__name__)

FLUSH_EVERY = 100
FLUSH_SECONDS = 1.0
#: Messages of a traced chunk that get an ``smtp.send`` span each: a latency sample. The
#: others add an event to the chunk's span only when they are not sent.
TRACED_MESSAGES = 10


@dataclass
class ChunkResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    #: Seconds until the recipients that failed temporarily should be tried again.
    retry_after: float | None = None
    #: 'paused' or 'cancelled' if staff stopped the message while this chunk ran.
    stopped_by: str | None = None


@dataclass
class Renderer:
    """Everything per-message that each recipient's email is made from."""

    message_id: int
    compiled: CompiledMessage
    composer: Composer
    signer: TokenSigner
    public_url: str
    track_opens: bool
    track_clicks: bool
    #: DKIM signers of the From domain's active keys (none: unsigned).
    dkim: tuple[Signer, ...] = ()
    #: Per-delivery addresses (SURGE_BOUNCE_DOMAIN): the mailto: unsubscribe of each message.
    verp: Verp | None = None
    #: The ESP behind the sender, whose webhooks need the delivery in a header of theirs.
    esp: Esp | None = None
    #: The message's organisation: its contacts' preference centre links name it.
    organization_id: int = 0

    def render(self, to: Recipient) -> bytes:
        contact_id, first_name, last_name = to.contact_id, to.first_name, to.last_name
        unsubscribe_url = self._url("u", "unsubscribe", contact_id)
        subject, html, text = self.compiled.render(
            {
                "email": to.email,
                "first_name": first_name or "",
                "last_name": last_name or "",
                "attributes": to.attributes or {},
                "unsubscribe_url": unsubscribe_url,
                "preferences_url": f"{self.public_url}/preferences/"
                + self.signer.sign("preferences", self.organization_id, contact_id),
            }
        )
        if html is not None:
            if self.track_clicks:
                html = track_links(html, lambda url: self._url("t/c", "click", contact_id, url))
            if self.track_opens:
                html = add_pixel(html, self._url("t/o", "open", contact_id))
        name = " ".join(p for p in (first_name, last_name) if p)
        data = self.composer.compose(
            to.email,
            subject,
            text=text,
            html=html,
            to_name=name,
            message_id=message_id_for(self.message_id, contact_id, self.composer),
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=self.verp.address(self.message_id, contact_id, UNSUBSCRIBE)
            if self.verp
            else None,
            headers=carrier_headers(self.esp, self.message_id, contact_id) if self.esp else None,
        )
        return sign_all(self.dkim, data) if self.dkim else data

    def _url(self, path: str, kind: str, contact_id: int, url: str | None = None) -> str:
        token = self.signer.sign(kind, self.message_id, contact_id, url)
        return f"{self.public_url}/{path}/{token}"


def domain_of(email: str) -> str:
    return email.rpartition("@")[2]


def message_id_for(message_id: int, contact_id: int, composer: Composer) -> str:
    """Deterministic per delivery, so a duplicate send is recognisable downstream."""
    domain = composer.from_domain or composer.from_email.rpartition("@")[2]
    return f"<m{message_id}.c{contact_id}@{domain}>"


@dataclass
class Batch:
    """Outcomes of some recipients, written together."""

    contact_ids: list[int] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    #: Hard bounces (contact ids and addresses): the contact is marked bounced and the
    #: address suppressed.
    bounced: list[int] = field(default_factory=list)
    bounced_emails: list[str] = field(default_factory=list)
    #: Addresses whose delivery failed for good on temporary errors: soft bounces.
    soft_bounced: list[str] = field(default_factory=list)


@dataclass
class Outcomes:
    """Outcomes waiting to be written, and the running totals of the chunk."""

    pending: Batch = field(default_factory=Batch)
    result: ChunkResult = field(default_factory=ChunkResult)

    @property
    def contact_ids(self) -> list[int]:
        return self.pending.contact_ids

    def add(self, contact_id: int, status: str, error: str | None = None) -> None:
        self.pending.contact_ids.append(contact_id)
        self.pending.statuses.append(status)
        self.pending.errors.append(error)

    def take(self) -> Batch:
        batch, self.pending = self.pending, Batch()
        return batch


async def send_chunk_recipients(ctx: JobContext, message_id: int, chunk: int) -> ChunkResult:
    """Send to the chunk's queued recipients; returns totals and whether retries remain."""
    senders, signer = ctx.resources.senders, ctx.resources.signer
    async with ctx.pool.connection() as conn:
        message = await store.message_for_send(conn, message_id, chunk)
        rows = await store.chunk_recipients(conn, message_id, chunk)
    assert message is not None
    smtp, bucket = senders.get(message.sender, ctx.pool)
    if not smtp.sender_available():
        return ChunkResult(retry_after=smtp.retry_after())
    renderer = Renderer(
        message_id,
        compile_message(message.subject, message.html, message.text_body),
        Composer(
            message.from_email,
            message.from_name or "",
            headers={"Reply-To": message.reply_to} if message.reply_to else {},
            from_domain=smtp.config.from_domain,
        ),
        signer,
        ctx.settings.public_url.rstrip("/"),
        message.track_opens,
        message.track_clicks,
        await ctx.resources.dkim.signers(message.from_email.rpartition("@")[2]),
        ctx.resources.verp,
        smtp.config.esp,
        organization_id=message.organization_id,
    )
    domains = ctx.resources.domain_throttles()
    await domains.refresh()
    run = _ChunkRun(ctx, message, chunk, renderer, smtp, bucket, domains)
    await run.reserve_warmup(rows)
    attributes = {
        "surge.message_id": message_id,
        "surge.chunk": chunk,
        "smtp.sender": smtp.config.name,
    }
    try:
        with (
            tracing.span("smtp.send_chunk", attributes=attributes) as span,
            tracing.message_spans(TRACED_MESSAGES),
        ):
            await run.send_all(rows)
            result = run.outcomes.result
            span.set_attributes(
                {
                    "surge.recipients": len(rows),
                    "surge.sent": result.sent,
                    "surge.failed": result.failed,
                    "surge.skipped": result.skipped,
                    "surge.stopped_by": result.stopped_by or "",
                    "surge.retry_after": result.retry_after or 0.0,
                }
            )
    finally:
        await run.return_warmup()
    return run.outcomes.result


class _ChunkRun:
    def __init__(
        self,
        ctx: JobContext,
        message: MessageToSend,
        chunk: int,
        renderer: Renderer,
        smtp: SenderPool,
        bucket: TokenBucket,
        domains: DomainThrottles,
    ) -> None:
        self.ctx = ctx
        self.message = message
        self.chunk = chunk
        self.renderer = renderer
        self.smtp = smtp
        self.bucket = bucket
        self.domains = domains
        #: Messages this chunk may still send today under the sender's warm-up (None: no cap).
        self.allowance: int | None = None
        self._warmup_day = warmup.today()
        self.outcomes = Outcomes()
        self.max_attempts = ctx.settings.dispatch_max_attempts
        self._flush_lock = asyncio.Lock()
        self._flushed_at = time.monotonic()
        self._retry_after: float | None = None

    async def reserve_warmup(self, rows: list[Recipient]) -> None:
        """Reserve today's share of a warming-up sender's cap for this chunk's sends."""
        config = self.smtp.config
        if config.warmup_start is None:
            return
        cap = warmup.cap_for(config.warmup_start, config.warmup_schedule, self._warmup_day)
        if cap is None:
            return
        wanted = sum(1 for r in rows if r.status == "subscribed" and r.suppressed is None)
        self.allowance = await warmup.reserve(
            self.ctx.pool, config.name, self._warmup_day, cap, wanted
        )

    async def return_warmup(self) -> None:
        if self.allowance:
            await warmup.give_back(
                self.ctx.pool, self.smtp.config.name, self._warmup_day, self.allowance
            )
            self.allowance = 0

    async def send_all(self, rows: list[Recipient]) -> None:
        pending = iter(rows)
        lanes = min(self.ctx.settings.dispatch_concurrency, max(len(rows), 1))
        await asyncio.gather(*(self._lane(pending) for _ in range(lanes)))
        await self._flush()
        self.outcomes.result.retry_after = self._retry_after

    async def _lane(self, pending: Iterator[Recipient]) -> None:
        for to in pending:
            if self.outcomes.result.stopped_by is not None:
                return  # paused or cancelled: the rest stays queued
            if to.status != "subscribed":
                self.outcomes.add(to.contact_id, "skipped", f"contact is {to.status}")
            elif to.suppressed is not None:
                self.outcomes.add(to.contact_id, "skipped", f"address suppressed ({to.suppressed})")
            elif not self.smtp.sender_available():
                self._later(self.smtp.retry_after())
            elif not self._take_allowance():
                # The sender's warm-up cap for today is reached: tomorrow, no attempt counted.
                self._later(warmup.seconds_to_tomorrow())
            elif (wait := await self.domains.admit(domain_of(to.email))) > 0:
                # The provider is throttled or deferring: left queued, no attempt counted.
                self._give_allowance()
                self._later(wait)
            else:
                await self.bucket.take()
                if self.outcomes.result.stopped_by is not None:
                    return  # stopped while this lane waited for its turn
                await self._send(to)
            due = time.monotonic() - self._flushed_at >= FLUSH_SECONDS
            if due or len(self.outcomes.contact_ids) >= FLUSH_EVERY:
                await self._flush()

    def _take_allowance(self) -> bool:
        """One message of today's warm-up share, if there is a cap; False when none is left.

        Synchronous, so that lanes cannot both take the last one across an ``await``.
        """
        if self.allowance is None:
            return True
        if self.allowance <= 0:
            return False
        self.allowance -= 1
        return True

    def _give_allowance(self) -> None:
        if self.allowance is not None:
            self.allowance += 1

    async def _send(self, to: Recipient) -> None:
        data = self.renderer.render(to)
        verp = self.ctx.resources.verp
        sender = verp.address(self.message.id, to.contact_id) if verp else None
        outcome = await self.smtp.send(sender or self.message.from_email, to.email, data)
        if is_deferral(outcome):
            # "Slow down" from the provider, not a verdict on the recipient: every worker
            # backs off that provider and this recipient waits, queued, with no attempt counted.
            self._later(await self.domains.deferred(domain_of(to.email)))
            return
        if outcome.sent:
            await self.domains.accepted(domain_of(to.email))
        self._record(to, outcome)

    def _record(self, to: Recipient, outcome: SendOutcome) -> None:
        contact_id, attempts = to.contact_id, to.attempts
        if outcome.status is SendStatus.SENT:
            self.outcomes.add(contact_id, "sent")
        elif outcome.status is SendStatus.PERMANENT:
            self.outcomes.add(contact_id, "failed", outcome.reply[:500])
            if outcome.hard_bounce:
                self.outcomes.pending.bounced.append(contact_id)
                self.outcomes.pending.bounced_emails.append(to.email)
        elif outcome.sender_unavailable:
            # The sender is down, not this recipient: leave the row untouched (no attempt
            # burned) and retry the chunk when the circuit allows.
            self._later(outcome.retry_after or self._backoff(1))
        elif attempts + 1 >= self.max_attempts:
            self.outcomes.add(contact_id, "failed", outcome.reply[:500])
            self.outcomes.pending.soft_bounced.append(to.email)
        else:
            self.outcomes.add(contact_id, "queued", outcome.reply[:500])
            self._later(outcome.retry_after or self._backoff(attempts + 1))

    def _backoff(self, attempt: int) -> float:
        """Seconds before a recipient's next try after a 4xx: base, 2x, 4x … capped at 1 h.

        No jitter: the chunk waits for its slowest recipient, and chunks are spread already.
        """
        base = self.ctx.settings.dispatch_retry_base_seconds
        return Backoff(base=base, cap=3600.0, jitter=0.0)(attempt)

    def _later(self, seconds: float) -> None:
        self._retry_after = max(self._retry_after or 0.0, seconds)

    async def _flush(self) -> None:
        """Write the outcomes so far, and learn whether the message was paused or cancelled."""
        async with self._flush_lock:
            self._flushed_at = time.monotonic()
            batch = self.outcomes.take()
            org = self.message.organization_id
            message_id = self.message.id
            async with self.ctx.pool.connection() as conn, conn.transaction():
                counts = {}
                if batch.contact_ids:
                    counts = await store.record_outcomes(
                        conn,
                        message_id,
                        self.chunk,
                        batch.contact_ids,
                        batch.statuses,
                        batch.errors,
                    )
                if batch.bounced:
                    await contacts.set_status(conn, org, batch.bounced, "bounced")
                    await store.count_bounces(conn, message_id, len(batch.bounced))
                    detail = f"hard bounce on message {message_id}"
                    await suppressions.suppress(
                        conn, org, batch.bounced_emails, "hard_bounce", detail
                    )
                if batch.soft_bounced:
                    await suppressions.soft_bounced(
                        conn,
                        org,
                        batch.soft_bounced,
                        self.ctx.settings.suppress_after_soft_bounces,
                        f"soft bounces, the last on message {message_id}",
                    )
                status = await store.message_status(conn, message_id)
            result = self.outcomes.result
            if status in ("paused", "cancelled"):
                result.stopped_by = status
            result.sent += counts.get("sent", 0)
            result.failed += counts.get("failed", 0)
            result.skipped += counts.get("skipped", 0)
