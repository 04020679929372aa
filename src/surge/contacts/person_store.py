"""SQL of a contact's life after it is created: edits, list choices, deletion, tombstones.

Every statement filters by organization_id and uses the contacts' primary key
(organization_id, id), list_members' primary key or its (organization_id, contact_id) index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from psycopg.rows import class_row, dict_row

from surge.contacts.store import CONTACT_COLUMNS, Conn, Row


async def lock_contacts(conn: Conn, org: int, ids: Sequence[int]) -> list[Row]:
    """These contacts of the organisation, locked until the transaction ends.

    Locked in id order, so two merges of the same pair cannot deadlock.
    """
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"select {CONTACT_COLUMNS} from contacts"
        " where organization_id = %s and id = any(%s::bigint[]) order by id for update",
        [org, list(ids)],
    )
    return await cur.fetchall()


async def find_by_email(conn: Conn, org: int, email: str) -> int | None:
    """The id of the organisation's contact with this address (any case)."""
    cur = await conn.execute(
        "select id from contacts where organization_id = %s and lower(email) = lower(%s)",
        [org, email],
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def write_contact(
    conn: Conn,
    org: int,
    contact_id: int,
    email: str,
    first_name: str | None,
    last_name: str | None,
    status: str,
    attributes: dict[str, Any],
) -> Row:
    """Store a contact's new values (the caller holds its lock). An address another contact
    has raises psycopg's UniqueViolation (contacts_organization_email_key)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        "update contacts set email = %s, first_name = %s, last_name = %s, status = %s,"
        " attributes = %s::jsonb, updated_at = now()"
        f" where organization_id = %s and id = %s returning {CONTACT_COLUMNS}",
        [
            email,
            first_name,
            last_name,
            status,
            msgspec.json.encode(attributes).decode(),
            org,
            contact_id,
        ],
    )
    row = await cur.fetchone()
    assert row is not None, "the caller locked the contact"
    return row


async def forget_tombstone(conn: Conn, org: int, email: str) -> None:
    """The address belongs to a contact again: it is no longer a deleted one."""
    await conn.execute(
        "delete from contact_tombstones"
        " where organization_id = %s and email_hash = contact_email_hash(%s, %s)",
        [org, org, email],
    )


def lowered(emails: Sequence[str]) -> list[str]:
    """Addresses as events, suppressions and profiles file them: lower-cased, once each."""
    if isinstance(emails, str):  # a str is a Sequence[str] too: one address, not letters
        raise TypeError("lowered() takes a list of addresses, not one")
    return sorted({email.lower() for email in emails})


async def remember_address(conn: Conn, org: int, contact_id: int, email: str) -> None:
    """The contact no longer has ``email``: keep it among its former addresses."""
    await conn.execute(
        "insert into contact_addresses (organization_id, contact_id, email)"
        " values (%s, %s, lower(%s)) on conflict do nothing",
        [org, contact_id, email],
    )


async def forget_address(conn: Conn, org: int, contact_id: int, email: str) -> None:
    """``email`` is the contact's address again, not a former one."""
    await conn.execute(
        "delete from contact_addresses"
        " where organization_id = %s and contact_id = %s and email = lower(%s)",
        [org, contact_id, email],
    )


async def former_addresses(conn: Conn, org: int, contact_id: int) -> list[str]:
    """The addresses the contact had before, lower-cased, oldest first."""
    cur = await conn.execute(
        "select email from contact_addresses where organization_id = %s and contact_id = %s"
        " order by replaced_at, email",
        [org, contact_id],
    )
    return [row[0] for row in await cur.fetchall()]


async def find_by_former_address(conn: Conn, org: int, email: str) -> int | None:
    """The contact that had ``email`` last, if one had it before."""
    cur = await conn.execute(
        "select contact_id from contact_addresses where organization_id = %s"
        " and email = lower(%s) order by replaced_at desc limit 1",
        [org, email],
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def adopt_addresses(conn: Conn, org: int, source: int, target: int, email: str) -> None:
    """Contact ``source`` (address ``email``) is merged into ``target``: its address and its
    former ones become the target's former addresses (before the source is deleted)."""
    await conn.execute(
        "insert into contact_addresses (organization_id, contact_id, email)"
        " select %(org)s, %(target)s, a from ("
        "  select lower(%(email)s) as a union"
        "  select email from contact_addresses"
        "  where organization_id = %(org)s and contact_id = %(source)s"
        " ) s where a <> (select lower(email) from contacts"
        "  where organization_id = %(org)s and id = %(target)s)"
        " on conflict do nothing",
        {"org": org, "source": source, "target": target, "email": email},
    )


async def delete_contact(
    conn: Conn, org: int, contact_id: int, reason: str, merged_into: int | None = None
) -> bool:
    """Delete the contact (its list memberships go with it) and leave a tombstone of its
    address: its hash, never the address. False if there was no such contact."""
    cur = await conn.execute(
        """
        with gone as (
            delete from contacts where organization_id = %(org)s and id = %(id)s
            returning id, email, status
        )
        insert into contact_tombstones
            (organization_id, email_hash, contact_id, reason, status, merged_into)
        select %(org)s, contact_email_hash(%(org)s, email), id, %(reason)s, status, %(into)s
        from gone
        on conflict (organization_id, email_hash) do update set
            contact_id = excluded.contact_id, reason = excluded.reason,
            status = excluded.status, merged_into = excluded.merged_into, created_at = now()
        """,
        {"org": org, "id": contact_id, "reason": reason, "into": merged_into},
    )
    return cur.rowcount == 1


# -- list memberships ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MembershipRow:
    list_id: int
    name: str
    added_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None


async def memberships(
    conn: Conn, org: int, contact_id: int, after: int = 0, limit: int | None = None
) -> list[MembershipRow]:
    """The lists the contact is or was on (left ones too), in list id order.

    Uses list_members_contact_idx (organization_id, contact_id) and lists' primary key.
    """
    cur = conn.cursor(row_factory=class_row(MembershipRow))
    await cur.execute(
        "select m.list_id, l.name, m.added_at, m.confirmed_at, m.unsubscribed_at"
        " from list_members m join lists l on l.organization_id = m.organization_id"
        " and l.id = m.list_id"
        " where m.organization_id = %s and m.contact_id = %s and m.list_id > %s"
        " order by m.list_id limit %s",
        [org, contact_id, after, limit],
    )
    return await cur.fetchall()


async def set_list_left(conn: Conn, org: int, contact_id: int, list_id: int, left: bool) -> bool:
    """Leave (``left``) or rejoin one list; whether anything changed."""
    cur = await conn.execute(
        "update list_members set unsubscribed_at = case when %(left)s then now() end"
        " where organization_id = %(org)s and list_id = %(list)s and contact_id = %(contact)s"
        " and (unsubscribed_at is null) = %(left)s",
        {"org": org, "list": list_id, "contact": contact_id, "left": left},
    )
    return cur.rowcount == 1


async def is_member(conn: Conn, org: int, contact_id: int, list_id: int) -> bool | None:
    """None if not a member of the list; else whether the contact left it."""
    cur = await conn.execute(
        "select unsubscribed_at is not null from list_members"
        " where organization_id = %s and list_id = %s and contact_id = %s",
        [org, list_id, contact_id],
    )
    row = await cur.fetchone()
    return None if row is None else bool(row[0])


async def leave_other_lists(conn: Conn, org: int, contact_id: int, keep: int) -> int:
    """Leave every list but ``keep``: how a person who unsubscribed from everything joins
    one list again without being subscribed to all the others."""
    cur = await conn.execute(
        "update list_members set unsubscribed_at = now()"
        " where organization_id = %s and contact_id = %s and list_id <> %s"
        " and unsubscribed_at is null",
        [org, contact_id, keep],
    )
    return cur.rowcount


async def copy_memberships(conn: Conn, org: int, source: int, target: int) -> int:
    """Give ``target`` the memberships of ``source`` in lists it is not on (as they are:
    added, confirmed, left); returns how many."""
    cur = await conn.execute(
        "insert into list_members (organization_id, list_id, contact_id, added_at,"
        " confirmed_at, confirm_sent_at, unsubscribed_at)"
        " select organization_id, list_id, %s, added_at, confirmed_at, confirm_sent_at,"
        " unsubscribed_at from list_members where organization_id = %s and contact_id = %s"
        " on conflict do nothing",
        [target, org, source],
    )
    return cur.rowcount


async def organization_name(conn: Conn, org: int) -> str | None:
    cur = await conn.execute("select name from organizations where id = %s", [org])
    row = await cur.fetchone()
    return None if row is None else str(row[0])
