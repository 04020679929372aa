"""The contacts jobs: ``contacts.import`` runs one CSV import (``surge.contacts.imports``);
``contacts.confirm`` mails the double opt-in confirmations."""

from __future__ import annotations

import logging
import secrets
from html import escape

from surge.contacts import store
from surge.contacts.imports import mark_failed, process_import
from surge.contacts.service import CONFIRM_TASK, IMPORT_TASK
from surge.delivery.bounces import SendStatus
from surge.delivery.dkim import sign_all
from surge.delivery.mime import Composer
from surge.jobs import JobContext, task

log = logging.getLogger(__name__)


@task(IMPORT_TASK, queue="bulk", max_attempts=5)
async def run_import(ctx: JobContext) -> None:
    org = ctx.job.organization_id
    import_id = int(ctx.job.args["import_id"])
    assert org is not None, "contacts.import jobs are enqueued with their organisation"
    try:
        await process_import(ctx.pool, org, import_id, complete=ctx.complete_in)
    except Exception:
        if ctx.job.attempt >= ctx.job.max_attempts:
            # No attempt left: say so on the import, or it would look "running" forever.
            log.exception("import failed for good", extra={"import_id": import_id})
            await mark_failed(ctx.pool, org, import_id, "internal error; the import gave up")
        raise


class ConfirmationDeferred(Exception):
    """The SMTP server refused a confirmation mail for now: the job retries the rest."""


@task(CONFIRM_TASK, queue="critical", max_attempts=10)
async def send_confirmations(ctx: JobContext) -> None:
    """Mail each pending member of a double opt-in list the link that confirms them.

    ``confirm_sent_at`` is stamped after each send, so a retried job mails only the ones
    not reached yet (a crash between the 250 and the stamp sends one twice at most).
    """
    org = ctx.job.organization_id
    assert org is not None, "contacts.confirm jobs are enqueued with their organisation"
    list_id = int(ctx.job.args["list_id"])
    ids = [int(i) for i in ctx.job.args["contact_ids"]]
    async with ctx.pool.connection() as conn:
        pending = await store.pending_confirmations(conn, org, list_id, ids)
    if not pending:
        return
    smtp, bucket = ctx.resources.senders.get(None, ctx.pool)
    base = ctx.settings.public_url.rstrip("/")
    for member in pending:
        token = ctx.resources.signer.sign("confirm", list_id, member.contact_id)
        data = confirmation_mail(member, f"{base}/l/{token}")
        domain = member.confirm_from.rpartition("@")[2]
        data = sign_all(await ctx.resources.dkim.signers(domain), data)
        await bucket.take()
        outcome = await smtp.send(member.confirm_from, member.email, data)
        if outcome.status is SendStatus.TEMPORARY:
            raise ConfirmationDeferred(outcome.reply)
        async with ctx.pool.connection() as conn:
            await store.confirmation_sent(conn, org, list_id, member.contact_id)
        if not outcome.sent:
            log.warning("confirmation refused", extra={"list_id": list_id, "reply": outcome.reply})


def confirmation_mail(member: store.Confirmation, link: str) -> bytes:
    """The confirmation message: what the list is, and the one link that confirms."""
    text = (
        f"Please confirm that you want to receive mail from the list {member.list_name!r}:\n\n"
        f"{link}\n\n"
        "If you did not ask for this, ignore this message: you will not be added.\n"
    )
    html = (
        f"<p>Please confirm that you want to receive mail from the list "
        f"<strong>{escape(member.list_name)}</strong>.</p>"
        f'<p><a href="{escape(link)}">Yes, subscribe me</a></p>'
        "<p>If you did not ask for this, ignore this message: you will not be added.</p>"
    )
    composer = Composer(member.confirm_from)
    return composer.compose(
        member.email,
        f"Confirm your subscription to {member.list_name}",
        text=text,
        html=html,
        message_id=f"<confirm.{member.contact_id}.{secrets.token_hex(6)}@{composer.from_email.rpartition('@')[2]}>",
    )
