"""A contact's life after it is created: edits, its lists, deletion and merging.

Consent rules, one place: any status may become ``unsubscribed``, ``bounced`` or
``complained``; a contact in one of those becomes ``subscribed`` again only when the caller
says consent was collected again (``resubscribe``), or by the person's own hand in the
preference centre. A deleted or merged contact leaves a tombstone (a hash of its address)
so that an import does not bring it back silently. Every change is announced to webhooks
(``contact.updated``, ``contact.deleted``) in the transaction that makes it.
"""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg import errors as pg_errors

from surge.contacts import footprint, person_store, store, traces
from surge.contacts.schemas import (
    Contact,
    ContactPatch,
    Membership,
    MembershipPage,
    MergeResult,
    Moved,
)
from surge.contacts.service import check_limit
from surge.contacts.store import Conn
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import check_email, decode_cursor, next_cursor
from surge.webhooks.service import emit

#: Statuses that stop all mail; the person (or the address) said so.
STOPPED = frozenset({"unsubscribed", "bounced", "complained"})
#: Of those, the person's own choices, which a merge carries over to the contact kept.
CHOSEN = frozenset({"unsubscribed", "complained"})


def check_status_change(current: str, new: str, resubscribe: bool) -> None:
    """Conflict (naming ``status``) for a re-subscription without consent collected again."""
    if new == "subscribed" and current in STOPPED and not resubscribe:
        raise Conflict(
            f"the contact is {current}; set it subscribed only with consent collected again,"
            ' and say so with "resubscribe": true',
            "status",
        )


