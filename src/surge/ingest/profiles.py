"""Profiles: Segment's identities resolved, so that every call counts for the person it is about.

The ``profiles`` consumer reads the events of Segment calls (those with a ``userId`` or an
``anonymousId``) in (xid, id) order, one batch per transaction like every consumer:

- every call counts for its profile: ``userId`` if it has one, else ``anonymousId``, each
  resolved through ``profile_aliases`` (so a call from a merged id counts for the profile
  it was merged into, whenever it arrives): events, first and last seen;
- ``identify`` merges its traits (``traits``, and ``context.traits`` where RudderStack's SDKs
  put them) into the profile (top-level keys, later calls win) and sets the
  profile's ``contact_email`` (the address intake found in the call, if any);
- ``group`` makes the profile a member of ``groupId`` and merges the group's traits;
- ``alias(previousId → userId)`` merges the previous id's profile into the user's: its
  counts, traits (the user's win), groups and its own aliases. From then on its events, past
  and future, count for the user;
- an ``identify`` call that carries both a ``userId`` and an ``anonymousId`` (what
  analytics.js sends when a visitor signs in) links the anonymous id to the user the same
  way, unless the anonymous id is already linked or was itself used as a userId: two known
  users are only ever merged by an explicit alias. Only identify: a library that invented a
  fresh anonymousId for every call would otherwise add an alias per event.

Contacts are not touched: a profile names its contact by email (``contact_email``), and
merging contact rows is the contacts domain's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import msgspec
from msgspec import Raw, Struct

from surge.errors import NotFound
from surge.ingest import profile_store as store
from surge.ingest.profile_store import ProfileDelta
from surge.ingest.schemas import Profile, ProfileGroup
from surge.ingest.store import Conn, Event

Key = tuple[int, str]
#: Aliases and groups listed with a profile.
LISTED = 100


def _null() -> Raw:
    return Raw(b"null")


class CallContext(Struct):
    traits: Raw = msgspec.field(default_factory=_null)


class IdentityCall(Struct, rename="camel"):
    """What the consumer reads from the payload of identify, group and alias calls.

    Traits stay raw JSON (msgspec takes no Raw in a union, hence ``null`` for none).
    """

    previous_id: str | int | None = None
    group_id: str | int | None = None
    traits: Raw = msgspec.field(default_factory=_null)
    #: RudderStack's SDKs send identify traits here rather than at the top level.
    context: CallContext | None = None


def _text(value: str | int | None) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _object(raw: Raw) -> str | None:
    """The JSON text of ``raw`` if it is an object (traits of another shape are ignored)."""
    text = bytes(raw).decode()
    return text if text.lstrip().startswith("{") else None


@dataclass(slots=True)
class Batch:
    """A handler call's state: where ids stand, and the writes not yet sent."""

    #: (org, id) → the profile it counts for; ids absent from it are their own.
    canonical: dict[Key, str]
    #: Profiles seen as a userId, in the database or in this batch.
    known: set[Key]
    deltas: dict[Key, ProfileDelta] = field(default_factory=dict)
    group_traits: dict[Key, list[str]] = field(default_factory=dict)
    members: dict[tuple[int, str, str], datetime] = field(default_factory=dict)

    def resolve(self, org: int, id: str) -> str:
        return self.canonical.get((org, id), id)

    def delta(self, org: int, profile_id: str) -> ProfileDelta:
        found = self.deltas.get((org, profile_id))
        if found is None:
            found = self.deltas[org, profile_id] = ProfileDelta()
        return found

    async def write(self, conn: Conn) -> None:
        """Send the pending writes: needed before a merge moves what they would add to."""
        if self.deltas:
            await store.add_to_profiles(conn, self.deltas)
        await store.add_to_groups(conn, self.group_traits, self.members)
        self.deltas, self.group_traits, self.members = {}, {}, {}

    async def merge(self, conn: Conn, org: int, source: str, target: str) -> None:
        """Profile ``source`` becomes part of ``target`` (both canonical)."""
        await self.write(conn)
        await store.merge(conn, org, source, target)
        for key, profile_id in self.canonical.items():
            if key[0] == org and profile_id == source:
                self.canonical[key] = target
        self.canonical[org, source] = target
        if (org, source) in self.known:
            self.known.add((org, target))


