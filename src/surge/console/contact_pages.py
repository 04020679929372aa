"""Contacts: search by the start of an email address or a name, a contact's page with its
timeline, status changes (editor) and deletion (admin).

Every read is bounded and indexed (docs/console.md, "Contacts"): search pages are prefix
ranges of B-trees (``contacts/search.py``), the list without a search is a keyset page of
the primary key, the total is counted up to 10,000 and estimated past that, and the
timeline reads each of its three sources by an index (``contacts/timeline.py``). Reads go
to the replica when one may serve them (``surge.api.reads``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from surge.api.reads import note_org, read
from surge.audit import audit
from surge.console.web import (
    ConsoleRoute,
    NavItem,
    actor,
    flash,
    form_error,
    read_form,
    redirect,
    render,
    require_user,
)
from surge.contacts import lifecycle, search, timeline
from surge.contacts import service as contacts
from surge.contacts.schemas import STATUSES, ContactPatch
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import MAX_BIGINT
from surge.users.service import allows

PAGE = 50
#: Lists of a contact shown on its page (the first, by list id).
LISTS_SHOWN = 100
STATUS_CHOICES = ("subscribed", "unsubscribed", "bounced", "complained")
SEARCH_CHOICES = [("auto", "Email or name"), ("email", "Email address"), ("name", "Name")]


def contact_id(request: Request) -> int:
    found = int(request.path_params["contact_id"])
    if found > MAX_BIGINT:
        raise NotFound(f"contact {found} not found")
    return found


async def index(request: Request) -> Response:
    user = require_user(request)
    org = user.organization_id
    text = request.query_params.get("q", "")
    by = request.query_params.get("by", "auto")
    after = request.query_params.get("after")
    values = {"q": text, "by": by}
    searched = None
    try:
        if text.strip():
            page, searched = await read(
                request, org, search.search_contacts, text, by=by, after=after, limit=PAGE
            )
        else:
            page = await read(request, org, contacts.list_contacts, after=after, limit=PAGE)
    except Invalid as exc:
        # A bad cursor is no field of the form: its message goes to the form's top.
        errors = form_error(exc) if exc.field in ("q", "by") else {"_form": exc.message}
        return await _index(request, status=400, errors=errors, values=values)
    return await _index(
        request, rows=page.data, next=page.next, values=values, searched=searched, after=after
    )


async def _index(request: Request, *, status: int = 200, **context: Any) -> Response:
    user = require_user(request)
    total, exact = await read(request, user.organization_id, contacts.contact_count)
    context.setdefault("rows", [])
    context.setdefault("next", None)
    context.setdefault("searched", None)
    context.setdefault("after", None)
    return render(
        request,
        "contacts/index.html",
        status=status,
        title="Contacts",
        total=total,
        exact=exact,
        search_choices=SEARCH_CHOICES,
        statuses=STATUS_CHOICES,
        can_edit=allows(user.role, "editor"),
        **context,
    )


async def _contact_view(conn: contacts.Conn, org: int, found_id: int) -> dict[str, Any]:
    contact = await contacts.get_contact(conn, org, found_id)
    lists = await lifecycle.contact_lists(conn, org, found_id, after=None, limit=LISTS_SHOWN)
    entries = await timeline.timeline(conn, org, found_id, contact.email)
    return {"contact": contact, "lists": lists.data, "more_lists": lists.next, "entries": entries}


async def contact_page(request: Request, *, status: int = 200, **context: Any) -> Response:
    user = require_user(request)
    view = await read(request, user.organization_id, _contact_view, contact_id(request))
    name = " ".join(p for p in (view["contact"].first_name, view["contact"].last_name) if p)
    context.setdefault("values", {"status": view["contact"].status})
    return render(
        request,
        "contacts/show.html",
        status=status,
        title=name or view["contact"].email,
        name=name,
        statuses=STATUS_CHOICES,
        can_edit=allows(user.role, "editor"),
        can_delete=allows(user.role, "admin"),
        per_source=timeline.PER_SOURCE,
        **view,
        **context,
    )


async def show(request: Request) -> Response:
    return await contact_page(request)


async def set_status(request: Request) -> Response:
    """Change a contact's status (lifecycle rules: re-subscribing needs consent again)."""
    user = require_user(request)
    org, found_id = user.organization_id, contact_id(request)
    note_org(request, org)
    form = await read_form(request)
    new = form.get("status", "")
    resubscribe = form.get("resubscribe") == "yes"
    try:
        if new not in STATUSES:
            raise Invalid("status", f"status must be one of {', '.join(STATUS_CHOICES)}")
        async with request.app.state.pool.connection() as conn, conn.transaction():
            before = await contacts.get_contact(conn, org, found_id)
            patch = ContactPatch(status=new, resubscribe=resubscribe)  # type: ignore[arg-type]
            after = await lifecycle.update_contact(conn, org, found_id, patch)
            if after.status != before.status:
                detail = {"status": [before.status, after.status], "resubscribe": resubscribe}
                await audit(conn, actor(request), "contact.update", f"contact:{found_id}", detail)
    except (Invalid, Conflict) as exc:
        return await contact_page(
            request, status=exc.status, errors={exc.field or "status": exc.message}, values=form
        )
    if after.status == before.status:
        flash(request, f"The status was already {after.status}.")
    else:
        flash(request, f"Status changed from {before.status} to {after.status}.")
    return redirect(f"/console/contacts/{found_id}")


async def confirm_delete(request: Request) -> Response:
    user = require_user(request)
    found = await read(request, user.organization_id, contacts.get_contact, contact_id(request))
    return render(request, "contacts/delete.html", title=f"Delete {found.email}", contact=found)


async def delete(request: Request) -> Response:
    """Delete a contact (lifecycle: memberships go, history stays, the address is tombstoned)."""
    user = require_user(request)
    org, found_id = user.organization_id, contact_id(request)
    note_org(request, org)
    async with request.app.state.pool.connection() as conn, conn.transaction():
        found = await contacts.get_contact(conn, org, found_id)
        await lifecycle.delete_contact(conn, org, found_id)
        await audit(conn, actor(request), "contact.delete", f"contact:{found_id}", {})
    flash(request, f"Contact {found.email} deleted.")
    return redirect("/console/contacts")


routes = [
    ConsoleRoute("GET", "/console/contacts", index),
    ConsoleRoute("GET", "/console/contacts/{contact_id:int}", show),
    ConsoleRoute("POST", "/console/contacts/{contact_id:int}/status", set_status, role="editor"),
    ConsoleRoute("GET", "/console/contacts/{contact_id:int}/delete", confirm_delete, role="admin"),
    ConsoleRoute("POST", "/console/contacts/{contact_id:int}/delete", delete, role="admin"),
]
nav = [NavItem("Contacts", "/console/contacts")]
