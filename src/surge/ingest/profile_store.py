"""SQL of profiles: who Segment calls are about, their aliases and groups (migration 0019).

Written only by the ``profiles`` consumer (one runner at a time, in its batch transaction),
read by ``GET /v1/profile``. Traits are merged at the top level, later calls winning, as
Segment's identify and group calls do; the merge happens in SQL on the JSON text the
client sent, so no number jsonb holds has to pass through a Python decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from surge.ingest.store import Conn

# For every (organisation, id) of a batch: the profile it was merged into, if any, and
# whether the id is a profile that was seen as a userId. Both by primary key.
RESOLVE = """
select u.org, u.id, a.profile_id, coalesce(p.known, false)
from unnest(%(orgs)s::bigint[], %(ids)s::text[]) as u(org, id)
left join profile_aliases a on a.organization_id = u.org and a.alias = u.id
left join profiles p on p.organization_id = u.org and p.id = u.id
"""


class Resolved(NamedTuple):
    organization_id: int
    id: str
    #: The profile ``id`` was merged into, or None if it is its own.
    profile_id: str | None
    known: bool


async def resolve(conn: Conn, keys: Sequence[tuple[int, str]]) -> list[Resolved]:
    """Where each (organisation, id) of ``keys`` stands now."""
    cur = await conn.execute(RESOLVE, {"orgs": [k[0] for k in keys], "ids": [k[1] for k in keys]})
    return [Resolved(int(o), str(i), p, bool(k)) for o, i, p, k in await cur.fetchall()]


@dataclass(slots=True)
class ProfileDelta:
    """What a run of a batch's events adds to one profile."""

    known: bool = False
    contact_email: str | None = None
    events: int = 0
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    #: Trait objects of identify calls, as JSON text, oldest first.
    traits: list[str] | None = None


# `traits` is a JSON array of the calls' trait objects, oldest first: their keys are merged
# left to right (jsonb_object_agg keeps the last value of a repeated key), then over the
# stored ones. By primary key.
ADD_TO_PROFILES = """
insert into profiles as p (
    organization_id, id, known, contact_email, traits, events, first_seen_at, last_seen_at
)
select d.org, d.id, d.known, d.email,
    coalesce((
        select jsonb_object_agg(t.key, t.value order by o.n, t.key)
        from jsonb_array_elements(d.traits::jsonb) with ordinality as o(obj, n),
            jsonb_each(o.obj) as t
    ), '{}'),
    d.events, d.first_seen, d.last_seen
from unnest(
    %(orgs)s::bigint[], %(ids)s::text[], %(known)s::boolean[], %(emails)s::text[],
    %(traits)s::text[], %(events)s::bigint[], %(first)s::timestamptz[], %(last)s::timestamptz[]
) as d(org, id, known, email, traits, events, first_seen, last_seen)
on conflict (organization_id, id) do update set
    known = p.known or excluded.known,
    contact_email = coalesce(excluded.contact_email, p.contact_email),
    traits = p.traits || excluded.traits,
    events = p.events + excluded.events,
    first_seen_at = least(p.first_seen_at, excluded.first_seen_at),
    last_seen_at = greatest(p.last_seen_at, excluded.last_seen_at),
    updated_at = now()
"""


async def add_to_profiles(conn: Conn, deltas: dict[tuple[int, str], ProfileDelta]) -> None:
    """Upsert ``deltas`` per (organisation, profile id), in one statement."""
    keys = list(deltas)
    values = [deltas[k] for k in keys]
    await conn.execute(
        ADD_TO_PROFILES,
        {
            "orgs": [k[0] for k in keys],
            "ids": [k[1] for k in keys],
            "known": [d.known for d in values],
            "emails": [d.contact_email for d in values],
            "traits": ["[" + ",".join(d.traits) + "]" if d.traits else "[]" for d in values],
            "events": [d.events for d in values],
            "first": [d.first_seen_at for d in values],
            "last": [d.last_seen_at for d in values],
        },
    )


# Group traits, merged like a profile's; by primary key.
ADD_TO_GROUPS = """
insert into profile_groups as g (organization_id, id, traits)
select d.org, d.id, coalesce((
    select jsonb_object_agg(t.key, t.value order by o.n, t.key)
    from jsonb_array_elements(d.traits::jsonb) with ordinality as o(obj, n),
        jsonb_each(o.obj) as t
), '{}')
from unnest(%(orgs)s::bigint[], %(ids)s::text[], %(traits)s::text[]) as d(org, id, traits)
on conflict (organization_id, id) do update set
    traits = g.traits || excluded.traits, updated_at = now()
"""