def patch_attributes(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Merge ``patch`` into ``stored`` key by key; a key set to None is removed."""
    merged = dict(stored)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def merged_status(target: str, source: str) -> str:
    """The status of a contact after another was merged into it.

    The kept contact's own status, except that the person's choice to stop (unsubscribed,
    complained) made on the other address stands: merging must not re-subscribe anyone.
    A bounce belongs to the other address, which goes, so it is not carried over.
    """
    if target == "subscribed" and source in CHOSEN:
        return source
    return target


_FIELDS = ("email", "first_name", "last_name", "status", "attributes")


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f for f in _FIELDS if old[f] != new[f]]


async def _write(conn: Conn, org: int, contact_id: int, new: dict[str, Any]) -> Contact:
    try:
        row = await person_store.write_contact(
            conn,
            org,
            contact_id,
            new["email"],
            new["first_name"],
            new["last_name"],
            new["status"],
            new["attributes"],
        )
    except pg_errors.UniqueViolation:
        raise Conflict(f"another contact has the address {new['email']}", "email") from None
    return Contact(**row)


async def _locked(conn: Conn, org: int, contact_id: int) -> dict[str, Any]:
    rows = await person_store.lock_contacts(conn, org, [contact_id])
    if not rows:
        raise NotFound(f"contact {contact_id} not found")
    return rows[0]


async def update_contact(conn: Conn, org: int, contact_id: int, patch: ContactPatch) -> Contact:
    """Apply a partial update; Conflict for another contact's address or a re-subscription
    without ``resubscribe``. Announces ``contact.updated`` with the fields that changed."""
    email = None if patch.email is msgspec.UNSET else check_email("email", patch.email)
    async with conn.transaction():
        old = await _locked(conn, org, contact_id)
        new = dict(old)
        if email is not None:
            new["email"] = email
        if patch.first_name is not msgspec.UNSET:
            new["first_name"] = patch.first_name
        if patch.last_name is not msgspec.UNSET:
            new["last_name"] = patch.last_name
        if patch.status is not msgspec.UNSET:
            check_status_change(old["status"], patch.status, patch.resubscribe)
            new["status"] = patch.status
        if patch.attributes is not msgspec.UNSET:
            new["attributes"] = patch_attributes(old["attributes"], patch.attributes)
        changed = _changed(old, new)
        if not changed:
            return Contact(**old)
        contact = await _write(conn, org, contact_id, new)
        if "email" in changed:
            # Staff gave this address to a contact on purpose: it is not a deleted one now.
            await person_store.forget_tombstone(conn, org, contact.email)
            # What is filed under the old address stays the person's (privacy.py).
            await person_store.remember_address(conn, org, contact_id, old["email"])
            await person_store.forget_address(conn, org, contact_id, contact.email)
        await emit(
            conn,
            org,
            "contact.updated",
            {"contact_id": contact_id, "changed": changed, "via": "api"},
        )
    return contact


async def delete_contact(conn: Conn, org: int, contact_id: int) -> None:
    """Delete a contact: its list memberships go; its deliveries stay as the history of
    their messages (a queued one ends skipped), its journeys as exited ones; a tombstone
    keeps its address from being imported again silently. Announces ``contact.deleted``."""
    async with conn.transaction():
        await _locked(conn, org, contact_id)
        await footprint.skip_queued(conn, org, contact_id, "contact deleted")
        await footprint.exit_enrolments(conn, org, contact_id, "contact deleted")
        await person_store.delete_contact(conn, org, contact_id, "deleted")
        await emit(
            conn,
            org,
            "contact.deleted",
            {"contact_id": contact_id, "reason": "deleted", "merged_into": None},
        )


async def merge_contacts(conn: Conn, org: int, target_id: int, source_id: int) -> MergeResult:
    """Merge contact ``source_id`` into ``target_id``, in one transaction, then delete it.

    Lists, deliveries, events and donations move to the target; attributes merge with the
    target's winning, names fill in where the target has none, and the status follows
    ``merged_status``. The source's address is tombstoned (merged into the target).
    """
    if source_id == target_id:
        raise Invalid("from", "a contact cannot be merged into itself")
    async with conn.transaction():
        rows = {
            r["id"]: r for r in await person_store.lock_contacts(conn, org, [target_id, source_id])
        }
        if target_id not in rows:
            raise NotFound(f"contact {target_id} not found")
        if source_id not in rows:
            raise NotFound(f"contact {source_id} not found", "from")
        target, source = rows[target_id], rows[source_id]
        lists = await person_store.copy_memberships(conn, org, source_id, target_id)
        await footprint.skip_queued(conn, org, source_id, f"contact merged into {target_id}")
        moved, dropped = await footprint.move_deliveries(conn, org, source_id, target_id)
        events = await traces.move_events(conn, org, source_id, source["email"], target_id)
        await traces.move_activity(conn, org, source_id, target_id)
        journeys = await footprint.move_enrolments(conn, org, source_id, target_id)
        profiles = await traces.move_profiles(conn, org, source["email"], target["email"])
        donations = await footprint.move_donations(conn, org, source["email"], target["email"])
        await person_store.adopt_addresses(conn, org, source_id, target_id, source["email"])
        await person_store.delete_contact(conn, org, source_id, "merged", target_id)
        new = dict(target)
        new["first_name"] = target["first_name"] or source["first_name"]
        new["last_name"] = target["last_name"] or source["last_name"]
        new["attributes"] = {**source["attributes"], **target["attributes"]}
        new["status"] = merged_status(target["status"], source["status"])
        changed = _changed(target, new)
        contact = await _write(conn, org, target_id, new) if changed else Contact(**target)
        if lists:
            changed.append("lists")
        await emit(
            conn,
            org,
            "contact.deleted",
            {"contact_id": source_id, "reason": "merged", "merged_into": target_id},
        )
        await emit(
            conn,
            org,
            "contact.updated",
            {"contact_id": target_id, "changed": changed, "via": "merge", "merged_from": source_id},
        )
    return MergeResult(
        contact=contact,
        merged_from=source_id,
        moved=Moved(
            lists=lists,
            deliveries=moved,
            deliveries_dropped=dropped,
            events=events,
            donations=donations,
            journeys=journeys,
            profiles=profiles,
        ),
    )


def membership(row: person_store.MembershipRow) -> Membership:
    """A membership with its standing: subscribed | unsubscribed (left the list) | pending
    (double opt-in, not confirmed yet)."""
    if row.unsubscribed_at is not None:
        status = "unsubscribed"
    else:
        status = "pending" if row.confirmed_at is None else "subscribed"
    return Membership(
        list_id=row.list_id,
        name=row.name,
        status=status,
        added_at=row.added_at,
        confirmed_at=row.confirmed_at,
        unsubscribed_at=row.unsubscribed_at,
    )


async def contact_lists(
    conn: Conn, org: int, contact_id: int, *, after: str | None, limit: int
) -> MembershipPage:
    """One page of the lists a contact is or was on, with its standing on each."""
    after_id, limit = decode_cursor(after), check_limit(limit)
    if await store.get_contact(conn, org, contact_id) is None:
        raise NotFound(f"contact {contact_id} not found")
    rows = await person_store.memberships(conn, org, contact_id, after_id, limit)
    data = [membership(r) for r in rows]
    nxt = next_cursor([m.list_id for m in data], limit)
    return MembershipPage(data=data, next=nxt)
