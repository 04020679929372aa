"""Proofs of a message before it goes out: a preview for one person, and test emails.

Staff composing a message want to see it as a recipient will. ``preview`` checks every
template (each field's first error, with its line) and renders them for one person with the
same sandboxed templates ``send_chunk`` uses (``templates.compile_message``).
``request_test_sends`` stores a test mail per address, each with a ``dispatch.test_send``
job on the critical queue, in the caller's transaction; the job renders it, DKIM-signs it
and sends it through the message's sender, as a receipt is sent, and records the server's
reply (``proofs_of`` reads it back for the composer).

A test mail says so ("[Test]" before its subject) and is not tracked (no pixel, links
untouched: a test must not count as an open or a click). Its unsubscribe and preference
links lead nowhere: following them in a test must not unsubscribe the sample contact.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from surge.contacts import service as contacts
from surge.contacts.schemas import Contact
from surge.delivery.bounces import SendStatus
from surge.delivery.dkim import sign_all
from surge.delivery.html_text import html_to_text
from surge.delivery.mime import Composer
from surge.delivery.pools import UnknownSender
from surge.dispatch import proofs_store as store
from surge.dispatch import templates
from surge.dispatch.proofs_store import Proof
from surge.errors import Invalid, NotFound
from surge.fields import check_email
from surge.jobs import JobContext, enqueue, task

log = logging.getLogger(__name__)

Conn = AsyncConnection[Any]

TASK = "dispatch.test_send"
#: Addresses one test may go to.
MAX_TEST_ADDRESSES = 5
#: Test mails an organisation may ask for per hour: enough to iterate on a message, too
#: few to make the test button a way around list consent.
TESTS_PER_HOUR = 60
#: Days a test's record is kept.
KEEP_DAYS = 30
SUBJECT_PREFIX = "[Test] "


@dataclass(frozen=True, slots=True)
class Sample:
    """Whose data fills the templates of a preview or a test mail."""

    email: str
    first_name: str = ""
    last_name: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
    #: The contact it is, if any (None: the made-up person templates are checked with).
    contact_id: int | None = None


#: The person templates are checked with (``templates.check``), when no contact is chosen.
NOBODY = Sample("ada@example.org", "Ada", "Lovelace")


def sample_of(contact: Contact) -> Sample:
    return Sample(
        contact.email,
        contact.first_name or "",
        contact.last_name or "",
        dict(contact.attributes),
        contact.id,
    )


@dataclass(slots=True)
class Draft:
    """A message's content as it is being composed (checked by campaigns' ``check_content``)."""

    subject: str
    html: str | None
    text: str | None
    from_email: str
    from_name: str | None = None
    reply_to: str | None = None
    sender: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """A preview: each field's error (``"line N: …"``) or, with none, the mail as rendered."""

    errors: dict[str, str]
    subject: str | None = None
    html: str | None = None
    text: str | None = None


def context(sample: Sample, public_url: str) -> dict[str, Any]:
    """The template variables of a proof: the sample's, and links that lead nowhere."""
    base = public_url.rstrip("/")
    return {
        "email": sample.email,
        "first_name": sample.first_name,
        "last_name": sample.last_name,
        "attributes": sample.attributes,
        "unsubscribe_url": f"{base}/u/test-email",
        "preferences_url": f"{base}/preferences/test-email",
    }


def check_templates(sources: dict[str, str | None]) -> dict[str, str]:
    """Every field's template error (not only the first field's): field → message."""
    errors = {}
    for name, source in sources.items():
        if source is None:
            continue
        kind = "html" if name == "html" else "text"  # the field picks the escaping
        try:
            templates.check(kind, source)
        except Invalid as exc:
            errors[name] = exc.message
    return errors


def preview(
    subject: str, html: str | None, text: str | None, sample: Sample, public_url: str
) -> Rendered:
    """The mail ``sample`` would get, or the templates' errors. An HTML-only message shows
    the text part it gets too, made from its HTML as a real send makes it."""
    errors = check_templates({"subject": subject, "html": html, "text": text})
    if errors:
        return Rendered(errors)
    compiled = templates.compile_message(subject, html, text)
    values = context(sample, public_url)
    try:
        out_subject, out_html, out_text = compiled.render(values)
    except Exception as exc:  # e.g. arithmetic on this contact's attribute of another type
        return Rendered({_failing(compiled, values): f"fails for {sample.email}: {exc}"})
    if out_text is None and out_html is not None:
        out_text = html_to_text(out_html)
    return Rendered({}, out_subject, out_html, out_text)


def _failing(compiled: templates.CompiledMessage, values: dict[str, Any]) -> str:
    for name in ("subject", "html", "text"):
        template = getattr(compiled, name)
        if template is None:
            continue
        try:
            template.render(values)
        except Exception:
            return name
    return "_form"


# -- test mails ----------------------------------------------------------------------------


