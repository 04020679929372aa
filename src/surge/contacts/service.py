"""Business rules for contacts, lists and imports. Plain data in, plain data out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec

from surge.contacts import store
from surge.contacts.schemas import (
    MAX_BATCH,
    STATUSES,
    Contact,
    ContactBatch,
    ContactIn,
    ContactList,
    Import,
    ImportPage,
    ListIn,
    ListPage,
    MembersIn,
    MembersResult,
    NotFoundMembers,
    Page,
    UpsertResult,
    Written,
)
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import check_choice, check_email, decode_cursor, next_cursor, valid_email
from surge.jobs import enqueue

Conn = store.Conn

IMPORT_TASK = "contacts.import"
#: Sends the confirmation mails of members added to a double opt-in list.
CONFIRM_TASK = "contacts.confirm"
#: Size of one stored piece of an upload; the import job reads one at a time.
CHUNK_BYTES = 1024 * 1024


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_BATCH:
        raise Invalid("limit", f"limit must be between 1 and {MAX_BATCH}")
    return limit


# -- contacts -----------------------------------------------------------------------------


def _normalise(batch: ContactBatch) -> list[ContactIn]:
    if not 1 <= len(batch.contacts) <= MAX_BATCH:
        raise Invalid("contacts", f"send 1 to {MAX_BATCH} contacts per request")
    for i, contact in enumerate(batch.contacts):
        contact.email = contact.email.strip()
        if not valid_email(contact.email):
            raise Invalid(f"contacts[{i}].email", f"invalid email address: {contact.email!r}")
    return batch.contacts


async def upsert_contacts(conn: Conn, org: int, batch: ContactBatch) -> UpsertResult:
    """Create or update contacts by email (case-insensitive), in one statement.

    Fields left out (or null) keep their stored value; attributes are merged key by key.
    Duplicates inside the batch are merged by the database: the last one wins. Re-sending
    a batch is harmless (it rewrites the same values), so no Idempotency-Key is needed.

    Strict unless ``batch.resubscribe``: an explicit "subscribed" leaves a contact who
    unsubscribed, bounced or complained as it is (reported in ``status_kept``), and an
    address whose contact was deleted, merged away or erased is a Conflict naming it, with
    nothing written.
    """
    contacts = _normalise(batch)
    columns: dict[str, list[Any]] = {
        "ord": list(range(len(contacts))),
        "email": [c.email for c in contacts],
        "first_name": [c.first_name for c in contacts],
        "last_name": [c.last_name for c in contacts],
        "status": [c.status for c in contacts],
        "attributes": [
            None if c.attributes is None else msgspec.json.encode(c.attributes).decode()
            for c in contacts
        ],
    }
    async with conn.transaction():
        merged = await store.upsert_contacts(conn, org, columns, batch.resubscribe)
        if merged.blocked:
            first = min(merged.blocked, key=lambda b: b.ord)
            raise Conflict(
                blocked_reason(first, '"resubscribe": true'), f"contacts[{first.ord}].email"
            )
    rows = merged.written
    by_email = {r["email"].lower(): Written(**r) for r in rows}
    created = sum(1 for r in rows if r["created"])
    return UpsertResult(
        created=created,
        updated=len(rows) - created,
        contacts=[by_email[c.email.lower()] for c in contacts],
        status_kept=sorted(merged.kept),
    )


def blocked_reason(blocked: store.Blocked, option: str) -> str:
    """Why a row's address was not created again, and how to do it on purpose."""
    again = f"add it again with {option} only if the person gave consent again"
    if blocked.reason == "merged":
        return f"this address was merged into contact {blocked.contact_id}; {again}"
    if blocked.reason == "erased":
        return f"this address was erased at the person's request; {again}"
    return f"this address's contact ({blocked.contact_id}) was deleted; {again}"


async def set_status(conn: Conn, org: int, contact_ids: Sequence[int], status: str) -> int:
    """Set the status of these contacts (unsubscribes, bounces, complaints); returns how
    many changed. Ids of other organisations or unknown ones are ignored."""
    if status not in STATUSES:
        raise Invalid("status", f"status must be one of {', '.join(sorted(STATUSES))}")
    return await store.set_status(conn, org, contact_ids, status)


async def get_contact(conn: Conn, org: int, contact_id: int) -> Contact:
    """One contact of this organisation; NotFound for another's (indistinguishable)."""
    row = await store.get_contact(conn, org, contact_id)
    if row is None:
        raise NotFound(f"contact {contact_id} not found")
    return Contact(**row)


async def list_contacts(
    conn: Conn, org: int, *, after: str | None, limit: int, email: str | None = None
) -> Page:
    """One page of contacts in id order, and the cursor of the next page."""
    rows = await store.list_contacts(conn, org, decode_cursor(after), check_limit(limit), email)
    return _page(rows, limit)


#: Contacts or members counted exactly up to this many; past it, the planner's estimate.
EXACT_COUNT = 10_000


