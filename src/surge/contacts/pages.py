"""The preference centre's page: server-rendered HTML, plain forms, no JavaScript.

GET only shows (mail scanners fetch every link and must change nothing); each button is
its own small form that POSTs the choice back to the same signed URL, which answers with
the page again and a status line saying what was done. An unknown or tampered token is a
404, like every other signed link.
"""

from __future__ import annotations

from html import escape
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from surge.api.decode import MAX_ID, read_body
from surge.contacts import preferences
from surge.contacts.preferences import Preferences
from surge.contacts.schemas import Membership
from surge.errors import Invalid

#: A choice is two short fields; anything longer is not from our form.
MAX_FORM_BYTES = 1024
HEADERS = {
    "Cache-Control": "no-store, private",
    # The URL is the key to the page: never hand it to another site.
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;
line-height:1.5;color:#1a1a1a}}ul{{list-style:none;padding:0}}li{{margin:0 0 1rem;padding:.8rem;
border:1px solid #bbb;border-radius:.4rem}}form{{display:inline}}button{{font-size:1rem;
padding:.5rem 1rem;margin-top:.4rem;cursor:pointer}}button:focus{{outline:3px solid #1756a9;
outline-offset:2px}}.status{{padding:.8rem;border-left:4px solid #1756a9;background:#eef3fb}}
</style></head><body><main>{body}</main></body></html>"""


def _form(action_url: str, action: str, label: str, list_id: int | None = None) -> str:
    hidden = f'<input type="hidden" name="list_id" value="{list_id}">' if list_id else ""
    return (
        f'<form method="post" action="{escape(action_url)}">{hidden}'
        f'<input type="hidden" name="action" value="{action}">'
        f'<button type="submit">{escape(label)}</button></form>'
    )


def _list_item(url: str, item: Membership, receiving_mail: bool) -> str:
    name = escape(item.name)
    if item.status == "unsubscribed" or not receiving_mail:
        state = "You do not receive this list's mail."
        button = _form(url, "resubscribe", f"Subscribe to {item.name} again", item.list_id)
    elif item.status == "pending":
        state = "Waiting for you to confirm with the link in the mail we sent."
        button = _form(url, "unsubscribe", f"Unsubscribe from {item.name}", item.list_id)
    else:
        state = "You receive this list's mail."
        button = _form(url, "unsubscribe", f"Unsubscribe from {item.name}", item.list_id)
    return f"<li><h3>{name}</h3><p>{state}</p>{button}</li>"


_BLOCKED = {
    "hard_bounce": "mail to it bounced",
    "soft_bounce": "mail to it kept failing",
    "complaint": "mail to it was reported as spam",
}


def render(url: str, prefs: Preferences, done: str | None = None) -> str:
    """The page: what the person receives, and a button for each choice."""
    org = escape(prefs.organization)
    receiving = prefs.status == "subscribed"
    parts = [
        f"<h1>Your email preferences</h1><p>Mail from <strong>{org}</strong> to "
        f"<strong>{escape(prefs.email)}</strong>.</p>"
    ]
    if done:
        parts.append(f'<p class="status" role="status">{escape(done)}</p>')
    if prefs.suppressed is not None:
        why = _BLOCKED.get(prefs.suppressed, "it is on the organisation's block list")
        parts.append(
            f"<p>Note: {org} does not send to this address at the moment because {why}. "
            f"Contact {org} if you want mail there again.</p>"
        )
    if prefs.lists:
        items = "".join(_list_item(url, m, receiving) for m in prefs.lists)
        parts.append(f'<h2 id="lists">Lists</h2><ul aria-labelledby="lists">{items}</ul>')
    parts.append("<h2>All mail</h2>")
    if receiving:
        parts.append(f"<p>You receive mail from {org}.</p>")
        parts.append(
            _form(url, "unsubscribe", f"Unsubscribe from all mail from {prefs.organization}")
        )
    else:
        parts.append(f"<p>You do not receive mail from {org}.</p>")
        parts.append(_form(url, "resubscribe", f"Receive mail from {prefs.organization} again"))
    return PAGE.format(title=f"Email preferences: {org}", body="".join(parts))


async def preferences_page(request: Request) -> Response:
    org, contact_id = preferences.verify(request.app.state.resources.signer, _token(request))
    async with request.app.state.pool.connection() as conn:
        prefs = await preferences.load(conn, org, contact_id)
    return HTMLResponse(render(request.url.path, prefs), headers=HEADERS)


async def choose(request: Request) -> Response:
    org, contact_id = preferences.verify(request.app.state.resources.signer, _token(request))
    action, list_id = parse_choice(await read_body(request, MAX_FORM_BYTES))
    async with request.app.state.pool.connection() as conn:
        done = await preferences.choose(conn, org, contact_id, action, list_id)
        prefs = await preferences.load(conn, org, contact_id)
    return HTMLResponse(render(request.url.path, prefs, done), headers=HEADERS)


def _token(request: Request) -> str:
    token: str = request.path_params["token"]
    return token


def parse_choice(body: bytes) -> tuple[str, int | None]:
    """(action, list id or None) from the form's urlencoded body; Invalid naming the field."""
    try:
        fields = parse_qs(body.decode("ascii"), strict_parsing=False, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise Invalid(None, "expected the preference form's fields") from None
    action = fields.get("action", [""])[-1]
    if action not in preferences.ACTIONS:
        raise Invalid("action", f"action must be one of {', '.join(preferences.ACTIONS)}")
    raw = fields.get("list_id", [""])[-1]
    if not raw:
        return action, None
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        raise Invalid("list_id", "list_id must be a list's id")
    return action, int(raw)


routes = [
    Route(preferences.PATH + "{token}", preferences_page, methods=["GET"]),
    Route(preferences.PATH + "{token}", choose, methods=["POST"]),
]
