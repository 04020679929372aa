"""SQL of what Surge did for and with a person, in other domains' tables: deliveries,
journey enrolments, donations, suppressions, and the webhook payloads that carried their
data (what the person did — events, activity rollups, profiles — is in ``traces``).

Why contacts reads and writes these tables itself, against the rule that a domain calls
another's service: a merge, an erasure and an export must each see or change all of them
in *one* transaction, and the domains that own them (dispatch, tracking, journeys,
donations through campaigns) import contacts already, so calling back into them would be
an import cycle. This module and ``traces`` are the one place where that happens; they
touch only the rows of one or two contacts and never a column's meaning: a delivery still
in the queue ends ``skipped`` and is counted in ``message_stats.skipped`` as dispatch counts
its own skips, an active journey that goes is counted as an exit as the runner counts one,
and every other figure (sent, opened, raised, entered, ...) is a counter that stays as it is
when rows go.

Costs: deliveries and journey enrolments are found by primary key, one probe per message
or journey of the organisation (``message_id = any(...) and contact_id = ...``); donations
and the webhook outbox have no index by address and are scanned. Merges, exports and
erasures are rare, staff-initiated operations: seconds, not a hot path.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.rows import class_row

from surge.contacts.person_store import lowered
from surge.contacts.schemas import (
    DeliveryRecord,
    DonationRecord,
    EnrolmentRecord,
    SoftBounceRecord,
    SuppressionRecord,
)
from surge.contacts.store import Conn

#: The organisation's messages, for primary-key probes of deliveries (message_id, contact_id).
_MESSAGES = "array(select id from messages where organization_id = %(org)s)"

#: What a donation's donor address becomes when the donor is erased: .invalid is reserved
#: (RFC 2606), so nothing can ever be delivered to it.
ERASED_EMAIL = "erased@erased.invalid"


# -- deliveries -----------------------------------------------------------------------------


async def deliveries(conn: Conn, org: int, contact_id: int) -> list[DeliveryRecord]:
    cur = conn.cursor(row_factory=class_row(DeliveryRecord))
    await cur.execute(
        "select d.message_id, m.campaign_id, m.subject, d.status, d.attempts, d.last_error,"
        " d.sent_at, d.opened_at, d.clicked_at, d.bounced_at, d.complained_at"
        " from deliveries d join messages m on m.id = d.message_id"
        f" where d.message_id = any({_MESSAGES}) and d.contact_id = %(contact)s"
        " and d.organization_id = %(org)s order by d.message_id",
        {"org": org, "contact": contact_id},
    )
    return await cur.fetchall()


async def skip_queued(conn: Conn, org: int, contact_id: int, reason: str) -> int:
    """End the contact's deliveries still queued as ``skipped`` and count them in their
    messages' stats, as dispatch counts a skip; returns how many.

    A chunk that loaded one of them a moment ago finds it no longer queued when it records
    its outcome, and counts nothing: the figures stay whole.
    """
    cur = await conn.execute(
        f"""
        with skipped as (
            update deliveries d set status = 'skipped', last_error = %(reason)s
            where d.message_id = any({_MESSAGES}) and d.contact_id = %(contact)s
                and d.organization_id = %(org)s and d.status = 'queued'
            returning d.message_id
        ), counted as (
            update message_stats s set skipped = s.skipped + k.n
            from (select message_id, count(*) as n from skipped group by message_id) k
            where s.message_id = k.message_id
        )
        select count(*) from skipped
        """,
        {"org": org, "contact": contact_id, "reason": reason},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def move_deliveries(conn: Conn, org: int, source: int, target: int) -> tuple[int, int]:
    """Re-point ``source``'s deliveries to ``target``; (moved, dropped).

    Where both have one for the same message, ``target``'s stays and takes the other's
    engagement it lacks (first open, click, bounce, complaint); ``source``'s is dropped.
    Queued ones must have been skipped first (``skip_queued``).
    """
    params = {"org": org, "source": source, "target": target}
    await conn.execute(
        f"""
        update deliveries t set
            opened_at = coalesce(t.opened_at, f.opened_at),
            clicked_at = coalesce(t.clicked_at, f.clicked_at),
            machine_opened_at = coalesce(t.machine_opened_at, f.machine_opened_at),
            machine_clicked_at = coalesce(t.machine_clicked_at, f.machine_clicked_at),
            bounced_at = coalesce(t.bounced_at, f.bounced_at),
            complained_at = coalesce(t.complained_at, f.complained_at)
        from deliveries f
        where f.message_id = any({_MESSAGES}) and f.contact_id = %(source)s
            and f.organization_id = %(org)s
            and t.message_id = f.message_id and t.contact_id = %(target)s
        """,
        params,
    )
    moved = await conn.execute(
        f"""
        update deliveries d set contact_id = %(target)s
        where d.message_id = any({_MESSAGES}) and d.contact_id = %(source)s
            and d.organization_id = %(org)s
            and not exists (select from deliveries t
                            where t.message_id = d.message_id and t.contact_id = %(target)s)
        """,
        params,
    )
    dropped = await erase_deliveries(conn, org, source)
    return moved.rowcount, dropped


async def erase_deliveries(conn: Conn, org: int, contact_id: int) -> int:
    cur = await conn.execute(
        f"delete from deliveries where message_id = any({_MESSAGES})"
        " and contact_id = %(contact)s and organization_id = %(org)s",
        {"org": org, "contact": contact_id},
    )
    return cur.rowcount


# -- journey enrolments (primary key (journey_id, contact_id)) ------------------------------

_JOURNEYS = "array(select id from journeys where organization_id = %(org)s)"

# An active enrolment that goes is counted as exited at its step, as the runner counts an
# exit, so that a journey's "waiting" (entered - done - exited) stays true. Shard 0 of the
# step's counters takes it.
_COUNT_EXITS = """
insert into journey_step_stats as s
    (journey_id, step, shard, organization_id, entered, done, exited)
