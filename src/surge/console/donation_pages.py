"""Donations: the day's live chart, the list (newest first, filtered by status and
campaign), a donation's page with its refunds, and refunding (admins).

- The chart comes over Server-Sent Events from one poller per organisation per API process
  (``console/donation_figures.py``), summed per minute from the index of succeeded
  donations, settled minutes folded in memory.
- The list is ``donations.reports.newest``: keyset pages along the organisation's index; a
  filtered page looks at no more than ``reports.SCAN`` donations, so a rare status costs no
  more than a common one (the page then says it looked that far and goes on from there).
- A refund goes through ``donations.refunds.refund_donation`` (the same rules as the API:
  reserved under the donation's lock, sent to the gateway by a job), with an idempotency
  key fixed when the form is drawn, so a double submit refunds once.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from surge.api.reads import read
from surge.audit import audit
from surge.campaigns import service as campaigns
from surge.console.donation_figures import DayLoader
from surge.console.inputs import (
    cursor,
    major_units,
    minor_units,
    query_id,
    signed_in,
    struct,
)
from surge.console.overview import while_signed_in
from surge.console.web import (
    ConsoleRoute,
    NavItem,
    actor,
    flash,
    form_error,
    read_form,
    redirect,
    render,
    settings_of,
    templates,
)
from surge.donations import refunds, reports
from surge.donations import service as donations
from surge.donations.refund_schemas import RefundIn
from surge.errors import Conflict, Invalid
from surge.live import LiveFigures, event_stream
from surge.users.service import allows

PATH = "/console/donations"
PAGE = 50
#: Campaigns offered in the filter (the newest).
CAMPAIGNS = 200
REASONS = [
    ("requested_by_customer", "The donor asked"),
    ("duplicate", "A duplicate gift"),
    ("fraudulent", "Fraudulent"),
    ("other", "Other"),
]


async def index(request: Request) -> Response:
    user = signed_in(request)
    org = user.organization_id
    status = request.query_params.get("status") or None
    campaign_id = query_id(request, "campaign_id")
    before = cursor(request)
    page = await read(
        request,
        org,
        reports.newest,
        before=before,
        limit=PAGE,
        campaign_id=campaign_id,
        status=status,
    )
    choices = await read(
        request, org, campaigns.page_campaigns, after=None, limit=CAMPAIGNS, newest_first=True
    )
    names = {c.id: c.name for c in choices.data}
    query = "&".join(f"{k}={v}" for k, v in (("status", status), ("campaign_id", campaign_id)) if v)
    return render(
        request,
        "donations/index.html",
        title="Donations",
        page=page,
        first_page=before is None,
        status_filter=status or "",
        campaign_id=str(campaign_id or ""),
        campaigns=[(str(c.id), c.name) for c in choices.data],
        names=names,
        statuses=reports.STATUSES,
        query=query,
        scan=reports.SCAN,
    )


def _chart_html(figures: dict[str, Any]) -> str:
    return templates.get_template("donations/_day.html").render(d=figures)


async def live(request: Request) -> Response:
    user = signed_in(request)
    figures: LiveFigures = request.app.state.live
    key = ("console.donations.day", user.organization_id)
    values = figures.subscribe(key, DayLoader(request.app.state.pool, user.organization_id))
    return event_stream(
        request, while_signed_in(request, values), event="figures", render=_chart_html
    )


async def _detail(
    request: Request, *, status: int = 200, errors: dict[str, str] | None = None, values: Any = None
) -> Response:
    user = signed_in(request)
    org, donation_id = user.organization_id, int(request.path_params["donation_id"])
    # The primary: this page is where a refund is asked for and then watched.
    async with request.app.state.pool.connection() as conn:
        donation = await donations.get_donation(conn, org, donation_id)
        found = await refunds.list_refunds(conn, org, donation_id)
        campaign = await campaigns.get_campaign(conn, org, donation.campaign_id)
    form = values or {
        "reason": "requested_by_customer",
        "amount": major_units(found.refundable, donation.currency),
    }
    form.setdefault("key", secrets.token_urlsafe(16))
    return render(
        request,
        "donations/show.html",
        status=status,
        title=f"Donation #{donation.id}",
        donation=donation,
        refunds=found,
        campaign=campaign,
        errors=errors or {},
        values=form,
        reasons=REASONS,
        can_refund=allows(user.role, "admin") and found.refundable > 0,
        gateway=settings_of(request).payment_gateway,
    )


async def show(request: Request) -> Response:
    return await _detail(request)


async def refund(request: Request) -> Response:
    user = signed_in(request, "admin")
    org, donation_id = user.organization_id, int(request.path_params["donation_id"])
    form = await read_form(request)
    back = f"{PATH}/{donation_id}"
    try:
        async with request.app.state.pool.connection() as conn:
            donation = await donations.get_donation(conn, org, donation_id)
        amount = minor_units("amount", form.get("amount"), donation.currency)
        if amount == 0:
            raise Invalid("amount", "the amount must be more than 0")
        reason = form.get("reason", "")
        if reason not in dict(REASONS):
            raise Invalid("reason", "choose a reason from the list")
        note = (form.get("note") or "").strip() or None
        key = (form.get("key") or "").strip()[:100] or None
        body: RefundIn = struct({"reason": reason, "amount": amount, "note": note}, RefundIn)
        async with request.app.state.pool.connection() as conn, conn.transaction():
            made, replayed = await refunds.refund_donation(
                conn,
                org,
                donation_id,
                body,
                key=f"console:{key}" if key else None,
                attempts=settings_of(request).donations_charge_attempts,
                requested_by=actor(request).name,
            )
            if not replayed:
                await audit(
                    conn,
                    actor(request),
                    "donation.refund",
                    f"donation:{donation_id}",
                    {"refund": made.id, "amount": made.amount, "reason": made.reason},
                )
    except Invalid as exc:
        return await _detail(request, status=400, errors=form_error(exc), values=form)
    except Conflict as exc:
        flash(request, exc.message, "error")
        return redirect(back)
    what = major_units(made.amount, made.currency) + " " + made.currency
    flash(request, f"Refund of {what} asked for; the gateway's answer shows here within seconds.")
    return redirect(back)


routes = [
    ConsoleRoute("GET", PATH, index),
    ConsoleRoute("GET", PATH + "/live", live),
    ConsoleRoute("GET", PATH + "/{donation_id:int}", show),
    ConsoleRoute("POST", PATH + "/{donation_id:int}/refunds", refund, role="admin"),
]
nav = [NavItem("Donations", PATH)]
