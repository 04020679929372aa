"""Lists: the index (keyset pages, search by name), create, rename, a list's members (keyset
pages), add and remove members by address.

A list's size is counted exactly up to 10,000 members (a bounded range of list_members'
primary key) and estimated past that from the planner's statistics: never a count(*) of a
million memberships (``contacts.service.member_count``).
"""

from __future__ import annotations

import re
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
from surge.contacts import service as contacts
from surge.contacts.schemas import MAX_BATCH, ListIn, MembersIn
from surge.errors import Invalid, NotFound
from surge.fields import MAX_BIGINT, valid_email
from surge.users.service import allows

PAGE = 50
#: Addresses are separated by commas, semicolons, spaces or new lines.
SEPARATORS = re.compile(r"[\s,;]+")


def list_id(request: Request) -> int:
    found = int(request.path_params["list_id"])
    if found > MAX_BIGINT:
        raise NotFound(f"list {found} not found")
    return found


async def _index(request: Request, *, status: int = 200, **context: Any) -> Response:
    user = require_user(request)
    name = request.query_params.get("q", "").strip() or None
    after = request.query_params.get("after")
    page = await read(
        request, user.organization_id, contacts.page_lists, after=after, limit=PAGE, name=name
    )
    context.setdefault("values", {})
    return render(
        request,
        "lists/index.html",
        status=status,
        title="Lists",
        rows=page.data,
        next=page.next,
        after=after,
        query=name or "",
        can_edit=allows(user.role, "editor"),
        **context,
    )


async def index(request: Request) -> Response:
    return await _index(request)


async def create(request: Request) -> Response:
    user = require_user(request)
    note_org(request, user.organization_id)
    form = await read_form(request)
    double = form.get("double_opt_in") == "yes"
    body = ListIn(
        name=form.get("name", ""),
        double_opt_in=double,
        confirm_from=(form.get("confirm_from") or "").strip() or None,
    )
    try:
        async with request.app.state.pool.connection() as conn, conn.transaction():
            new = await contacts.create_list(conn, user.organization_id, body)
            detail = {"name": new.name, "double_opt_in": new.double_opt_in}
            await audit(conn, actor(request), "list.create", f"list:{new.id}", detail)
    except Invalid as exc:
        return await _index(request, status=400, errors=form_error(exc), values=form)
    flash(request, f"List {new.name} created.")
    return redirect(f"/console/lists/{new.id}")


async def _list_view(conn: contacts.Conn, org: int, found: int, after: str | None) -> Any:
    shown = await contacts.get_list(conn, org, found)
    members = await contacts.list_members(conn, org, found, after=after, limit=PAGE)
    count, exact = await contacts.member_count(conn, org, found)
    return shown, members, count, exact


async def show(request: Request, *, status: int = 200, **context: Any) -> Response:
    user = require_user(request)
    after = request.query_params.get("after")
    shown, members, count, exact = await read(
        request, user.organization_id, _list_view, list_id(request), after
    )
    context.setdefault("values", {"name": shown.name})
    return render(
        request,
        "lists/show.html",
        status=status,
        title=shown.name,
        lst=shown,
        members=members.data,
        next=members.next,
        after=after,
        count=count,
        exact=exact,
        max_batch=MAX_BATCH,
        can_edit=allows(user.role, "editor"),
        **context,
    )


async def show_page(request: Request) -> Response:
    return await show(request)


async def rename(request: Request) -> Response:
    user = require_user(request)
    found = list_id(request)
    note_org(request, user.organization_id)
    form = await read_form(request)
    try:
        async with request.app.state.pool.connection() as conn, conn.transaction():
            before = await contacts.get_list(conn, user.organization_id, found)
            after = await contacts.rename_list(
                conn, user.organization_id, found, form.get("name", "")
            )
            detail = {"name": [before.name, after.name]}
            await audit(conn, actor(request), "list.rename", f"list:{found}", detail)
    except Invalid as exc:
        return await show(request, status=400, errors=form_error(exc), values=form)
    flash(request, f"List renamed to {after.name}.")
    return redirect(f"/console/lists/{found}")


