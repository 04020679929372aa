"""The message composer: write a campaign's message, preview it, test it, schedule it.

- The subject and body templates are checked as they are typed (htmx, after a short pause):
  each field's error appears next to it with its line, and the subject renders for a sample
  contact (one of the audience, or any contact chosen by address).
- The HTML part renders in a sandboxed frame: a form post to ``…/preview`` whose answer is
  the email itself under a Content-Security-Policy of its own (``sandbox``, no scripts),
  since an email's inline styles and remote images would break the console's.
- "Send test" stores one test mail per address (``dispatch.proofs``): a job on the critical
  queue sends it through the configured sender, like a receipt; the page polls its status.
- "Schedule" creates the message through ``campaigns.service.create_message`` (now, or at
  a time in UTC), optionally as an A/B test of two subjects, and opens its live view.

Nothing is stored before "Schedule" but test mails: a message exists once it is scheduled.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from surge.api.reads import read
from surge.audit import audit
from surge.campaigns import service as campaigns
from surge.campaigns.schemas import Campaign, MessageIn
from surge.console.inputs import checked, signed_in, struct, text_or_none, utc_time
from surge.console.web import (
    ConsoleRoute,
    actor,
    flash,
    is_htmx,
    read_form,
    read_form_list,
    redirect,
    render,
    settings_of,
    templates,
)
from surge.contacts import service as contacts
from surge.dispatch import proofs
from surge.dispatch.proofs_store import Proof
from surge.errors import Conflict, Invalid, NotFound
from surge.fields import MAX_BIGINT
from surge.segments import service as segments

#: Lists and segments offered as the audience (the newest first).
CHOICES = 200
#: Headers of the preview frame: the email's own styles and images, never its scripts.
FRAME_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; img-src http: https: data:;"
        " style-src 'unsafe-inline' http: https:; font-src http: https: data:;"
        " frame-ancestors 'self'"
    ),
}
#: Form fields a template error may belong to.
TEMPLATE_FIELDS = ("subject", "subject_b", "html", "text", "preview_email")


def _path(campaign_id: int) -> str:
    return f"/console/campaigns/{campaign_id}/messages"


async def _campaign(request: Request, org: int) -> Campaign:
    async with request.app.state.pool.connection() as conn:
        return await campaigns.get_campaign(conn, org, int(request.path_params["campaign_id"]))


async def _choices(request: Request, org: int) -> dict[str, Any]:
    """The audience the composer offers: lists, segments, senders."""
    lists = await read(request, org, contacts.page_lists, after=None, limit=CHOICES)
    found = await read(request, org, segments.page, after=None, limit=CHOICES)
    senders = sorted(request.app.state.sender_names)
    return {
        "lists": [(str(x.id), x.name) for x in lists.data],
        "more_lists": lists.next is not None,
        "segments": [("", "Everyone on the lists"), *((str(s.id), s.name) for s in found.data)],
        "senders": [(s, s) for s in senders] if len(senders) > 1 else [],
    }


async def _defaults(request: Request, org: int) -> dict[str, Any]:
    """A new message's form: sender details of the organisation's newest message, if any."""
    values: dict[str, Any] = {"when": "now", "track_opens": True, "track_clicks": True}
    values |= {"ab_percent": "20", "ab_wait": "60", "ab_metric": "opens"}
    newest = await read(
        request, org, campaigns.page_messages, after=None, limit=1, newest_first=True
    )
    if newest.data:
        last = newest.data[0]
        values |= {
            "from_email": last.from_email,
            "from_name": last.from_name or "",
            "reply_to": last.reply_to or "",
        }
    return values


async def _page(
    request: Request,
    campaign: Campaign,
    values: dict[str, Any],
    chosen: list[str],
    *,
    errors: dict[str, str] | None = None,
    tests: list[Proof] | None = None,
) -> Response:
    org = campaign_org(request)
    return render(
        request,
        "messages/compose.html",
        status=400 if errors else 200,
        title=f"New message · {campaign.name}",
        campaign=campaign,
        errors=errors or {},
        values=values,
        chosen=chosen,
        tests=tests or [],
        max_tests=proofs.MAX_TEST_ADDRESSES,
        **await _choices(request, org),
    )


def campaign_org(request: Request) -> int:
    return signed_in(request, "editor").organization_id


async def compose(request: Request) -> Response:
    org = campaign_org(request)
    campaign = await _campaign(request, org)
    return await _page(request, campaign, await _defaults(request, org), [])


# -- the form ------------------------------------------------------------------------------


def _list_ids(raw: list[str]) -> list[int]:
    if not all(r.isdigit() and 1 <= int(r) <= MAX_BIGINT for r in raw):
        raise Invalid("list_ids", "choose lists from the ones shown")
    return sorted({int(r) for r in raw})


def _int(form: dict[str, str], name: str, default: str) -> int:
    text = (form.get(name) or default).strip()
    if not text.isdigit() or len(text) > 9:
        raise Invalid(name, f"{text!r} is not a whole number")
    return int(text)


def message_in(form: dict[str, str], list_ids: list[int], now: datetime) -> MessageIn:
    """The form as ``create_message`` takes it; Invalid names the form's field."""
    ab = checked(form, "ab_test")
    send_at = None
    if form.get("when") == "later":
        send_at = utc_time("send_at", form.get("send_at"))
        if send_at is None:
            raise Invalid("send_at", "choose when to send, or choose “now”")
        if send_at < now - timedelta(minutes=1):
            raise Invalid("send_at", "that time has passed; choose a later one, or “now”")
    segment = (form.get("segment_id") or "").strip()
    if segment and not (segment.isdigit() and 1 <= int(segment) <= MAX_BIGINT):
        raise Invalid("segment_id", "choose a segment from the ones shown")
    subject = form.get("subject", "").strip()
    values: dict[str, Any] = {
        "from_email": form.get("from_email", "").strip(),
        "from_name": text_or_none(form, "from_name"),
        "reply_to": text_or_none(form, "reply_to"),
        "list_ids": list_ids,
        "html": form.get("html") or None,
        "text": form.get("text") or None,
        "send_at": send_at,
        "track_opens": checked(form, "track_opens"),
        "track_clicks": checked(form, "track_clicks"),
        "sender": form.get("sender") or None,
        "segment_id": int(segment) if segment else None,
        "subject": None if ab else subject or None,
    }
    if ab:
        values["ab_test"] = {
            "subjects": [subject, form.get("subject_b", "").strip()],
            "test_percent": _int(form, "ab_percent", "20"),
            "wait_minutes": _int(form, "ab_wait", "60"),
            "metric": form.get("ab_metric", "opens"),
        }
    try:
        body: MessageIn = struct(values, MessageIn)
    except Invalid as exc:
        raise Invalid(form_field(exc.field), exc.message) from None
    return body


