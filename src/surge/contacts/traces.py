"""SQL of what a person did, as other domains recorded it: their events (ingest), the
activity rollups segments read, and the Segment profiles (userIds, anonymousIds) whose calls
carried their address.

Why contacts touches these tables itself: see ``footprint``. None has an index by contact
or address (event intake stays one COPY into an index-light table; the rollups' keys start
with the organisation and the event type), so these statements scan the organisation's
rows: fine for a rare, deliberate merge, export or erasure, never a hot path.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.rows import class_row

from surge.contacts.person_store import lowered
from surge.contacts.schemas import (
    ActivityRecord,
    EventRecord,
    LastActivityRecord,
    ProfileRecord,
)
from surge.contacts.store import Conn

# -- events (partitioned by day; contact_email is stored lower-cased) -----------------------

# The person's events: by contact id, by address, or by the Segment ids of their profiles.
_PERSON_EVENTS = (
    "organization_id = %(org)s and (contact_id = %(contact)s"
    " or contact_email = any(%(emails)s::text[])"
    " or user_id = any(%(ids)s::text[]) or anonymous_id = any(%(ids)s::text[]))"
)


async def events(
    conn: Conn, org: int, contact_id: int, emails: Sequence[str], profile_ids: list[str]
) -> list[EventRecord]:
    cur = conn.cursor(row_factory=class_row(EventRecord))
    await cur.execute(
        "select id, type, campaign_id, contact_email, payload, occurred_at, received_at"
        f" from events where {_PERSON_EVENTS} order by occurred_at, id",
        {"org": org, "contact": contact_id, "emails": lowered(emails), "ids": profile_ids},
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


async def erase_events(
    conn: Conn, org: int, contact_id: int, emails: Sequence[str], profile_ids: list[str]
) -> int:
    cur = await conn.execute(
        f"delete from events where {_PERSON_EVENTS}",
        {"org": org, "contact": contact_id, "emails": lowered(emails), "ids": profile_ids},
    )
    return cur.rowcount


# -- Segment profiles (ingest: by the address their calls carried, lower-cased) -------------

_PROFILE_COLUMNS = (
    "p.id, p.known, p.traits, p.events, p.first_seen_at, p.last_seen_at,"
    " array(select a.alias from profile_aliases a where a.organization_id = p.organization_id"
    " and a.profile_id = p.id order by a.alias) as aliases,"
    " array(select g.group_id from profile_group_members g"
    " where g.organization_id = p.organization_id and g.profile_id = p.id"
    " order by g.group_id) as groups"
)


async def profiles(conn: Conn, org: int, emails: Sequence[str]) -> list[ProfileRecord]:
    cur = conn.cursor(row_factory=class_row(ProfileRecord))
    await cur.execute(
        f"select {_PROFILE_COLUMNS} from profiles p"
        " where p.organization_id = %s and p.contact_email = any(%s::text[]) order by p.id",
        [org, lowered(emails)],
    )
    return await cur.fetchall()


def profile_ids(found: list[ProfileRecord]) -> list[str]:
    """Every Segment id that stands for the person: the profiles' own and their aliases."""
    return sorted({i for p in found for i in (p.id, *p.aliases)})


async def move_profiles(conn: Conn, org: int, source_email: str, target_email: str) -> int:
    cur = await conn.execute(
        "update profiles set contact_email = lower(%s), updated_at = now()"
        " where organization_id = %s and contact_email = lower(%s)",
        [target_email, org, source_email],
    )
    return cur.rowcount


async def erase_profiles(conn: Conn, org: int, emails: Sequence[str]) -> int:
    """Delete the profiles that named the addresses, their aliases and group memberships."""
    cur = await conn.execute(
        """
        with gone as (
            delete from profiles where organization_id = %(org)s
                and contact_email = any(%(emails)s::text[])
            returning id
        ), aliases as (
            delete from profile_aliases a using gone
            where a.organization_id = %(org)s and a.profile_id = gone.id
        ), groups as (
            delete from profile_group_members g using gone
            where g.organization_id = %(org)s and g.profile_id = gone.id
        )
        select count(*) from gone
        """,
        {"org": org, "emails": lowered(emails)},
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


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
