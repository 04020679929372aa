"""HTTP endpoints for contacts, lists and imports: decode, call the service, encode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from surge.api.auth import organization_id
from surge.api.decode import (
    idempotency_key,
    path_id,
    query_id,
    query_int,
    query_text,
    read_json,
)
from surge.api.openapi import AFTER, ApiRoute, Param, limit
from surge.api.openapi import idempotency_key as idempotency_param
from surge.api.reads import read
from surge.api.responses import json_response
from surge.contacts import lifecycle, pages, preferences, privacy, service
from surge.contacts.schemas import (
    MAX_BATCH,
    Contact,
    ContactBatch,
    ContactList,
    ContactPatch,
    Erasure,
    Import,
    ImportPage,
    ListIn,
    ListPage,
    MembershipPage,
    MembersIn,
    MembersResult,
    MergeIn,
    MergeResult,
    Page,
    PersonalData,
    PreferencesLink,
    UpsertResult,
)
from surge.errors import Invalid, NotFound, PayloadTooLarge, UnsupportedMediaType

DEFAULT_LIMIT = 100


def _path_id(request: Request) -> int:
    return path_id(request, "id")


async def upsert_contacts(request: Request) -> Response:
    org = await organization_id(request)
    batch = await read_json(request, ContactBatch)
    async with request.app.state.pool.connection() as conn:
        result = await service.upsert_contacts(conn, org, batch)
    return json_response(result)


async def list_contacts(request: Request) -> Response:
    org = await organization_id(request)
    limit = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_BATCH)
    after, email = query_text(request, "after"), query_text(request, "email", 320)
    page = await read(request, org, service.list_contacts, after=after, limit=limit, email=email)
    return json_response(page)


async def get_contact(request: Request) -> Response:
    org = await organization_id(request)
    contact = await read(request, org, service.get_contact, _path_id(request))
    return json_response(contact)


async def update_contact(request: Request) -> Response:
    org = await organization_id(request)
    patch = await read_json(request, ContactPatch)
    async with request.app.state.pool.connection() as conn:
        contact = await lifecycle.update_contact(conn, org, _path_id(request), patch)
    return json_response(contact)


async def delete_contact(request: Request) -> Response:
    org = await organization_id(request)
    async with request.app.state.pool.connection() as conn:
        await lifecycle.delete_contact(conn, org, _path_id(request))
    return Response(status_code=204)


async def merge_contacts(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, MergeIn)
    async with request.app.state.pool.connection() as conn:
        merged = await lifecycle.merge_contacts(conn, org, _path_id(request), body.from_)
    return json_response(merged)


async def contact_lists(request: Request) -> Response:
    org = await organization_id(request)
    limit = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_BATCH)
    after = query_text(request, "after")
    page = await read(
        request, org, lifecycle.contact_lists, _path_id(request), after=after, limit=limit
    )
    return json_response(page)


async def export_contact(request: Request) -> Response:
    org = await organization_id(request)
    contact_id = _path_id(request)
    async with request.app.state.pool.connection() as conn:
        data = await privacy.export_contact(conn, org, contact_id)
    disposition = f'attachment; filename="contact-{contact_id}.json"'
    return json_response(data, headers={"Content-Disposition": disposition, **NO_STORE})


async def erase_contact(request: Request) -> Response:
    org = await organization_id(request)
    async with request.app.state.pool.connection() as conn:
        erased = await privacy.erase_contact(conn, org, _path_id(request))
    return json_response(erased)


async def preferences_link(request: Request) -> Response:
    org = await organization_id(request)
    contact_id = _path_id(request)
    async with request.app.state.pool.connection() as conn:
        await service.get_contact(conn, org, contact_id)
    url = preferences.preferences_url(
        request.app.state.resources.signer,
        request.app.state.settings.public_url,
        org,
        contact_id,
    )
    return json_response(PreferencesLink(url=url))


def query_flag(request: Request, name: str) -> bool:
    """A true/false query parameter (absent: false)."""
    raw = request.query_params.get(name)
    if raw is None or raw in ("false", "0"):
        return False
    if raw in ("true", "1"):
        return True
    raise Invalid(name, f"{name} must be true or false")


async def create_list(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, ListIn)
    async with request.app.state.pool.connection() as conn:
        created = await service.create_list(conn, org, body)
    return json_response(created, 201)


async def list_lists(request: Request) -> Response:
    org = await organization_id(request)
    limit = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_BATCH)
    page = await read(
        request,
        org,
        service.page_lists,
        after=query_text(request, "after"),
        limit=limit,
        name=query_text(request, "name", 200),
    )
    return json_response(page)


async def list_imports(request: Request) -> Response:
    org = await organization_id(request)
    limit = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_BATCH)
    page = await read(
        request,
        org,
        service.page_imports,
        after=query_text(request, "after"),
        limit=limit,
        status=query_text(request, "status"),
    )
    return json_response(page)


async def get_list(request: Request) -> Response:
    org = await organization_id(request)
    found = await read(request, org, service.get_list, _path_id(request))
    return json_response(found)


async def add_members(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, MembersIn)
    async with request.app.state.pool.connection() as conn:
        result = await service.add_members(conn, org, _path_id(request), body)
    return json_response(result)


async def list_members(request: Request) -> Response:
    org = await organization_id(request)
    limit = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_BATCH)
    after = query_text(request, "after")
    page = await read(
        request, org, service.list_members, _path_id(request), after=after, limit=limit
    )
    return json_response(page)


async def create_import(request: Request) -> Response:
    org = await organization_id(request)
    if "csv" not in request.headers.get("content-type", ""):
        raise UnsupportedMediaType("send the file as the body, with Content-Type: text/csv")
    limit: int = request.app.state.settings.max_import_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the file is larger than {limit} bytes")
    list_id = query_id(request, "list_id")
    filename = query_text(request, "filename", 255)
    resubscribe = query_flag(request, "resubscribe")
    key = idempotency_key(request)
    async with request.app.state.pool.connection() as conn:
        try:
            created, new = await service.create_import(
                conn,
                org,
                _body(request),
                max_bytes=limit,
                list_id=list_id,
                filename=filename,
                idempotency_key=key,
                resubscribe=resubscribe,
            )
        except service.TooLarge as exc:
            raise PayloadTooLarge(str(exc)) from None
    return json_response(created, 202 if new else 200)


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for piece in request.stream():
        if piece:
            yield piece


async def get_import(request: Request) -> Response:
    org = await organization_id(request)
    found = await read(request, org, service.get_import, _path_id(request))
    return json_response(found)


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head><body>{body}</body></html>"""
NO_STORE = {"Cache-Control": "no-store, private"}