#: A service field → the composer's field that holds it.
_FIELDS = {
    "ab_test.subjects[0]": "subject",
    "ab_test.subjects[1]": "subject_b",
    "ab_test.subjects": "subject_b",
    "ab_test.test_percent": "ab_percent",
    "ab_test.wait_minutes": "ab_wait",
    "ab_test.metric": "ab_metric",
}


def form_field(field: str | None) -> str | None:
    if field is None:
        return None
    if field.startswith("list_ids"):
        return "list_ids"
    return _FIELDS.get(field, field)


async def _sample(
    request: Request, org: int, form: dict[str, str], lists: list[int]
) -> proofs.Sample:
    """Whose data the preview and tests use: the contact with the address typed in, else the
    first member of the first chosen list, else the made-up person."""
    email = (form.get("preview_email") or "").strip()
    if email:
        found = await read(request, org, contacts.list_contacts, after=None, limit=1, email=email)
        if not found.data:
            raise Invalid("preview_email", f"no contact has the address {email!r}")
        return proofs.sample_of(found.data[0])
    for list_id in lists[:1]:
        try:
            members = await read(request, org, contacts.list_members, list_id, after=None, limit=1)
        except NotFound:
            break
        if members.data:
            return proofs.sample_of(members.data[0])
    return proofs.NOBODY


async def _lists_of(request: Request) -> list[int]:
    try:
        return _list_ids(await read_form_list(request, "list_ids"))
    except Invalid:
        return []


# -- live check and preview ----------------------------------------------------------------


