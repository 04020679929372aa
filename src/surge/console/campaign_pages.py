"""Campaigns: the index (newest first, keyset pages), create and edit (with the giving-day
page's address, story and settings), and a campaign's page with its messages and totals.

Every read and write goes through ``surge.campaigns.service``; totals come from the
donations rollup through the process's one-second cache (``donations.service.public_totals``),
the same figures the public page shows.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from surge.api.reads import read
from surge.audit import audit
from surge.campaigns import service as campaigns
from surge.campaigns.schemas import Campaign, CampaignIn, CampaignPatch, PageSettings
from surge.console.inputs import (
    checked,
    cursor,
    local_value,
    major_units,
    minor_units,
    signed_in,
    struct,
    text_or_none,
    utc_time,
)
from surge.console.web import (
    ConsoleRoute,
    NavItem,
    actor,
    flash,
    read_form,
    redirect,
    render,
)
from surge.donations import service as donations
from surge.errors import Conflict, Invalid, NotFound
from surge.orgs import service as orgs
from surge.users.service import allows

PATH = "/console/campaigns"
PAGE = 50
#: Messages listed on a campaign's page (newest first; the messages page has them all).
MESSAGES = 20
SHED = [("auto", "Automatically, under load"), ("on", "Always (shed now)"), ("off", "Never")]
KINDS = [("fundraising", "Fundraising"), ("marketing", "Marketing")]


async def index(request: Request) -> Response:
    user = signed_in(request)
    kind = request.query_params.get("kind") or None
    before = cursor(request)
    page = await read(
        request,
        user.organization_id,
        campaigns.page_campaigns,
        after=before,
        limit=PAGE,
        kind=kind,
        newest_first=True,
    )
    return render(
        request,
        "campaigns/index.html",
        title="Campaigns",
        campaigns=page.data,
        next=page.next,
        first_page=before is None,
        kind=kind or "",
        can_edit=allows(user.role, "editor"),
    )


def _blank() -> dict[str, Any]:
    page = msgspec.to_builtins(PageSettings())
    return {
        "kind": "fundraising",
        "presets": ", ".join(major_units(p, "USD") for p in page["presets"]),
        **{k: page[k] for k in ("monthly", "cover_fee", "recent_donors", "leaderboards")},
        "shed": page["shed"],
    }


def _values_of(campaign: Campaign) -> dict[str, Any]:
    """The edit form of ``campaign`` as it is stored."""
    page = campaign.page
    return {
        "name": campaign.name,
        "kind": campaign.kind,
        "goal": major_units(campaign.goal, campaign.currency),
        "currency": campaign.currency or "",
        "starts_at": local_value(campaign.starts_at),
        "ends_at": local_value(campaign.ends_at),
        "slug": campaign.slug or "",
        "story": campaign.story or "",
        "published": page.published,
        "thank_you": page.thank_you or "",
        "presets": ", ".join(major_units(p, campaign.currency) for p in page.presets),
        "monthly": page.monthly,
        "cover_fee": page.cover_fee,
        "recent_donors": page.recent_donors,
        "leaderboards": page.leaderboards,
        "shed": page.shed,
    }


def _basics(form: dict[str, str]) -> CampaignIn:
    """The form's name, kind, goal, currency and dates as the service takes them."""
    currency = (form.get("currency") or "").strip().upper() or None
    values = {
        "name": form.get("name", "").strip(),
        "kind": form.get("kind", ""),
        "goal": minor_units("goal", form.get("goal"), currency),
        "currency": currency,
        "starts_at": utc_time("starts_at", form.get("starts_at")),
        "ends_at": utc_time("ends_at", form.get("ends_at")),
    }
    body: CampaignIn = struct(values, CampaignIn)
    return body


def _page_patch(form: dict[str, str], currency: str | None) -> CampaignPatch:
    """The form's page address, story and settings."""
    presets = []
    for index, part in enumerate(p for p in form.get("presets", "").split(",") if p.strip()):
        amount = minor_units("presets", part, currency)
        if not amount:
            raise Invalid("presets", f"amount {index + 1} must be more than 0")
        presets.append(amount)
    page: dict[str, Any] = {
        "published": checked(form, "published"),
        "monthly": checked(form, "monthly"),
        "cover_fee": checked(form, "cover_fee"),
        "recent_donors": checked(form, "recent_donors"),
        "leaderboards": checked(form, "leaderboards"),
        "shed": form.get("shed", "auto"),
        "thank_you": text_or_none(form, "thank_you"),
    }
    if presets:
        page["presets"] = presets
    values: dict[str, Any] = {"story": text_or_none(form, "story"), "page": page}
    slug = (form.get("slug") or "").strip()
    if slug:
        values["slug"] = slug
    try:
        patch: CampaignPatch = struct(values, CampaignPatch)
    except Invalid as exc:  # page.presets[2] → the presets field
        field = (exc.field or "").removeprefix("page.").split("[")[0] or None
        raise Invalid(field, exc.message) from None
    return patch