def _confirmation(request: Request) -> tuple[int, int]:
    hit = request.app.state.resources.signer.verify("confirm", request.path_params["token"])
    if hit is None:
        raise NotFound("not found")
    return int(hit.message_id), int(hit.contact_id)  # a confirm token carries the list id


async def confirm_page(request: Request) -> Response:
    # GET only asks: mail scanners fetch every link, and must not confirm anybody.
    _confirmation(request)
    action = escape(request.url.path)
    body = (
        "<h1>Confirm your subscription</h1>"
        f'<form method="post" action="{action}"><button type="submit">Yes, subscribe me</button>'
        "</form>"
    )
    return HTMLResponse(PAGE.format(title="Confirm", body=body), headers=NO_STORE)


async def confirm(request: Request) -> Response:
    list_id, contact_id = _confirmation(request)
    async with request.app.state.pool.connection() as conn:
        if await service.confirm_member(conn, list_id, contact_id) is None:
            raise NotFound("not found")
    body = "<h1>Subscribed</h1><p>Thank you: you will receive this list's mail.</p>"
    return HTMLResponse(PAGE.format(title="Subscribed", body=body), headers=NO_STORE)


EMAIL = Param("email", "query", {"type": "string", "maxLength": 320}, "Only this address")

routes = [
    # Double opt-in confirmation links and the preference centre, reached by recipients
    # (signed tokens, no key).
    Route("/l/{token}", confirm_page, methods=["GET"]),
    Route("/l/{token}", confirm, methods=["POST"]),
    *pages.routes,
    ApiRoute(
        "post",
        "/v1/contacts",
        upsert_contacts,
        "Create or update up to 1,000 contacts by email",
        request=ContactBatch,
        response=UpsertResult,
    ),
    ApiRoute(
        "get",
        "/v1/contacts",
        list_contacts,
        "Contacts, one keyset page at a time",
        response=Page,
        params=(limit(DEFAULT_LIMIT, MAX_BATCH), AFTER, EMAIL),
    ),
    ApiRoute("get", "/v1/contacts/{id:int}", get_contact, "One contact", response=Contact),
    ApiRoute(
        "patch",
        "/v1/contacts/{id:int}",
        update_contact,
        "Change some of a contact's fields",
        request=ContactPatch,
        response=Contact,
    ),
    ApiRoute(
        "delete",
        "/v1/contacts/{id:int}",
        delete_contact,
        "Delete a contact (its address is not imported again unless told so)",
        status=204,
    ),
    ApiRoute(
        "post",
        "/v1/contacts/{id:int}/merge",
        merge_contacts,
        "Merge another contact into this one, then delete it",
        request=MergeIn,
        response=MergeResult,
    ),
    ApiRoute(
        "get",
        "/v1/contacts/{id:int}/lists",
        contact_lists,
        "The lists a contact is or was on, one keyset page at a time",
        response=MembershipPage,
        params=(limit(DEFAULT_LIMIT, MAX_BATCH), AFTER),
    ),
    ApiRoute(
        "get",
        "/v1/contacts/{id:int}/export",
        export_contact,
        "Everything Surge holds on a contact's person (data protection export)",
        response=PersonalData,
    ),
    ApiRoute(
        "post",
        "/v1/contacts/{id:int}/erase",
        erase_contact,
        "Erase a contact's person: contact, deliveries, events; donations anonymised",
        response=Erasure,
    ),
    ApiRoute(
        "get",
        "/v1/contacts/{id:int}/preferences-link",
        preferences_link,
        "The signed link to a contact's preference centre",
        response=PreferencesLink,
    ),
    ApiRoute(
        "post",
        "/v1/lists",
        create_list,
        "Create a list",
        request=ListIn,
        response=ContactList,
        status=201,
    ),
    ApiRoute(
        "get",
        "/v1/lists",
        list_lists,
        "Lists, one keyset page at a time",
        response=ListPage,
        params=(
            limit(DEFAULT_LIMIT, MAX_BATCH),
            AFTER,
            Param("name", "query", {"type": "string", "maxLength": 200}, "Name contains this"),
        ),
    ),
    ApiRoute("get", "/v1/lists/{id:int}", get_list, "One list", response=ContactList),
    ApiRoute(
        "post",
        "/v1/lists/{id:int}/members",
        add_members,
        "Add up to 1,000 contacts to a list",
        request=MembersIn,
        response=MembersResult,
    ),
    ApiRoute(
        "get",
        "/v1/lists/{id:int}/members",
        list_members,
        "A list's members, one keyset page at a time",
        response=Page,
        params=(limit(DEFAULT_LIMIT, MAX_BATCH), AFTER),
    ),
    ApiRoute(
        "post",
        "/v1/imports",
        create_import,
        "Upload a CSV of contacts to import in the background",
        request=str,
        response=Import,
        status=202,
        request_media="text/csv",
        params=(
            Param("list_id", "query", {"type": "integer", "minimum": 1}, "Add the contacts to it"),
            Param("filename", "query", {"type": "string", "maxLength": 255}, "Shown in the import"),
            Param(
                "resubscribe",
                "query",
                {"type": "boolean", "default": False},
                "Consent was collected again: statuses as given, deleted addresses back",
            ),
            idempotency_param(required=False),
        ),
    ),
    ApiRoute(
        "get",
        "/v1/imports",
        list_imports,
        "Imports, one keyset page at a time",
        response=ImportPage,
        params=(
            limit(DEFAULT_LIMIT, MAX_BATCH),
            AFTER,
            Param(
                "status",
                "query",
                {"type": "string", "enum": list(service.IMPORT_STATUSES)},
                "Only imports in this state",
            ),
        ),
    ),
    ApiRoute(
        "get",
        "/v1/imports/{id:int}",
        get_import,
        "An import's progress and first errors",
        response=Import,
    ),
]