async def check(request: Request) -> Response:
    """htmx, as the templates are typed: each field's error in place, and the subject (and
    text part) rendered for the sample contact."""
    org = campaign_org(request)
    form = await read_form(request)
    lists = await _lists_of(request)
    errors: dict[str, str] = {}
    try:
        sample = await _sample(request, org, form, lists)
    except Invalid as exc:
        errors[exc.field or "preview_email"] = exc.message
        sample = proofs.NOBODY
    public = settings_of(request).public_url
    shown = proofs.preview(
        form.get("subject", ""), _body(form, "html"), _body(form, "text"), sample, public
    )
    errors |= shown.errors
    subject_b = None
    if checked(form, "ab_test") and form.get("subject_b", "").strip():
        other = proofs.preview(form.get("subject_b", ""), None, None, sample, public)
        if other.errors:
            errors["subject_b"] = next(iter(other.errors.values()))
        subject_b = other.subject
    html = templates.get_template("messages/_check.html").render(
        errors=errors,
        field_names=TEMPLATE_FIELDS,
        shown=shown,
        subject_b=subject_b,
        sample=sample,
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def _body(form: dict[str, str], name: str) -> str | None:
    return form.get(name) or None


async def preview_frame(request: Request) -> Response:
    """The email as the sample contact gets it, for the composer's sandboxed frame."""
    org = campaign_org(request)
    form = await read_form(request)
    try:
        sample = await _sample(request, org, form, await _lists_of(request))
    except Invalid:
        sample = proofs.NOBODY
    shown = proofs.preview(
        form.get("subject", ""),
        _body(form, "html"),
        _body(form, "text"),
        sample,
        settings_of(request).public_url,
    )
    html = templates.get_template("messages/_frame.html").render(shown=shown)
    if not shown.errors and shown.html is not None:
        html = shown.html
    return HTMLResponse(html, headers=FRAME_HEADERS)


# -- test mails ----------------------------------------------------------------------------


async def send_test(request: Request) -> Response:
    """Test mails of the message as composed now, to the addresses given."""
    user = signed_in(request, "editor")
    org = user.organization_id
    campaign = await _campaign(request, org)
    form = await read_form(request)
    lists = await _lists_of(request)
    errors: dict[str, str] = {}
    tests: list[Proof] = []
    try:
        to = proofs.check_addresses(form.get("test_to", ""))
        draft = _draft(form)
        campaigns.check_content(draft, request.app.state.sender_names)
        sample = await _sample(request, org, form, lists)
        async with request.app.state.pool.connection() as conn, conn.transaction():
            ids = await proofs.request_test_sends(
                conn,
                org,
                draft,
                to,
                campaign_id=campaign.id,
                sample=sample,
                requested_by=actor(request).name,
            )
            await audit(
                conn,
                actor(request),
                "message.test",
                f"campaign:{campaign.id}",
                {"to": to, "subject": draft.subject, "sample": sample.email},
            )
            tests = await proofs.proofs_of(conn, org, ids)
    except Invalid as exc:
        field = form_field(exc.field) or "test_to"
        errors[field if field in _SHOWN else "test_to"] = exc.message
    if not is_htmx(request):
        return await _page(
            request, campaign, form, [str(i) for i in lists], errors=errors, tests=tests
        )
    html = templates.get_template("messages/_tests.html").render(tests=tests, test_errors=errors)
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


#: Fields the composer shows an error next to; any other goes to the test's own field.
_SHOWN = frozenset(
    {"subject", "html", "text", "from_email", "reply_to", "sender", "test_to", "preview_email"}
)


def _draft(form: dict[str, str]) -> proofs.Draft:
    subject = form.get("subject", "").strip()
    if not subject:
        raise Invalid("subject", "write a subject first")
    html, text = _body(form, "html"), _body(form, "text")
    return proofs.Draft(
        subject,
        html,
        text,
        form.get("from_email", "").strip(),
        text_or_none(form, "from_name"),
        text_or_none(form, "reply_to"),
        form.get("sender") or None,
    )


async def test_status(request: Request) -> Response:
    """The composer's test mails, polled until each is sent or failed."""
    user = signed_in(request, "editor")
    raw = request.query_params.getlist("id")[: proofs.MAX_TEST_ADDRESSES]
    ids = [int(r) for r in raw if r.isdigit() and int(r) <= MAX_BIGINT]
    async with request.app.state.pool.connection() as conn:
        tests = await proofs.proofs_of(conn, user.organization_id, ids)
    html = templates.get_template("messages/_tests.html").render(tests=tests, test_errors={})
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


# -- scheduling ----------------------------------------------------------------------------


async def schedule(request: Request) -> Response:
    user = signed_in(request, "editor")
    org = user.organization_id
    campaign = await _campaign(request, org)
    form = await read_form(request)
    raw_lists = await read_form_list(request, "list_ids")
    try:
        lists = _list_ids(raw_lists)
        body = message_in(form, lists, datetime.now(UTC))
        async with request.app.state.pool.connection() as conn, conn.transaction():
            message = await campaigns.create_message(
                conn, org, campaign.id, body, request.app.state.sender_names
            )
            await audit(
                conn,
                actor(request),
                "message.schedule",
                f"message:{message.id}",
                {
                    "campaign": campaign.id,
                    "subject": message.subject,
                    "lists": message.list_ids,
                    "segment": message.segment_id,
                    "send_at": message.send_at.isoformat() if message.send_at else "now",
                    "ab_test": body.ab_test is not None,
                },
            )
    except (Invalid, Conflict) as exc:
        errors = {form_field(exc.field) or "_form": exc.message}
        return await _page(request, campaign, form, raw_lists, errors=errors)
    when = f"at {message.send_at:%Y-%m-%d %H:%M} UTC" if message.send_at else "now"
    flash(request, f"Message scheduled to go {when}.")
    return redirect(f"/console/messages/{message.id}")


def routes_for(base: str) -> list[ConsoleRoute]:
    return [
        ConsoleRoute("GET", base + "/new", compose, role="editor"),
        ConsoleRoute("POST", base + "/check", check, role="editor"),
        ConsoleRoute("POST", base + "/preview", preview_frame, role="editor"),
        ConsoleRoute("POST", base + "/test", send_test, role="editor"),
        ConsoleRoute("POST", base, schedule, role="editor"),
    ]


routes = [
    *routes_for("/console/campaigns/{campaign_id:int}/messages"),
    ConsoleRoute("GET", "/console/messages/tests", test_status, role="editor"),
]