def _form(
    request: Request, campaign: Campaign | None, errors: dict[str, str], values: dict[str, Any]
) -> Response:
    title = f"Edit {campaign.name}" if campaign else "New campaign"
    return render(
        request,
        "campaigns/form.html",
        status=400 if errors else 200,
        title=title,
        campaign=campaign,
        errors=errors,
        values=values,
        kinds=KINDS,
        shed_choices=SHED,
    )


async def new_form(request: Request) -> Response:
    signed_in(request, "editor")
    return _form(request, None, {}, _blank())


async def create(request: Request) -> Response:
    user = signed_in(request, "editor")
    form = await read_form(request)
    try:
        body = _basics(form)
        patch = _page_patch(form, body.currency)
        # The page settings as given, merged over the defaults by the service's PATCH rules.
        async with request.app.state.pool.connection() as conn, conn.transaction():
            new = await campaigns.create_campaign(conn, user.organization_id, body)
            new = await campaigns.update_page(conn, user.organization_id, new.id, patch)
            await audit(
                conn,
                actor(request),
                "campaign.create",
                f"campaign:{new.id}",
                {"name": new.name, "kind": new.kind, "slug": new.slug},
            )
    except (Invalid, Conflict) as exc:
        return _form(request, None, {exc.field or "_form": exc.message}, {**form, **_ticks(form)})
    flash(request, f"Campaign {new.name} created.")
    return redirect(f"{PATH}/{new.id}")


def _ticks(form: dict[str, str]) -> dict[str, bool]:
    names = ("published", "monthly", "cover_fee", "recent_donors", "leaderboards")
    return {name: checked(form, name) for name in names}


async def show(request: Request) -> Response:
    user = signed_in(request)
    org, campaign_id = user.organization_id, int(request.path_params["campaign_id"])
    before = cursor(request)
    campaign = await read(request, org, campaigns.get_campaign, campaign_id)
    messages = await read(
        request,
        org,
        campaigns.page_messages,
        after=before,
        limit=MESSAGES,
        campaign_id=campaign_id,
        newest_first=True,
    )
    resources = request.app.state.resources
    totals = await donations.public_totals(resources.pool, resources.totals, campaign_id)
    public_url = None
    if campaign.slug and campaign.page.published:
        async with request.app.state.pool.connection() as conn:
            public_url = f"/g/{await orgs.slug_of(conn, org)}/{campaign.slug}"
    return render(
        request,
        "campaigns/show.html",
        title=campaign.name,
        campaign=campaign,
        messages=messages.data,
        next=messages.next,
        first_page=before is None,
        totals=totals,
        public_url=public_url,
        can_edit=allows(user.role, "editor"),
    )


async def edit_form(request: Request) -> Response:
    user = signed_in(request, "editor")
    async with request.app.state.pool.connection() as conn:
        campaign = await campaigns.get_campaign(
            conn, user.organization_id, int(request.path_params["campaign_id"])
        )
    return _form(request, campaign, {}, _values_of(campaign))


async def update(request: Request) -> Response:
    user = signed_in(request, "editor")
    org, campaign_id = user.organization_id, int(request.path_params["campaign_id"])
    form = await read_form(request)
    async with request.app.state.pool.connection() as conn:
        current = await campaigns.get_campaign(conn, org, campaign_id)
    try:
        body = _basics(form)
        patch = _page_patch(form, body.currency)
        async with request.app.state.pool.connection() as conn, conn.transaction():
            await campaigns.update_campaign(conn, org, campaign_id, body)
            changed = await campaigns.update_page(conn, org, campaign_id, patch)
            await audit(
                conn,
                actor(request),
                "campaign.update",
                f"campaign:{campaign_id}",
                _changes(current, changed),
            )
    except (Invalid, Conflict) as exc:
        return _form(
            request, current, {exc.field or "_form": exc.message}, {**form, **_ticks(form)}
        )
    except NotFound:
        flash(request, f"Campaign {campaign_id} was deleted meanwhile.", "error")
        return redirect(PATH)
    flash(request, f"Campaign {changed.name} saved.")
    return redirect(f"{PATH}/{campaign_id}")


def _changes(before: Campaign, after: Campaign) -> dict[str, Any]:
    """What an edit changed, for the audit log: each field's new value (the story's length)."""
    old, new = msgspec.to_builtins(before), msgspec.to_builtins(after)
    out: dict[str, Any] = {}
    for key, value in new.items():
        if key == "page":
            out.update({f"page.{k}": v for k, v in value.items() if old["page"].get(k) != v})
        elif old.get(key) != value:
            out[key] = f"{len(value)} characters" if key == "story" and value else value
    return out


routes = [
    ConsoleRoute("GET", PATH, index),
    ConsoleRoute("GET", PATH + "/new", new_form, role="editor"),
    ConsoleRoute("POST", PATH, create, role="editor"),
    ConsoleRoute("GET", PATH + "/{campaign_id:int}", show),
    ConsoleRoute("GET", PATH + "/{campaign_id:int}/edit", edit_form, role="editor"),
    ConsoleRoute("POST", PATH + "/{campaign_id:int}", update, role="editor"),
]
nav = [NavItem("Campaigns", PATH)]
