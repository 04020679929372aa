"""HTTP endpoints of CSV exports: create, follow, list, delete, download."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from surge.api.auth import organization_id
from surge.api.decode import idempotency_key, path_id, query_int, query_text, read_json
from surge.api.openapi import AFTER, ApiRoute, Param, limit
from surge.api.openapi import idempotency_key as idempotency_param
from surge.api.reads import read
from surge.api.responses import json_response
from surge.errors import NotFound
from surge.exports import download, service
from surge.exports.links import LinkSigner
from surge.exports.schemas import KINDS, MAX_PAGE, STATUSES, Export, ExportIn, ExportPage
from surge.tracking.tokens import signing_key

DEFAULT_LIMIT = 20


async def startup(app: Starlette) -> None:
    settings = app.state.settings
    signer = LinkSigner(signing_key(settings))
    app.state.export_links = service.LinkMaker(signer, settings.public_url)


def _links(request: Request) -> service.LinkMaker:
    links: service.LinkMaker = request.app.state.export_links
    return links


def _id(request: Request) -> int:
    return path_id(request, "export_id")


async def create_export(request: Request) -> Response:
    org = await organization_id(request)
    body = await read_json(request, ExportIn)
    key = idempotency_key(request)
    async with request.app.state.pool.connection() as conn:
        export_id, new = await service.create_export(conn, org, body, idempotency_key=key)
        created = await service.get_export(conn, org, export_id, _links(request))
    return json_response(created, 202 if new else 200)


async def list_exports(request: Request) -> Response:
    org = await organization_id(request)
    size = query_int(request, "limit", DEFAULT_LIMIT, high=MAX_PAGE)
    after = query_text(request, "after")
    kind, status = query_text(request, "kind", 20), query_text(request, "status", 20)
    page = await read(
        request,
        org,
        service.list_exports,
        after=after,
        limit=size,
        kind=kind,
        status=status,
        links=_links(request),
    )
    return json_response(page)


async def get_export(request: Request) -> Response:
    org = await organization_id(request)
    found = await read(request, org, service.get_export, _id(request), _links(request))
    return json_response(found)


async def delete_export(request: Request) -> Response:
    org = await organization_id(request)
    async with request.app.state.pool.connection() as conn:
        await service.delete_export(conn, org, _id(request))
    return Response(status_code=204)


async def download_export(request: Request) -> Response:
    org = await organization_id(request)
    return await _download(request, org, _id(request))


async def download_link(request: Request) -> Response:
    # A signed link: no API key, so a browser (the console) can follow it.
    link = _links(request).signer.verify(request.path_params["token"], time.time())
    if link is None:
        raise NotFound("not found")
    return await _download(request, link.organization_id, link.export_id)


async def _download(request: Request, org: int, export_id: int) -> Response:
    file_format = download.check_format(query_text(request, "format", 10))
    pool = request.app.state.pool
    async with pool.connection() as conn:
        row = await service.downloadable(conn, org, export_id)
    return download.response(
        pool,
        org,
        row,
        file_format=file_format,
        accept_encoding=request.headers.get("accept-encoding"),
        head=request.method == "HEAD",
    )


PATH = "/v1/exports"
ONE = PATH + "/{export_id:int}"
FORMAT = Param(
    "format",
    "query",
    {"type": "string", "enum": list(download.FORMATS), "default": "csv"},
    "csv: the CSV (gzip-encoded if the client accepts it); csv.gz: the .csv.gz file",
)

routes = [
    Route("/exports/{token}", download_link, methods=["GET"]),
    ApiRoute(
        "post",
        PATH,
        create_export,
        "Export contacts, deliveries, donations or events as CSV, in the background",
        request=ExportIn,
        response=Export,
        status=202,
        params=(idempotency_param(required=False),),
    ),
    ApiRoute(
        "get",
        PATH,
        list_exports,
        "Exports, newest first, one keyset page at a time",
        response=ExportPage,
        params=(
            limit(DEFAULT_LIMIT, MAX_PAGE),
            AFTER,
            Param("kind", "query", {"type": "string", "enum": list(KINDS)}, "Only this kind"),
            Param("status", "query", {"type": "string", "enum": list(STATUSES)}, "Only these"),
        ),
    ),
    ApiRoute("get", ONE, get_export, "An export's status, progress and link", response=Export),
    ApiRoute("delete", ONE, delete_export, "Delete an export and its file now", status=204),
    ApiRoute(
        "get",
        ONE + "/download",
        download_export,
        "Download a completed export's CSV file",
        params=(FORMAT,),
    ),
]
