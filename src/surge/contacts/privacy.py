"""Data protection: everything Surge holds on one person, exported or erased.

Export (GDPR art. 15 and 20) reads the contact, its lists, its deliveries, its events (by
contact id or address) and their per-day rollup, the donations made with its address, and
the address's suppression and soft-bounce records, in one read-only snapshot. "Its
address" is every address the contact has had: the current one and the former ones kept in
``contact_addresses`` (a PATCH that changed it, a merge that folded another contact in).

Erasure (art. 17) deletes, in one transaction: the contact and its list memberships, its
deliveries (one still queued is first counted as skipped, so ``message_stats`` stays
whole; every other figure — message_stats, campaign_totals, event_counts — is a counter
and keeps its value), its events and their per-day rollup, the address's suppression and
soft-bounce rows, and the ``event.received`` webhook payloads that carried its events.
Donations are kept for the accounts (a legal obligation, art. 17(3)(b)) but lose the
donor's address, name and metadata. What remains of the person is the tombstone: a salted
SHA-256 of the address, enough to keep a strict import from adding them again (a
suppression, as data protection authorities expect one to be kept), never enough to read
the address back.
"""

from __future__ import annotations

from surge.contacts import footprint, person_store, store, traces
from surge.contacts.lifecycle import membership
from surge.contacts.schemas import Contact, Erased, Erasure, PersonalData
from surge.contacts.store import Conn
from surge.errors import NotFound
from surge.webhooks.service import emit


async def find_contact(conn: Conn, org: int, email: str) -> int:
    """The id of the organisation's contact with this address now, else of the contact that
    had it last; NotFound otherwise."""
    contact_id = await person_store.find_by_email(conn, org, email.strip())
    if contact_id is None:
        contact_id = await person_store.find_by_former_address(conn, org, email.strip())
    if contact_id is None:
        raise NotFound(f"no contact with the address {email.strip()}", "email")
    return contact_id


async def addresses(conn: Conn, org: int, contact_id: int, email: str) -> list[str]:
    """The person's addresses: the contact's own and those it had before (a PATCH changed
    it, or another contact was merged into it), for what is filed only under one of them."""
    return [email, *await person_store.former_addresses(conn, org, contact_id)]


async def export_contact(conn: Conn, org: int, contact_id: int) -> PersonalData:
    """Everything Surge holds on the contact's person, as of one moment."""
    async with conn.transaction():
        await conn.execute("set transaction isolation level repeatable read, read only")
        row = await store.get_contact(conn, org, contact_id)
        if row is None:
            raise NotFound(f"contact {contact_id} not found")
        contact = Contact(**row)
        cur = await conn.execute("select now()")
        now = await cur.fetchone()
        assert now is not None
        lists = await person_store.memberships(conn, org, contact_id)
        emails = await addresses(conn, org, contact_id, contact.email)
        profiles = await traces.profiles(conn, org, emails)
        ids = traces.profile_ids(profiles)
        return PersonalData(
            exported_at=now[0],
            contact=contact,
            lists=[membership(m) for m in lists],
            deliveries=await footprint.deliveries(conn, org, contact_id),
            events=await traces.events(conn, org, contact_id, emails, ids),
            activity=await traces.activity(conn, org, contact_id),
            last_activity=await traces.last_activity(conn, org, contact_id),
            profiles=profiles,
            journeys=await footprint.enrolments(conn, org, contact_id),
            donations=await footprint.donations(conn, org, emails),
            suppressions=await footprint.suppressions(conn, org, emails),
            soft_bounces=await footprint.soft_bounces(conn, org, emails),
        )


async def erase_contact(conn: Conn, org: int, contact_id: int) -> Erasure:
    """Erase the contact's person (see the module's docstring), atomically; announces
    ``contact.deleted`` with reason ``erased`` and no personal data."""
    async with conn.transaction():
        rows = await person_store.lock_contacts(conn, org, [contact_id])
        if not rows:
            raise NotFound(f"contact {contact_id} not found")
        emails = await addresses(conn, org, contact_id, rows[0]["email"])
        lists = len(await person_store.memberships(conn, org, contact_id))
        ids = traces.profile_ids(await traces.profiles(conn, org, emails))
        await footprint.skip_queued(conn, org, contact_id, "contact erased")
        erased = Erased(
            lists=lists,
            deliveries=await footprint.erase_deliveries(conn, org, contact_id),
            events=await traces.erase_events(conn, org, contact_id, emails, ids),
            activity=await traces.erase_activity(conn, org, contact_id),
            profiles=await traces.erase_profiles(conn, org, emails),
            journeys=await footprint.erase_enrolments(conn, org, contact_id),
            donations=await footprint.erase_donations(conn, org, emails),
            suppressions=await footprint.erase_suppressions(conn, org, emails),
            webhook_events=await footprint.scrub_webhook_events(conn, org, contact_id, emails, ids),
        )
        await person_store.delete_contact(conn, org, contact_id, "erased")
        await emit(
            conn,
            org,
            "contact.deleted",
            {"contact_id": contact_id, "reason": "erased", "merged_into": None},
        )
    return Erasure(contact_id=contact_id, erased=erased)
