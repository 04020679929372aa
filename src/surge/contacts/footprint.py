"""SQL of a person's footprint in other domains' tables: deliveries, events and their
per-day activity rollup, donations, suppressions, and the webhook payloads that carried
their data.

Why contacts reads and writes these tables itself, against the rule that a domain calls
another's service: a merge, an erasure and an export must each see or change all of them
in *one* transaction, and the domains that own them (dispatch, tracking, donations through
campaigns) import contacts already, so calling back into them would be an import cycle.
This module is the one place where that happens; it touches only the rows of one or two
contacts and never a column's meaning: a delivery still in the queue ends ``skipped`` and
is counted in ``message_stats.skipped`` exactly as dispatch counts its own skips, and the
other counters (sent, opened, ...) are rollups that stay as they are when rows go.

Costs: deliveries are found by primary key, one probe per message of the organisation
(``message_id = any(...) and contact_id = ...``); events and donations have no index by
contact or address (event intake stays one COPY into an index-light table), so those
statements scan the organisation's retained events and the donations table. Merges,
exports and erasures are rare, staff-initiated operations: seconds, not a hot path.
"""

from __future__ import annotations

from psycopg.rows import class_row

from surge.contacts.schemas import (
    ActivityRecord,
    DeliveryRecord,
    DonationRecord,
    EventRecord,
    LastActivityRecord,
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


# -- events (partitioned by day; contact_email is stored lower-cased) -----------------------

_PERSON_EVENTS = (
    "organization_id = %(org)s and (contact_id = %(contact)s or contact_email = lower(%(email)s))"
)


async def events(conn: Conn, org: int, contact_id: int, email: str) -> list[EventRecord]:
    cur = conn.cursor(row_factory=class_row(EventRecord))
    await cur.execute(
        "select id, type, campaign_id, contact_email, payload, occurred_at, received_at"
        f" from events where {_PERSON_EVENTS} order by occurred_at, id",
        {"org": org, "contact": contact_id, "email": email},
    )
    return await cur.fetchall()


async def move_events(conn: Conn, org: int, source: int, email: str, target: int) -> int:
    """Events of ``source`` (by id, or by its address where no contact id was sent) now name
    ``target``; the address the client sent stays as it was."""
    cur = await conn.execute(
        "update events set contact_id = %(target)s where organization_id = %(org)s"
        " and (contact_id = %(source)s"
        " or (contact_id is null and contact_email = lower(%(email)s)))",
        {"org": org, "source": source, "email": email, "target": target},
    )
    return cur.rowcount


async def erase_events(conn: Conn, org: int, contact_id: int, email: str) -> int:
    cur = await conn.execute(
        f"delete from events where {_PERSON_EVENTS}",
        {"org": org, "contact": contact_id, "email": email},
    )
    return cur.rowcount


# -- contact_activity, contact_last_activity (segments' rollups; keys start with the org) ---


async def activity(conn: Conn, org: int, contact_id: int) -> list[ActivityRecord]:
    cur = conn.cursor(row_factory=class_row(ActivityRecord))
    await cur.execute(
        "select type, day, events from contact_activity"
        " where organization_id = %s and contact_id = %s order by day, type",
        [org, contact_id],
    )
    return await cur.fetchall()


async def last_activity(conn: Conn, org: int, contact_id: int) -> list[LastActivityRecord]:
    cur = conn.cursor(row_factory=class_row(LastActivityRecord))
    await cur.execute(
        "select type, last_day from contact_last_activity"
        " where organization_id = %s and contact_id = %s order by type",
        [org, contact_id],
    )
    return await cur.fetchall()


async def move_activity(conn: Conn, org: int, source: int, target: int) -> None:
    """Add ``source``'s daily counts to ``target``'s and keep the later of their last days
    per type, so segment rules count the merged contact's whole activity."""
    await conn.execute(
        """
        with gone as (
            delete from contact_last_activity
            where organization_id = %(org)s and contact_id = %(source)s
            returning type, last_day
        )
        insert into contact_last_activity as a (organization_id, type, contact_id, last_day)
        select %(org)s, type, %(target)s, last_day from gone
        on conflict (organization_id, type, contact_id)
        do update set last_day = greatest(a.last_day, excluded.last_day)
        """,
        {"org": org, "source": source, "target": target},
    )
    await conn.execute(
        """
        with gone as (
            delete from contact_activity
            where organization_id = %(org)s and contact_id = %(source)s
            returning type, day, events
        )
        insert into contact_activity as a (organization_id, type, day, contact_id, events)
        select %(org)s, type, day, %(target)s, events from gone
        on conflict (organization_id, type, day, contact_id)
        do update set events = a.events + excluded.events
        """,
        {"org": org, "source": source, "target": target},
    )


async def erase_activity(conn: Conn, org: int, contact_id: int) -> int:
    daily = await conn.execute(
        "delete from contact_activity where organization_id = %s and contact_id = %s",
        [org, contact_id],
    )
    last = await conn.execute(
        "delete from contact_last_activity where organization_id = %s and contact_id = %s",
        [org, contact_id],
    )
    return daily.rowcount + last.rowcount


# -- donations (by the donor's address) -----------------------------------------------------


async def donations(conn: Conn, org: int, email: str) -> list[DonationRecord]:
    cur = conn.cursor(row_factory=class_row(DonationRecord))
    await cur.execute(
        "select id, campaign_id, status, amount_minor as amount, currency, email, name,"
        " metadata, gateway_reference, created_at, succeeded_at, failed_at from donations"
        " where organization_id = %s and lower(email) = lower(%s) order by id",
        [org, email],
    )
    return await cur.fetchall()


async def move_donations(conn: Conn, org: int, source_email: str, target_email: str) -> int:
    cur = await conn.execute(
        "update donations set email = %s where organization_id = %s and lower(email) = lower(%s)",
        [target_email, org, source_email],
    )
    return cur.rowcount


async def erase_donations(conn: Conn, org: int, email: str) -> int:
    """Keep the donations (amounts, dates and gateway references are the accounts, which
    the law requires to be kept) without the donor: address, name, metadata and any
    receipt error text (SMTP replies quote the address) are removed."""
    cur = await conn.execute(
        "update donations set email = %s, name = null, metadata = '{}', receipt_error = null"
        " where organization_id = %s and lower(email) = lower(%s)",
        [ERASED_EMAIL, org, email],
    )
    return cur.rowcount


# -- suppressions and soft bounces (by address, lower-cased) --------------------------------


async def suppressions(conn: Conn, org: int, email: str) -> list[SuppressionRecord]:
    cur = conn.cursor(row_factory=class_row(SuppressionRecord))
    await cur.execute(
        "select email, reason, detail, created_at from suppressions"
        " where organization_id = %s and email = lower(%s)",
        [org, email],
    )
    return await cur.fetchall()


async def soft_bounces(conn: Conn, org: int, email: str) -> list[SoftBounceRecord]:
    cur = conn.cursor(row_factory=class_row(SoftBounceRecord))
    await cur.execute(
        "select email, bounces, first_at, last_at from soft_bounces"
        " where organization_id = %s and email = lower(%s)",
        [org, email],
    )
    return await cur.fetchall()


async def erase_suppressions(conn: Conn, org: int, email: str) -> int:
    """Remove the address from the suppression list and the soft-bounce counts; the
    contact's tombstone (a hash) keeps it from being imported again."""
    cur = await conn.execute(
        "delete from suppressions where organization_id = %s and email = lower(%s)", [org, email]
    )
    await conn.execute(
        "delete from soft_bounces where organization_id = %s and email = lower(%s)", [org, email]
    )
    return cur.rowcount


# -- webhook payloads -----------------------------------------------------------------------


async def scrub_webhook_events(conn: Conn, org: int, contact_id: int, email: str) -> int:
    """Replace the payload of ``event.received`` webhook events that carried the person's
    event (and so their address and properties) with ``{"erased": true}``. A delivery still
    pending sends that instead; receivers that got the event before must erase it too."""
    cur = await conn.execute(
        "update webhook_events set data = '{\"erased\": true}'"
        " where organization_id = %(org)s and type = 'event.received'"
        " and (data ->> 'contact_id' = %(contact)s::text"
        " or data ->> 'contact_email' = lower(%(email)s))",
        {"org": org, "contact": contact_id, "email": email},
    )
    return cur.rowcount