async def contact_count(conn: Conn, org: int) -> tuple[int, bool]:
    """How many contacts the organisation has, and whether that is exact: counted up to
    ``EXACT_COUNT`` (a bounded index range), estimated past it (never a count(*))."""
    counted = await store.count_contacts(conn, org, EXACT_COUNT)
    if counted <= EXACT_COUNT:
        return counted, True
    return max(await store.estimate_contacts(conn, org), counted), False


def _page(rows: list[store.Row], limit: int) -> Page:
    data = [Contact(**r) for r in rows]
    # A full page may be the last one; the next request then returns an empty page.
    nxt = next_cursor([c.id for c in data], limit)
    return Page(data=data, next=nxt)


# -- lists --------------------------------------------------------------------------------


async def create_list(conn: Conn, org: int, body: ListIn) -> ContactList:
    """A new, empty list; a double opt-in one needs the address its confirmations come from."""
    name = body.name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("name", "name must be 1 to 200 characters")
    confirm_from = body.confirm_from
    if confirm_from is not None:
        confirm_from = check_email("confirm_from", confirm_from)
    elif body.double_opt_in:
        raise Invalid("confirm_from", "a double opt-in list needs the address its mail is from")
    row = await store.insert_list(conn, org, name, body.double_opt_in, confirm_from)
    return ContactList(**row)


async def page_lists(
    conn: Conn, org: int, *, after: str | None, limit: int, name: str | None = None
) -> ListPage:
    rows = await store.page_lists(conn, org, decode_cursor(after), check_limit(limit), name)
    data = [ContactList(**row) for row in rows]
    return ListPage(data, next_cursor([lst.id for lst in data], limit))


async def get_list(conn: Conn, org: int, list_id: int) -> ContactList:
    """One list of this organisation; NotFound otherwise."""
    row = await store.get_list(conn, org, list_id)
    if row is None:
        raise NotFound(f"list {list_id} not found")
    return ContactList(**row)


async def add_members(conn: Conn, org: int, list_id: int, body: MembersIn) -> MembersResult:
    """Add contacts, by id and/or email, to a list. Others' or unknown ones are "not found".

    A member who left the list (preference centre) is found but stays out, unless
    ``body.resubscribe`` says consent was collected again.
    """
    if not 1 <= len(body.contact_ids) + len(body.emails) <= MAX_BATCH:
        raise Invalid("contact_ids", f"send 1 to {MAX_BATCH} contact_ids and emails in total")
    target = await get_list(conn, org, list_id)
    emails = [e.strip().lower() for e in body.emails]
    pending = target.double_opt_in
    async with conn.transaction():
        found, added = await store.add_members(
            conn,
            org,
            list_id,
            body.contact_ids,
            emails,
            confirmed=not pending,
            rejoin=body.resubscribe,
        )
        if pending and added:
            # The confirmation mails go out from a job, committed with the new members.
            args = {"list_id": list_id, "contact_ids": added}
            await enqueue(conn, CONFIRM_TASK, args, queue="critical", organization_id=org)
    found_ids = {r["id"] for r in found}
    found_emails = {r["email"] for r in found}
    return MembersResult(
        added=len(added),
        pending=len(added) if pending else 0,
        found=len(found_ids),
        not_found=NotFoundMembers(
            contact_ids=[i for i in body.contact_ids if i not in found_ids],
            emails=[
                raw for e, raw in zip(emails, body.emails, strict=True) if e not in found_emails
            ],
        ),
    )


async def rename_list(conn: Conn, org: int, list_id: int, name: str) -> ContactList:
    """Give a list another name; NotFound if it is not this organisation's."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("name", "name must be 1 to 200 characters")
    row = await store.rename_list(conn, org, list_id, name)
    if row is None:
        raise NotFound(f"list {list_id} not found")
    return ContactList(**row)


async def remove_members(
    conn: Conn,
    org: int,
    list_id: int,
    *,
    contact_ids: Sequence[int] = (),
    emails: Sequence[str] = (),
) -> tuple[list[str], list[str]]:
    """Take contacts off a list (staff removing them, not the person leaving: the rows go,
    and an import or add-members may put them back). (addresses removed, given addresses
    that were not on it)."""
    if not 1 <= len(contact_ids) + len(emails) <= MAX_BATCH:
        raise Invalid("emails", f"give 1 to {MAX_BATCH} addresses")
    await get_list(conn, org, list_id)
    lowered = [e.strip().lower() for e in emails]
    removed = await store.remove_members(conn, org, list_id, contact_ids, lowered)
    gone = {r["email"].lower() for r in removed}
    missing = [raw for raw, low in zip(emails, lowered, strict=True) if low not in gone]
    return [r["email"] for r in removed], missing


async def member_count(conn: Conn, org: int, list_id: int) -> tuple[int, bool]:
    """How many members a list has, and whether that is exact: counted exactly up to
    ``EXACT_COUNT`` (a bounded index range), estimated past it (never a count(*) of a
    million rows)."""
    counted = await store.count_members(conn, org, list_id, EXACT_COUNT)
    if counted <= EXACT_COUNT:
        return counted, True
    return max(await store.estimate_members(conn, org, list_id), counted), False


async def confirm_member(conn: Conn, list_id: int, contact_id: int) -> bool | None:
    """A pending member confirms (the link in the confirmation mail); None if no member."""
    return await store.confirm_member(conn, list_id, contact_id)


async def list_members(
    conn: Conn, org: int, list_id: int, *, after: str | None, limit: int
) -> Page:
    """One page of a list's members (contacts) in contact id order."""
    after_id, limit = decode_cursor(after), check_limit(limit)
    await get_list(conn, org, list_id)
    return _page(await store.list_members(conn, org, list_id, after_id, limit), limit)