ADD_MEMBERS = """
insert into profile_group_members as m (organization_id, profile_id, group_id, joined_at)
select * from unnest(
    %(orgs)s::bigint[], %(profiles)s::text[], %(groups)s::text[], %(joined)s::timestamptz[]
)
on conflict (organization_id, profile_id, group_id)
do update set joined_at = least(m.joined_at, excluded.joined_at)
"""


async def add_to_groups(
    conn: Conn,
    traits: dict[tuple[int, str], list[str]],
    members: dict[tuple[int, str, str], datetime],
) -> None:
    """Upsert groups' ``traits`` (JSON objects, oldest first) and ``members``."""
    if traits:
        keys = list(traits)
        await conn.execute(
            ADD_TO_GROUPS,
            {
                "orgs": [k[0] for k in keys],
                "ids": [k[1] for k in keys],
                "traits": ["[" + ",".join(traits[k]) + "]" for k in keys],
            },
        )
    if members:
        ms = list(members)
        await conn.execute(
            ADD_MEMBERS,
            {
                "orgs": [m[0] for m in ms],
                "profiles": [m[1] for m in ms],
                "groups": [m[2] for m in ms],
                "joined": [members[m] for m in ms],
            },
        )


# Profile `source` becomes part of `target` (both canonical: neither is an alias): every id
# merged into source now points at target, source itself too; source's counts, traits (the
# target's win) and groups move over. One statement: its parts touch different rows, so
# none needs to see another's writes.
MERGE = """
with repointed as (
    update profile_aliases set profile_id = %(target)s
    where organization_id = %(org)s and profile_id = %(source)s
), aliased as (
    insert into profile_aliases (organization_id, alias, profile_id)
    values (%(org)s, %(source)s, %(target)s)
    on conflict (organization_id, alias) do update set profile_id = excluded.profile_id
), gone as (
    delete from profiles where organization_id = %(org)s and id = %(source)s
    returning known, contact_email, traits, events, first_seen_at, last_seen_at
), merged as (
    insert into profiles as p (
        organization_id, id, known, contact_email, traits, events, first_seen_at, last_seen_at
    )
    select %(org)s, %(target)s, known, contact_email, traits, events, first_seen_at, last_seen_at
    from gone
    on conflict (organization_id, id) do update set
        known = p.known or excluded.known,
        contact_email = coalesce(p.contact_email, excluded.contact_email),
        traits = excluded.traits || p.traits,
        events = p.events + excluded.events,
        first_seen_at = least(p.first_seen_at, excluded.first_seen_at),
        last_seen_at = greatest(p.last_seen_at, excluded.last_seen_at),
        updated_at = now()
), moved as (
    delete from profile_group_members where organization_id = %(org)s and profile_id = %(source)s
    returning group_id, joined_at
)
insert into profile_group_members as m (organization_id, profile_id, group_id, joined_at)
select %(org)s, %(target)s, group_id, joined_at from moved
on conflict (organization_id, profile_id, group_id)
do update set joined_at = least(m.joined_at, excluded.joined_at)
"""


async def merge(conn: Conn, organization_id: int, source: str, target: str) -> None:
    """Merge profile ``source`` into ``target`` (see MERGE)."""
    await conn.execute(MERGE, {"org": organization_id, "source": source, "target": target})


# -- reads ------------------------------------------------------------------------------------

PROFILE = """
select p.id, p.known, p.contact_email, p.traits::text, p.events, p.first_seen_at,
    p.last_seen_at, p.updated_at
from profiles p
where p.organization_id = %(org)s and p.id = coalesce(
    (select profile_id from profile_aliases where organization_id = %(org)s and alias = %(id)s),
    %(id)s
)
"""

# By the index on (organization_id, profile_id).
ALIASES = """
select alias from profile_aliases where organization_id = %s and profile_id = %s
order by alias limit %s
"""

# By the primary key of profile_group_members, then profile_groups'.
GROUPS = """
select m.group_id, coalesce(g.traits, '{}')::text, m.joined_at
from profile_group_members m
left join profile_groups g on g.organization_id = m.organization_id and g.id = m.group_id
where m.organization_id = %s and m.profile_id = %s
order by m.group_id limit %s
"""


async def profile(conn: Conn, organization_id: int, id: str) -> Any:
    """The profile ``id`` is (its own or the one it was merged into), as a row, or None."""
    cur = await conn.execute(PROFILE, {"org": organization_id, "id": id})
    return await cur.fetchone()


async def aliases(conn: Conn, organization_id: int, profile_id: str, limit: int) -> list[str]:
    cur = await conn.execute(ALIASES, (organization_id, profile_id, limit))
    return [str(row[0]) for row in await cur.fetchall()]


async def groups(conn: Conn, organization_id: int, profile_id: str, limit: int) -> list[Any]:
    cur = await conn.execute(GROUPS, (organization_id, profile_id, limit))
    return await cur.fetchall()
