"""The console as ``surge api`` serves it: every section's routes and its navigation.

A section is a module with a ``section = Section(routes, nav)``; ``SECTIONS`` lists them in
the order the navigation shows them. Adding a page: docs/console.md, "Adding a page".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from surge.console import (
    account,
    assets,
    audit_page,
    auth,
    campaign_pages,
    composer,
    contact_pages,
    donation_pages,
    export_pages,
    import_pages,
    job_pages,
    keys,
    list_pages,
    message_pages,
    overview,
    people,
    webhook_pages,
)
from surge.console.web import NavItem, error_page, guarded


@dataclass(frozen=True, slots=True)
class Section:
    """One area of the console: its routes and its entries in the navigation."""

    routes: Sequence[BaseRoute]
    nav: Sequence[NavItem] = ()


#: In navigation order.
SECTIONS: tuple[Section, ...] = (
    Section(overview.routes, overview.nav),
    Section(contact_pages.routes, contact_pages.nav),
    Section(list_pages.routes, list_pages.nav),
    Section(import_pages.routes, import_pages.nav),
    Section(export_pages.routes, export_pages.nav),
    Section(campaign_pages.routes, campaign_pages.nav),
    Section(composer.routes),
    Section(message_pages.routes, message_pages.nav),
    Section(donation_pages.routes, donation_pages.nav),
    Section(job_pages.routes, job_pages.nav),
    Section(keys.routes, keys.nav),
    Section(webhook_pages.routes, webhook_pages.nav),
    Section(people.routes, people.nav),
    Section(audit_page.routes, audit_page.nav),
    Section(account.routes),
)


async def to_overview(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=307)


async def not_found(request: Request) -> Response:
    return error_page(request, 404, "Page not found", "There is no console page at this address.")


def routes() -> list[BaseRoute]:
    """Static files, sign-in, each section's pages, then the console's own 404 page."""
    return [
        *assets.routes,
        *auth.routes,
        *(route for section in SECTIONS for route in section.routes),
        Route("/console", to_overview, methods=["GET"]),
        # Last: any other /console/… path (or method) is the console's 404 page, not JSON.
        Route("/console/{path:path}", guarded(not_found, None), name="console_404"),
    ]


def nav() -> list[NavItem]:
    return [item for section in SECTIONS for item in section.nav]


async def startup(app: Starlette) -> None:
    """What every console page reads: the navigation, and the static files (hashed once)."""
    app.state.console_nav = nav()
    assets.assets()