def addresses(text: str, field: str) -> list[str]:
    """The addresses typed in a box: one or more, each checked, at most MAX_BATCH."""
    found = [a for a in SEPARATORS.split(text) if a]
    if not found:
        raise Invalid(field, "type at least one email address")
    if len(found) > MAX_BATCH:
        raise Invalid(field, f"at most {MAX_BATCH:,} addresses at a time")
    bad = [a for a in found if not valid_email(a)]
    if bad:
        raise Invalid(field, f"not an email address: {', '.join(bad[:5])}")
    return list(dict.fromkeys(found))


async def add_members(request: Request) -> Response:
    """Add existing contacts to the list by address (as ``POST /v1/lists/{id}/members``)."""
    user = require_user(request)
    found = list_id(request)
    org = user.organization_id
    note_org(request, org)
    form = await read_form(request)
    try:
        emails = addresses(form.get("emails", ""), "emails")
        body = MembersIn(emails=emails, resubscribe=form.get("resubscribe") == "yes")
        async with request.app.state.pool.connection() as conn, conn.transaction():
            result = await contacts.add_members(conn, org, found, body)
            detail = {"added": result.added, "found": result.found, "pending": result.pending}
            await audit(conn, actor(request), "list.add_members", f"list:{found}", detail)
    except Invalid as exc:
        return await show(request, status=400, errors=form_error(exc), values=form)
    message = f"{result.added:,} added"
    if result.pending:
        message += f" ({result.pending:,} waiting to confirm by mail)"
    if result.found > result.added:
        message += f"; {result.found - result.added:,} already on the list or had left it"
    flash(request, message + ".")
    if result.not_found.emails:
        missing = ", ".join(result.not_found.emails[:20])
        more = len(result.not_found.emails) - 20
        flash(
            request,
            f"No contact has these addresses: {missing}{f' and {more} more' if more > 0 else ''}."
            " Import them first.",
            "error",
        )
    return redirect(f"/console/lists/{found}")


async def remove_members(request: Request) -> Response:
    """Take contacts off the list: by the addresses typed, or the one row's button."""
    user = require_user(request)
    found = list_id(request)
    org = user.organization_id
    note_org(request, org)
    form = await read_form(request)
    try:
        one = form.get("contact_id", "")
        if one:
            if not one.isdigit() or int(one) > MAX_BIGINT:
                raise Invalid("remove", "choose a member to remove")
            ids, emails = [int(one)], []
        else:
            ids, emails = [], addresses(form.get("remove", ""), "remove")
        async with request.app.state.pool.connection() as conn, conn.transaction():
            removed, missing = await contacts.remove_members(
                conn, org, found, contact_ids=ids, emails=emails
            )
            detail = {"removed": len(removed)}
            await audit(conn, actor(request), "list.remove_members", f"list:{found}", detail)
    except Invalid as exc:
        field = exc.field if exc.field in ("remove",) else "remove"
        return await show(request, status=400, errors={field: exc.message}, values=form)
    if len(removed) == 1:
        flash(request, f"{removed[0]} removed from the list.")
    else:
        flash(request, f"{len(removed):,} removed from the list.")
    if missing:
        flash(request, f"Not on the list: {', '.join(missing[:20])}.", "error")
    return redirect(f"/console/lists/{found}")


routes = [
    ConsoleRoute("GET", "/console/lists", index),
    ConsoleRoute("POST", "/console/lists", create, role="editor"),
    ConsoleRoute("GET", "/console/lists/{list_id:int}", show_page),
    ConsoleRoute("POST", "/console/lists/{list_id:int}/rename", rename, role="editor"),
    ConsoleRoute("POST", "/console/lists/{list_id:int}/members", add_members, role="editor"),
    ConsoleRoute(
        "POST", "/console/lists/{list_id:int}/members/remove", remove_members, role="editor"
    ),
]
nav = [NavItem("Lists", "/console/lists")]