select journey_id, step, 0, %(org)s, 0, 0, count(*) from {rows}
where state = 'active' group by journey_id, step
on conflict (journey_id, step, shard) do update set exited = s.exited + excluded.exited
"""


async def enrolments(conn: Conn, org: int, contact_id: int) -> list[EnrolmentRecord]:
    cur = conn.cursor(row_factory=class_row(EnrolmentRecord))
    await cur.execute(
        "select e.journey_id, j.name as journey_name, e.step, e.state, e.entries,"
        " e.entered_at, e.updated_at, e.exit_reason from journey_enrolments e"
        " join journeys j on j.organization_id = e.organization_id and j.id = e.journey_id"
        f" where e.journey_id = any({_JOURNEYS}) and e.contact_id = %(contact)s"
        " and e.organization_id = %(org)s order by e.journey_id",
        {"org": org, "contact": contact_id},
    )
    return await cur.fetchall()


async def exit_enrolments(conn: Conn, org: int, contact_id: int, reason: str) -> int:
    """End the contact's active journeys (``exited``, counted); the rows stay as history."""
    exits = _COUNT_EXITS.format(rows="exited")
    cur = await conn.execute(
        f"""
        with exited as (
            update journey_enrolments e set state = 'exited', exit_reason = %(reason)s,
                updated_at = now()
            where e.journey_id = any({_JOURNEYS}) and e.contact_id = %(contact)s
                and e.organization_id = %(org)s and e.state = 'active'
            returning e.journey_id, e.step, 'active' as state
        ), counted as ({exits})
        select count(*) from exited
        """,
        {"org": org, "contact": contact_id, "reason": reason},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def erase_enrolments(conn: Conn, org: int, contact_id: int) -> int:
    exits = _COUNT_EXITS.format(rows="gone")
    cur = await conn.execute(
        f"""
        with gone as (
            delete from journey_enrolments e
            where e.journey_id = any({_JOURNEYS}) and e.contact_id = %(contact)s
                and e.organization_id = %(org)s
            returning e.journey_id, e.step, e.state
        ), counted as ({exits})
        select count(*) from gone
        """,
        {"org": org, "contact": contact_id},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def move_enrolments(conn: Conn, org: int, source: int, target: int) -> int:
    """Give ``target`` the journeys of ``source`` it is not in; ``source``'s others go
    (counted as exits if active). Returns how many moved."""
    params = {"org": org, "source": source, "target": target}
    moved = await conn.execute(
        f"""
        update journey_enrolments e set contact_id = %(target)s, updated_at = now()
        where e.journey_id = any({_JOURNEYS}) and e.contact_id = %(source)s
            and e.organization_id = %(org)s
            and not exists (select from journey_enrolments t
                            where t.journey_id = e.journey_id and t.contact_id = %(target)s)
        """,
        params,
    )
    await erase_enrolments(conn, org, source)
    return moved.rowcount


# -- donations (by the donor's address) -----------------------------------------------------


async def donations(conn: Conn, org: int, emails: Sequence[str]) -> list[DonationRecord]:
    cur = conn.cursor(row_factory=class_row(DonationRecord))
    await cur.execute(
        "select id, campaign_id, status, amount_minor as amount, currency, email, name,"
        " metadata, gateway_reference, created_at, succeeded_at, failed_at from donations"
        " where organization_id = %s and lower(email) = any(%s::text[]) order by id",
        [org, lowered(emails)],
    )
    return await cur.fetchall()


async def move_donations(conn: Conn, org: int, source_email: str, target_email: str) -> int:
    cur = await conn.execute(
        "update donations set email = %s where organization_id = %s and lower(email) = lower(%s)",
        [target_email, org, source_email],
    )
    # Their recurring gifts' receipts go to the merged address from now on.
    await conn.execute(
        "update recurring_gifts set email = %s"
        " where organization_id = %s and lower(email) = lower(%s)",
        [target_email, org, source_email],
    )
    return cur.rowcount


async def erase_donations(conn: Conn, org: int, emails: Sequence[str]) -> int:
    """Keep the donations (amounts, dates and gateway references are the accounts, which
    the law requires to be kept) without the donor: address, name, metadata and any
    receipt error text (SMTP replies quote the address) are removed."""
    cur = await conn.execute(
        "update donations set email = %s, name = null, metadata = '{}', receipt_error = null"
        " where organization_id = %s and lower(email) = any(%s::text[])",
        [ERASED_EMAIL, org, lowered(emails)],
    )
    # An erased donor is never charged again: their recurring gifts end, without them.
    await conn.execute(
        "update recurring_gifts set email = %s, name = null, payment_token = null,"
        " status = case when status = 'active' then 'cancelled' else status end,"
        " cancelled_at = case when status = 'active' then now() else cancelled_at end,"
        " ended_reason = case when status = 'active' then 'donor erased' else ended_reason end"
        " where organization_id = %s and lower(email) = any(%s::text[])",
        [ERASED_EMAIL, org, lowered(emails)],
    )
    return cur.rowcount


# -- suppressions and soft bounces (by address, lower-cased) --------------------------------


async def suppressions(conn: Conn, org: int, emails: Sequence[str]) -> list[SuppressionRecord]:
    cur = conn.cursor(row_factory=class_row(SuppressionRecord))
    await cur.execute(
        "select email, reason, detail, created_at from suppressions"
        " where organization_id = %s and email = any(%s::text[]) order by email",
        [org, lowered(emails)],
    )
    return await cur.fetchall()


async def soft_bounces(conn: Conn, org: int, emails: Sequence[str]) -> list[SoftBounceRecord]:
    cur = conn.cursor(row_factory=class_row(SoftBounceRecord))
    await cur.execute(
        "select email, bounces, first_at, last_at from soft_bounces"
        " where organization_id = %s and email = any(%s::text[]) order by email",
        [org, lowered(emails)],
    )
    return await cur.fetchall()


async def erase_suppressions(conn: Conn, org: int, emails: Sequence[str]) -> int:
    """Remove the addresses from the suppression list and the soft-bounce counts; the
    contact's tombstone (a hash) keeps its address from being imported again."""
    cur = await conn.execute(
        "delete from suppressions where organization_id = %s and email = any(%s::text[])",
        [org, lowered(emails)],
    )
    await conn.execute(
        "delete from soft_bounces where organization_id = %s and email = any(%s::text[])",
        [org, lowered(emails)],
    )
    return cur.rowcount


# -- webhook payloads -----------------------------------------------------------------------


async def scrub_webhook_events(
    conn: Conn, org: int, contact_id: int, emails: Sequence[str], profile_ids: list[str]
) -> int:
    """Remove the person from the webhook payloads that carried their data: an
    ``event.received`` payload (their event: address, properties) becomes
    ``{"erased": true}``, the ``contact`` of a ``journey.step`` payload (address, names)
    becomes ``{"erased": true}``. A delivery still pending sends that instead; receivers
    that got the payload before must erase it too."""
    cur = await conn.execute(
        """
        update webhook_events set data = case type
            when 'event.received' then '{"erased": true}'::jsonb
            else jsonb_set(data, '{contact}', '{"erased": true}'::jsonb) end
        where organization_id = %(org)s and (
            (type = 'event.received' and (data ->> 'contact_id' = %(contact)s::text
                or data ->> 'contact_email' = any(%(emails)s::text[])
                or data ->> 'user_id' = any(%(ids)s::text[])
                or data ->> 'anonymous_id' = any(%(ids)s::text[])))
            or (type = 'journey.step' and data -> 'contact' ->> 'id' = %(contact)s::text))
        """,
        {"org": org, "contact": contact_id, "emails": lowered(emails), "ids": profile_ids},
    )
    return cur.rowcount