# -- imports ------------------------------------------------------------------------------


async def create_import(
    conn: Conn,
    org: int,
    body: AsyncIterator[bytes],
    *,
    max_bytes: int,
    list_id: int | None = None,
    filename: str | None = None,
    idempotency_key: str | None = None,
    resubscribe: bool = False,
) -> tuple[Import, bool]:
    """Store an uploaded CSV and queue its import job, atomically; (import, created now).

    The file is stored in ~1 MiB rows as it streams in, in the same transaction as the
    import row and its job, so once this returns the upload is durable and will be
    processed; if anything fails (too large, connection lost) nothing remains. With an
    ``idempotency_key`` already used by this organisation, the first import is returned and
    the body is not read. ``resubscribe`` turns strict mode off for this import (consent
    was collected again): see ``upsert_contacts``.
    """
    async with conn.transaction():
        if not await store.organization_exists(conn, org):
            raise NotFound(f"organization {org} not found")
        if list_id is not None:
            await get_list(conn, org, list_id)
        import_id = await store.insert_import(
            conn, org, list_id, filename, idempotency_key, resubscribe
        )
        if import_id is None:
            assert idempotency_key is not None
            existing = await store.import_by_key(conn, org, idempotency_key)
            assert existing is not None
            return await get_import(conn, org, existing), False
        chunks, size = await _store_chunks(conn, org, import_id, body, max_bytes)
        await store.set_uploaded(conn, org, import_id, chunks, size)
        await enqueue(
            conn,
            IMPORT_TASK,
            {"import_id": import_id},
            organization_id=org,
            queue="bulk",
            max_attempts=5,
        )
        return await get_import(conn, org, import_id), True


class TooLarge(Exception):
    """The upload passed the size limit; the caller maps it (413 for HTTP)."""


async def _store_chunks(
    conn: Conn, org: int, import_id: int, body: AsyncIterator[bytes], max_bytes: int
) -> tuple[int, int]:
    seq = size = 0
    pending = bytearray()
    async for piece in body:
        size += len(piece)
        if size > max_bytes:
            raise TooLarge(f"the file is larger than {max_bytes} bytes")
        pending += piece
        while len(pending) >= CHUNK_BYTES:
            await store.insert_chunk(conn, org, import_id, seq, bytes(pending[:CHUNK_BYTES]))
            del pending[:CHUNK_BYTES]
            seq += 1
    if pending:
        await store.insert_chunk(conn, org, import_id, seq, bytes(pending))
        seq += 1
    if size == 0:
        raise Invalid("body", "the CSV file is empty; a header row with an email column is needed")
    return seq, size


IMPORT_STATUSES = ("queued", "running", "completed", "failed")


async def page_imports(
    conn: Conn, org: int, *, after: str | None, limit: int, status: str | None = None
) -> ImportPage:
    check_choice("status", status, IMPORT_STATUSES)
    rows = await store.page_imports(conn, org, decode_cursor(after), check_limit(limit), status)
    data = [msgspec.convert(row, Import) for row in rows]
    return ImportPage(data, next_cursor([i.id for i in data], limit))


async def get_import(conn: Conn, org: int, import_id: int) -> Import:
    """An import's status and progress; NotFound if it is not this organisation's."""
    row = await store.get_import(conn, org, import_id)
    if row is None:
        raise NotFound(f"import {import_id} not found")
    row.pop("chunks_total")
    return msgspec.convert(row, Import)


async def recent_imports(conn: Conn, org: int, *, before: str | None, limit: int) -> ImportPage:
    """One page of imports, newest first, and the cursor of the next (older) page."""
    rows = await store.imports_newest_first(
        conn, org, decode_cursor(before, "before") or None, check_limit(limit)
    )
    data = [msgspec.convert(row, Import) for row in rows]
    return ImportPage(data, next_cursor([i.id for i in data], limit))


async def import_rejects(
    conn: Conn, org: int, import_id: int, *, after_row: int = 0, limit: int = MAX_BATCH
) -> tuple[list[str] | None, list[store.RejectRow]]:
    """The file's header and a page of the rows an import refused, in row order (the
    first ``imports.MAX_REJECTS`` refused rows are kept); NotFound for another's import."""
    header = await store.import_header(conn, org, import_id)
    if header is None and await store.get_import(conn, org, import_id) is None:
        raise NotFound(f"import {import_id} not found")
    return header, await store.rejects(conn, org, import_id, after_row, limit)
