"""The preference centre: a person's own page, reached by a signed link, where they leave or
rejoin each of the organisation's lists they are or were on, or stop all mail.

The link (``/preferences/<token>``) carries the organisation and contact ids under an HMAC
of its own kind, so it needs no lookup to trust and cannot be made from an unsubscribe or
tracking token. It does not expire: it is in every message, and a person must be able to
use an old one. Choices made here are the person's own, so unlike staff (``lifecycle``)
they may subscribe again whatever their status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from surge.contacts import footprint, person_store, store
from surge.contacts.lifecycle import membership
from surge.contacts.schemas import Membership
from surge.contacts.store import Conn
from surge.errors import Invalid, NotFound
from surge.webhooks.service import emit

if TYPE_CHECKING:
    from surge.tracking.tokens import TokenSigner

KIND = "preferences"
PATH = "/preferences/"
ACTIONS = ("unsubscribe", "resubscribe")


def preferences_url(signer: TokenSigner, public_url: str, org: int, contact_id: int) -> str:
    """The contact's preference centre link."""
    return f"{public_url.rstrip('/')}{PATH}{signer.sign(KIND, org, contact_id)}"


def verify(signer: TokenSigner, token: str) -> tuple[int, int]:
    """(organisation, contact) of a preference link's token; NotFound if not ours."""
    hit = signer.verify(KIND, token)
    if hit is None:
        raise NotFound("not found")
    return hit.message_id, hit.contact_id  # a preferences token carries the organisation


@dataclass(frozen=True, slots=True)
class Preferences:
    """What the page shows."""

    organization: str
    email: str
    #: The contact's status: anything but subscribed stops all mail.
    status: str
    #: Why mail to the address is blocked whatever the person chooses (suppression list).
    suppressed: str | None
    lists: list[Membership]


async def load(conn: Conn, org: int, contact_id: int) -> Preferences:
    """The contact's standing on each list it is or was on; NotFound if it is gone."""
    row = await store.get_contact(conn, org, contact_id)
    name = await person_store.organization_name(conn, org)
    if row is None or name is None:
        raise NotFound("not found")
    suppressed = await footprint.suppressions(conn, org, [row["email"]])
    lists = await person_store.memberships(conn, org, contact_id)
    return Preferences(
        organization=name,
        email=row["email"],
        status=row["status"],
        suppressed=suppressed[0].reason if suppressed else None,
        lists=[membership(m) for m in lists],
    )


async def choose(conn: Conn, org: int, contact_id: int, action: str, list_id: int | None) -> str:
    """Apply the person's choice: leave or rejoin one list (``list_id``), or all mail.

    Returns what was done, in words for the page. Rejoining one list while all mail is
    stopped leaves the other lists first, so that only the chosen one starts again.
    """
    if action not in ACTIONS:
        raise Invalid("action", f"action must be one of {', '.join(ACTIONS)}")
    async with conn.transaction():
        rows = await person_store.lock_contacts(conn, org, [contact_id])
        if not rows:
            raise NotFound("not found")
        status = rows[0]["status"]
        if list_id is None:
            return await _everything(conn, org, contact_id, status, action == "resubscribe")
        return await _one_list(conn, org, contact_id, status, list_id, action == "resubscribe")


async def _everything(conn: Conn, org: int, contact_id: int, status: str, join: bool) -> str:
    if not join:
        if await store.set_status(conn, org, [contact_id], "unsubscribed"):
            await emit(
                conn,
                org,
                "contact.unsubscribed",
                {"contact_id": contact_id, "message_id": None, "via": "preferences"},
            )
        return "You are unsubscribed from all mail."
    if status != "subscribed":
        await store.set_status(conn, org, [contact_id], "subscribed")
        await _updated(conn, org, contact_id, ["status"])
    return "You are subscribed again."


async def _one_list(
    conn: Conn, org: int, contact_id: int, status: str, list_id: int, join: bool
) -> str:
    memberships = await person_store.memberships(conn, org, contact_id)
    found = next((m for m in memberships if m.list_id == list_id), None)
    if found is None:
        raise NotFound("not found")
    changed: list[str] = []
    if join and status != "subscribed":
        await person_store.leave_other_lists(conn, org, contact_id, keep=list_id)
        await store.set_status(conn, org, [contact_id], "subscribed")
        changed.append("status")
    if await person_store.set_list_left(conn, org, contact_id, list_id, left=not join):
        changed.insert(0, "lists")
    if changed:
        await _updated(conn, org, contact_id, changed, list_id)
    if join:
        return f"You are subscribed to {found.name}."
    return f"You are unsubscribed from {found.name}."


async def _updated(
    conn: Conn, org: int, contact_id: int, changed: list[str], list_id: int | None = None
) -> None:
    data: dict[str, object] = {"contact_id": contact_id, "changed": changed, "via": "preferences"}
    if list_id is not None:
        data["list_id"] = list_id
    await emit(conn, org, "contact.updated", data)