def check_addresses(text: str, field_name: str = "test_to") -> list[str]:
    """``"a@x.org, b@y.org"`` → the distinct addresses, 1 to ``MAX_TEST_ADDRESSES``."""
    parts = [p.strip() for p in text.replace(";", ",").replace("\n", ",").split(",")]
    found: list[str] = []
    for part in parts:
        if part:
            address = check_email(field_name, part)
            if address.lower() not in (f.lower() for f in found):
                found.append(address)
    if not 1 <= len(found) <= MAX_TEST_ADDRESSES:
        raise Invalid(field_name, f"give 1 to {MAX_TEST_ADDRESSES} addresses")
    return found


async def request_test_sends(
    conn: Conn,
    org: int,
    draft: Draft,
    to: Sequence[str],
    *,
    campaign_id: int | None,
    sample: Sample,
    requested_by: str | None,
) -> list[int]:
    """Store a test mail of ``draft`` to each of ``to`` and enqueue its job, in the caller's
    transaction; returns their ids. Call it with content checked already (campaigns'
    ``check_content``). Invalid (``test_to``) past ``TESTS_PER_HOUR``."""
    if await store.recent(conn, org, 3600) + len(to) > TESTS_PER_HOUR:
        raise Invalid(
            "test_to",
            f"this organisation sent {TESTS_PER_HOUR} test emails in the last hour;"
            " try again later",
        )
    await store.prune(conn, org, KEEP_DAYS)
    ids = []
    for address in to:
        test_id = await store.insert(
            conn,
            {
                "org": org,
                "campaign": campaign_id,
                "to": address,
                "contact": sample.contact_id,
                "subject": draft.subject,
                "html": draft.html,
                "text": draft.text,
                "from_email": draft.from_email,
                "from_name": draft.from_name,
                "reply_to": draft.reply_to,
                "sender": draft.sender,
                "requested_by": requested_by,
            },
        )
        await enqueue(conn, TASK, {"test_send_id": test_id}, queue="critical", organization_id=org)
        ids.append(test_id)
    return ids


async def proofs_of(conn: Conn, org: int, ids: Sequence[int]) -> list[Proof]:
    """The organisation's test mails among ``ids``, with their status and server reply."""
    return await store.test_sends(conn, org, ids)


class ProofDeferred(Exception):
    """The SMTP server or the sender is unavailable for now: the job retries."""


@task(TASK, queue="critical", max_attempts=5)
async def send_proof(ctx: JobContext) -> None:
    """Render one test mail for its sample, send it, record what the server said."""
    test_id = int(ctx.job.args["test_send_id"])
    async with ctx.pool.connection() as conn:
        row = await store.to_send(conn, test_id)
        if row is None or row.status != "queued":
            return  # sent by an earlier run, or its organisation is gone
        sample = NOBODY
        if row.contact_id is not None:
            # Deleted since: the made-up person stands in.
            with contextlib.suppress(NotFound):
                sample = sample_of(
                    await contacts.get_contact(conn, row.organization_id, row.contact_id)
                )
    status, reply = await _send(ctx, row, sample)
    async with ctx.pool.connection() as conn, conn.transaction():
        await store.finish(conn, test_id, status, reply)
        await ctx.complete_in(conn)


async def _send(ctx: JobContext, row: store.ProofToSend, sample: Sample) -> tuple[str, str]:
    """("sent" | "failed", the reply); raises ProofDeferred to try again later."""
    last_try = ctx.job.attempt >= ctx.job.max_attempts
    try:
        smtp, bucket = ctx.resources.senders.get(row.sender, ctx.pool)
    except UnknownSender as exc:
        return "failed", str(exc)
    try:
        data = compose(row, sample, ctx.settings.public_url, smtp.config.from_domain)
    except Invalid as exc:
        return "failed", f"cannot compose: {exc.message}"
    except Exception as exc:  # a template that fails for this contact's data
        return "failed", f"cannot render for {sample.email}: {exc}"
    if not smtp.sender_available():
        if last_try:
            return "failed", "the sender was unavailable at every attempt"
        raise ProofDeferred("sender unavailable")
    signers = await ctx.resources.dkim.signers(row.from_email.rpartition("@")[2])
    data = sign_all(signers, data) if signers else data
    await bucket.take()
    outcome = await smtp.send(row.from_email, row.to_email, data)
    if outcome.status is SendStatus.TEMPORARY and not last_try:
        raise ProofDeferred(outcome.reply)
    log.info("test email", extra={"test_send_id": row.id, "sent": outcome.sent})
    return ("sent" if outcome.sent else "failed"), (outcome.reply or "")


def compose(
    row: store.ProofToSend, sample: Sample, public_url: str, from_domain: str | None
) -> bytes:
    """The test mail's bytes: the message rendered for ``sample``, marked as a test."""
    compiled = templates.compile_message(row.subject, row.html, row.text_body)
    subject, html, text = compiled.render(context(sample, public_url))
    composer = Composer(
        row.from_email,
        row.from_name or "",
        headers={"Reply-To": row.reply_to} if row.reply_to else {},
        from_domain=from_domain,
    )
    domain = from_domain or row.from_email.rpartition("@")[2]
    return composer.compose(
        row.to_email,
        SUBJECT_PREFIX + subject,
        text=text,
        html=html,
        message_id=f"<test.{row.id}.{secrets.token_hex(4)}@{domain}>",
    )