def _ids(events: list[Event], calls: dict[int, IdentityCall]) -> list[Key]:
    ids: set[Key] = set()
    for event in events:
        for id in (event.user_id, event.anonymous_id):
            if id is not None:
                ids.add((event.organization_id, id))
        previous = _text(calls[event.id].previous_id) if event.id in calls else None
        if previous is not None:
            ids.add((event.organization_id, previous))
    return sorted(ids)


async def _load(conn: Conn, events: list[Event], calls: dict[int, IdentityCall]) -> Batch:
    batch = Batch({}, set())
    for row in await store.resolve(conn, _ids(events, calls)):
        key = (row.organization_id, row.id)
        if row.profile_id is not None:
            batch.canonical[key] = row.profile_id
        if row.known:
            batch.known.add(key)
    return batch


def _decode_calls(events: list[Event]) -> dict[int, IdentityCall]:
    """The identify, group and alias payloads of ``events`` (the consumer reads only those).

    A payload that does not decode raises: the consumer sets that event aside, alone.
    """
    return {
        event.id: msgspec.json.decode(event.payload, type=IdentityCall)
        for event in events
        if event.payload is not None
    }


async def handle(conn: Conn, events: list[Event]) -> None:
    """The profiles consumer's handler (see the module doc)."""
    mine = [e for e in events if e.user_id is not None or e.anonymous_id is not None]
    if not mine:
        return
    calls = _decode_calls(mine)
    batch = await _load(conn, mine, calls)
    for event in mine:
        await _apply(conn, batch, event, calls.get(event.id))
    await batch.write(conn)


async def _apply(conn: Conn, batch: Batch, event: Event, call: IdentityCall | None) -> None:
    org = event.organization_id
    if event.type == "alias" and call is not None and event.user_id is not None:
        previous = _text(call.previous_id)
        if previous is not None:
            source = batch.resolve(org, previous)
            target = batch.resolve(org, event.user_id)
            if source != target:
                await batch.merge(conn, org, source, target)
    elif event.type == "identify" and event.user_id and event.anonymous_id:
        anonymous = (org, event.anonymous_id)
        target = batch.resolve(org, event.user_id)
        unlinked = anonymous not in batch.canonical and anonymous not in batch.known
        if unlinked and event.anonymous_id != target:
            await batch.merge(conn, org, event.anonymous_id, target)
    own = event.user_id if event.user_id is not None else event.anonymous_id
    assert own is not None
    profile_id = batch.resolve(org, own)
    if event.user_id is not None:
        batch.known.add((org, profile_id))
        batch.known.add((org, event.user_id))
    delta = batch.delta(org, profile_id)
    delta.events += 1
    delta.known = delta.known or event.user_id is not None
    if delta.first_seen_at is None or event.occurred_at < delta.first_seen_at:
        delta.first_seen_at = event.occurred_at
    if delta.last_seen_at is None or event.occurred_at > delta.last_seen_at:
        delta.last_seen_at = event.occurred_at
    if call is None:
        return
    if event.type == "identify":
        if event.contact_email is not None:
            delta.contact_email = event.contact_email
        # Both places, the top level winning: Segment's libraries send traits there,
        # RudderStack's in context.traits.
        context = _object(call.context.traits) if call.context else None
        sent = [t for t in (context, _object(call.traits)) if t is not None]
        if sent:
            delta.traits = [*(delta.traits or []), *sent]
    elif event.type == "group":
        group_id = _text(call.group_id)
        if group_id is None:
            return
        key = (org, profile_id, group_id)
        batch.members[key] = min(batch.members.get(key, event.occurred_at), event.occurred_at)
        group_traits = _object(call.traits)
        if group_traits is not None:
            batch.group_traits.setdefault((org, group_id), []).append(group_traits)


async def find(conn: Conn, organization_id: int, id: str) -> Profile:
    """The profile ``id`` counts for (a userId, an anonymousId or an alias); NotFound if none.

    A call processed by the consumer shows here within about a second of intake.
    """
    row = await store.profile(conn, organization_id, id)
    if row is None:
        raise NotFound(f"no profile has the id {id!r}")
    profile_id, known, email, traits, events, first, last, updated = row
    return Profile(
        profile_id,
        known,
        email,
        Raw(traits),
        events,
        first,
        last,
        updated,
        await store.aliases(conn, organization_id, profile_id, LISTED),
        [
            ProfileGroup(group_id, Raw(group_traits), joined)
            for group_id, group_traits, joined in await store.groups(
                conn, organization_id, profile_id, LISTED
            )
        ],
    )
