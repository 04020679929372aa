"""The naive dispatcher that ``surge bench dispatch`` measures Surge against.

This is how the platforms Surge is modelled on sent a campaign before their post-mortems:
one job per recipient, and each job loads its contact and its message with queries of its
own, compiles the templates, builds the email with the standard library, opens its own SMTP
connection and writes its own status row. Benchmark use only: workers import it through
``SURGE_EXTRA_TASK_MODULES=surge.bench.naive``.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr

from surge.delivery.senders import load_senders
from surge.delivery.smtp_client import SMTPConnection, SMTPError, Stage
from surge.dispatch.templates import compile_message
from surge.jobs import JobContext, task


@task("bench.naive_send", queue="bulk", max_attempts=3)
async def naive_send(ctx: JobContext) -> None:
    message_id = int(ctx.job.args["message_id"])
    contact_id = int(ctx.job.args["contact_id"])
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            "select subject, html, text_body, from_email, from_name from messages where id = %s",
            [message_id],
        )
        message = await cur.fetchone()
        cur = await conn.execute(
            "select email, first_name, last_name, attributes from contacts where id = %s",
            [contact_id],
        )
        contact = await cur.fetchone()
    assert message is not None and contact is not None
    subject, html, text = compile_message(message[0], message[1], message[2]).render(
        {
            "email": contact[0],
            "first_name": contact[1] or "",
            "last_name": contact[2] or "",
            "attributes": contact[3] or {},
            "unsubscribe_url": "",
        }
    )
    mail = EmailMessage()
    mail["From"] = formataddr((message[4] or "", message[3]))
    mail["To"] = contact[0]
    mail["Subject"] = subject
    mail["Message-ID"] = f"<m{message_id}.c{contact_id}@{message[3].rpartition('@')[2]}>"
    mail.set_content(text or "")
    if html:
        mail.add_alternative(html, subtype="html")
    sender = load_senders(ctx.settings)[0]
    await _send_on_new_connection(sender.host, sender.port, message[3], contact[0], mail)
    async with ctx.pool.connection() as conn:
        await conn.execute(
            "update deliveries set status = 'sent', sent_at = now(), attempts = attempts + 1"
            " where message_id = %s and contact_id = %s",
            [message_id, contact_id],
        )


async def _send_on_new_connection(
    host: str, port: int, mail_from: str, rcpt: str, mail: EmailMessage
) -> None:
    """Connect, EHLO, one transaction, QUIT: a connection per message, as the naive way did."""
    conn = await SMTPConnection.open(host, port, local_hostname="bench")
    try:
        result = await conn.send(mail_from, rcpt, mail.as_bytes(policy=SMTP))
    finally:
        await conn.quit()
    if result.stage is not Stage.END or result.reply.code // 100 != 2:
        raise SMTPError(f"{result.stage}: {result.reply}")
