"""The console's contacts, imports, exports and lists pages over real HTTP, signed in through
the login form: search, a contact's timeline, status and deletion with their roles and CSRF,
an upload followed to its bad-row report, an export to its download, and lists."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time

import httpx
import psycopg
import pytest

from surge.audit import Actor
from surge.db.pool import connect
from surge.orgs import service as orgs
from surge.users import service as users
from tests.conftest import Process, surge_env
from tests.helpers import CONSOLE_PASSWORD as PASSWORD
from tests.helpers import csrf_token
from tests.helpers import signed_in as signed_in_as

NEXT = re.compile(r'href="(/console/[^"]*after=[^"]+)" rel="next"')


@pytest.fixture(scope="module")
def env(database_url: str, api_port: int) -> dict[str, str]:
    # Export download links are absolute: they must point at this module's API.
    return surge_env(database_url, SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}")


@pytest.fixture(scope="module")
def org(database_url: str) -> int:
    """An organisation with a person of each role, 60 Hoppers, and another organisation."""

    async def make() -> int:
        conn = await connect(database_url)
        try:
            ours = (await orgs.create_organization(conn, "Contacts Org")).id
            theirs = (await orgs.create_organization(conn, "Elsewhere")).id
            for role in ("admin", "editor", "viewer"):
                await users.create_user(
                    conn,
                    Actor.cli(ours),
                    email=f"{role}@contacts.example",
                    name=role.title(),
                    role=role,
                    password=PASSWORD,
                )
            await conn.execute(
                "insert into contacts (organization_id, email, first_name, last_name)"
                " select %s, 'grace' || i || '@navy.example', 'Grace', 'Hopper' || i"
                " from generate_series(1, 60) i",
                [ours],
            )
            await conn.execute(
                "insert into contacts (organization_id, email, first_name, last_name) values"
                " (%s, 'ada@engine.example', 'Ada', 'Lovelace'),"
                " (%s, 'grace@elsewhere.example', 'Grace', 'Elsewhere')",
                [ours, theirs],
            )
            return ours
        finally:
            await conn.close()

    return asyncio.run(make())


_signed_in: dict[tuple[str, str], httpx.Client] = {}


def signed_in(api: str, role: str) -> httpx.Client:
    """A client signed in through the login form as the person of ``role`` (one per role:
    each login costs an argon2 hash)."""
    if (api, role) not in _signed_in:
        _signed_in[api, role] = signed_in_as(api, f"{role}@contacts.example")
    return _signed_in[api, role]


def token(client: httpx.Client, path: str = "/console/contacts") -> str:
    return csrf_token(client.get(path))


def emails_in(html: str) -> list[str]:
    return re.findall(r'<a href="/console/contacts/\d+">([^<]+)</a>', html)


def contact_id(database_url: str, email: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select id from contacts where email = %s", [email]).fetchone()
    assert row is not None
    return int(row[0])


def test_search_finds_contacts_by_the_start_of_a_name_or_address_in_keyset_pages(
    api: str, org: int
) -> None:
    viewer = signed_in(api, "viewer")
    first = viewer.get("/console/contacts", params={"q": "GRACE", "by": "name"})
    assert first.status_code == 200
    found = emails_in(first.text)
    assert len(found) == 50 and "grace@elsewhere.example" not in found
    more = NEXT.search(first.text)
    assert more is not None
    second = viewer.get(more.group(1).replace("&amp;", "&"))
    rest = emails_in(second.text)
    assert len(rest) == 10 and not set(rest) & set(found)
    assert NEXT.search(second.text) is None
    # By last name, by "first last", and by address; "auto" falls back to addresses.
    assert emails_in(viewer.get("/console/contacts?q=hopper5&by=name").text) == [
        "grace5@navy.example",
        *[f"grace{i}@navy.example" for i in range(50, 60)],
    ]
    assert emails_in(viewer.get("/console/contacts?q=ada lovelace").text) == ["ada@engine.example"]
    assert emails_in(viewer.get("/console/contacts?q=ada@eng&by=email").text) == [
        "ada@engine.example"
    ]
    assert emails_in(viewer.get("/console/contacts?q=grace1@").text)[0] == "grace1@navy.example"
    assert emails_in(viewer.get("/console/contacts?q=100%25&by=name").text) == []
    # No search: every contact, by id, with the total counted (small organisation).
    everyone = viewer.get("/console/contacts")
    assert "61 contacts" in everyone.text and len(emails_in(everyone.text)) == 50
    bad = viewer.get("/console/contacts", params={"q": "x", "by": "phone"})
    assert bad.status_code == 400 and "by must be one of" in bad.text


def test_a_contacts_page_merges_its_activity_deliveries_and_donations_newest_first(
    api: str, org: int, database_url: str
) -> None:
    ada = contact_id(database_url, "ada@engine.example")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute('update contacts set attributes = \'{"city": "London"}\' where id = %s', [ada])
        listed = conn.execute(
            "insert into lists (organization_id, name) values (%s, 'Engines') returning id",
            [org],
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "insert into list_members (organization_id, list_id, contact_id) values (%s, %s, %s)",
            [org, listed, ada],
        )
        conn.execute(
            "insert into contact_activity (organization_id, type, day, contact_id, events)"
            " values (%s, 'Page Viewed', current_date - 3, %s, 7)",
            [org, ada],
        )
        campaign = conn.execute(
            "insert into campaigns (organization_id, name, kind, currency)"
            " values (%s, 'Spring appeal', 'fundraising', 'GBP') returning id",
            [org],
        ).fetchone()[0]  # type: ignore[index]
        message = conn.execute(
            "insert into messages (organization_id, campaign_id, subject, from_email, list_ids,"
            " status) values (%s, %s, 'Engines need oil', 'a@b.example', '{}', 'sent')"
            " returning id",
            [org, campaign],
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "insert into deliveries (message_id, contact_id, organization_id, chunk, status,"
            " sent_at, opened_at, clicked_at) values (%s, %s, %s, 0, 'sent',"
            " now() - interval '2 days', now() - interval '2 days', now() - interval '1 day')",
            [message, ada, org],
        )
        conn.execute(
            "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
            " amount_minor, currency, email, status, succeeded_at)"
            " values (%s, %s, 'ada-1', '\\x00', 4200, 'GBP', 'ADA@engine.example',"
            " 'succeeded', now() - interval '1 hour')",
            [org, campaign],
        )
    page = signed_in(api, "viewer").get(f"/console/contacts/{ada}")
    assert page.status_code == 200
    text = page.text
    assert "Ada Lovelace" in text and "London" in text and "Engines</a>" in text
    donated = text.index("Donated 42.00 GBP to Spring appeal")
    sent = text.index("Sent “Engines need oil”")
    viewed = text.index("Page Viewed × 7")
    assert donated < sent < viewed  # newest first
    assert "opened" in text and "clicked" in text
    # The viewer sees no form that changes anything.
    assert "Change the status" not in text and "/delete" not in text


def test_status_changes_need_the_editor_role_a_csrf_token_and_consent_to_resubscribe(
    api: str, org: int, database_url: str
) -> None:
    grace = contact_id(database_url, "grace7@navy.example")
    path = f"/console/contacts/{grace}/status"
    viewer = signed_in(api, "viewer")
    assert (
        viewer.post(path, data={"status": "bounced", "csrf_token": token(viewer)}).status_code
        == 403
    )
    editor = signed_in(api, "editor")
    assert editor.post(path, data={"status": "unsubscribed"}).status_code == 403  # no token
    csrf = token(editor)
    done = editor.post(path, data={"status": "unsubscribed", "csrf_token": csrf})
    assert done.status_code == 303
    page = editor.get(done.headers["location"])
    assert "Status changed from subscribed to unsubscribed." in page.text
    refused = editor.post(path, data={"status": "subscribed", "csrf_token": csrf})
    assert refused.status_code == 409 and "consent collected again" in refused.text
    assert 'aria-invalid="true"' in refused.text
    again = editor.post(
        path, data={"status": "subscribed", "resubscribe": "yes", "csrf_token": csrf}
    )
    assert again.status_code == 303
    with psycopg.connect(database_url) as conn:
        status = conn.execute("select status from contacts where id = %s", [grace]).fetchone()
        audited = conn.execute(
            "select actor, detail from audit_log where subject = %s order by id",
            [f"contact:{grace}"],
        ).fetchall()
    assert status == ("subscribed",)
    assert [a[1]["status"] for a in audited] == [
        ["subscribed", "unsubscribed"],
        ["unsubscribed", "subscribed"],
    ]
    assert audited[0][0].startswith("Editor <editor@contacts.example>")


def test_deleting_a_contact_needs_an_admin_and_a_confirmation(
    api: str, org: int, database_url: str
) -> None:
    grace = contact_id(database_url, "grace8@navy.example")
    editor = signed_in(api, "editor")
    assert editor.get(f"/console/contacts/{grace}/delete").status_code == 403
    admin = signed_in(api, "admin")
    confirm = admin.get(f"/console/contacts/{grace}/delete")
    assert confirm.status_code == 200 and "Delete this contact" in confirm.text
    gone = admin.post(f"/console/contacts/{grace}/delete", data={"csrf_token": token(admin)})
    assert gone.status_code == 303 and gone.headers["location"] == "/console/contacts"
    assert admin.get(f"/console/contacts/{grace}").status_code == 404
    other = contact_id(database_url, "grace@elsewhere.example")
    assert admin.get(f"/console/contacts/{other}").status_code == 404  # another organisation's
    assert admin.get(f"/console/contacts/{2**63}").status_code == 404


UPLOAD = (
    b"Email,First_Name,Last_Name,City\n"
    b"ann@up.example,Ann,Lee,Paris\n"
    b"not-an-address,No,Body,Rome\n"
    b"ben@up.example,Ben,Okafor,Lagos\n"
    b"=cmd@evil,Eve,,\n"
    b"cat@up.example,Cat\n"
)


def upload(client: httpx.Client, data: bytes, *, htmx: bool, **fields: str) -> httpx.Response:
    csrf = token(client, "/console/imports")
    headers = {"HX-Request": "true", "X-CSRF-Token": csrf} if htmx else {}
    form = fields if htmx else {**fields, "csrf_token": csrf}
    files = {"file": ("people.csv", data, "text/csv")}
    return client.post("/console/imports", data=form, files=files, headers=headers)


def follow_live(client: httpx.Client, path: str) -> list[str]:
    """The events of a live progress stream, until it says done."""
    events: list[str] = []
    with client.stream("GET", path, timeout=120) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
            if events and events[-1] == "done":
                break
    return events


def test_an_upload_streams_into_an_import_whose_page_follows_it_to_the_bad_row_report(
    api: str, org: int, worker: Process, database_url: str
) -> None:
    editor = signed_in(api, "editor")
    with psycopg.connect(database_url) as conn:
        listed = conn.execute(
            "select id from lists where organization_id = %s and name = 'Engines'", [org]
        ).fetchone()
    sent = upload(editor, UPLOAD, htmx=True, list_id=str(listed[0]) if listed else "")
    assert sent.status_code == 204, sent.text
    page_path = sent.headers["hx-redirect"]
    import_id = int(page_path.rsplit("/", 1)[1])
    assert follow_live(editor, f"{page_path}/live")[-2:] == ["progress", "done"]
    page = editor.get(page_path)
    assert "completed" in page.text and 'value="100.0"' in page.text
    assert "invalid email address: &#39;not-an-address&#39;" in page.text

    report = editor.get(f"{page_path}/rejects.csv")
    assert report.status_code == 200 and "attachment" in report.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(report.text)))
    assert rows[0] == ["row", "reason", "Email", "First_Name", "Last_Name", "City"]
    assert [r[:3] for r in rows[1:]] == [
        ["3", "invalid email address: 'not-an-address'", "not-an-address"],
        ["5", "invalid email address: '=cmd@evil'", "'=cmd@evil"],  # made safe
        ["6", "expected 4 columns, found 2", "cat@up.example"],
    ]
    raw = editor.get(f"{page_path}/rejects.csv?raw=1").text
    assert "\r\n5,invalid email address: '=cmd@evil',=cmd@evil,Eve,," in raw
    with psycopg.connect(database_url) as conn:
        audited = conn.execute(
            "select detail from audit_log where subject = %s", [f"import:{import_id}"]
        ).fetchone()
    assert audited is not None and audited[0]["filename"] == "people.csv"

    # Without JavaScript: a plain form post (the CSRF check reads the form) works too.
    plain = upload(editor, b"email\ndan@up.example\n", htmx=False)
    assert plain.status_code == 303 and plain.headers["location"].startswith("/console/imports/")
    # No file: the form again, its error by the file field (a 200 to htmx, which swaps it).
    empty = upload(editor, b"", htmx=True)
    assert empty.status_code == 200 and 'id="file-error"' in empty.text
    assert (
        signed_in(api, "viewer")
        .post("/console/imports", files={"file": ("x.csv", b"email\n", "text/csv")})
        .status_code
        == 403
    )


def wait_for_export(client: httpx.Client, path: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page = client.get(path).text
        if "Download the CSV file" in page:
            return page
        time.sleep(0.2)
    raise AssertionError(f"{path} did not complete")


def test_the_export_button_starts_an_export_whose_page_offers_the_download(
    api: str, org: int, worker: Process
) -> None:
    editor = signed_in(api, "editor")
    started = editor.post(
        "/console/exports",
        data={"kind": "contacts", "status": "subscribed", "csrf_token": token(editor)},
    )
    assert started.status_code == 303
    path = started.headers["location"]
    assert follow_live(editor, f"{path}/live")[-1] == "done"
    page = wait_for_export(editor, path)
    link = re.search(r'href="(http[^"]+/exports/[^"]+)" download', page)
    assert link is not None
    csv_file = httpx.get(link.group(1), timeout=30)  # signed: no session needed
    assert csv_file.status_code == 200
    assert csv_file.text.startswith("id,email,first_name")
    assert "grace1@navy.example" in csv_file.text and "elsewhere" not in csv_file.text
    assert (
        signed_in(api, "viewer")
        .post("/console/exports", data={"kind": "contacts", "csrf_token": token(editor)})
        .status_code
        == 403
    )


def test_lists_are_created_renamed_and_their_members_added_and_removed_by_address(
    api: str, org: int
) -> None:
    editor = signed_in(api, "editor")
    csrf = token(editor, "/console/lists")
    bad = editor.post("/console/lists", data={"name": " ", "csrf_token": csrf})
    assert bad.status_code == 400 and 'id="name-error"' in bad.text
    made = editor.post("/console/lists", data={"name": "Volunteers", "csrf_token": csrf})
    assert made.status_code == 303
    path = made.headers["location"]
    emails = "grace1@navy.example, grace2@navy.example\nnobody@navy.example"
    added = editor.post(f"{path}/members", data={"emails": emails, "csrf_token": csrf})
    assert added.status_code == 303
    page = editor.get(path).text
    assert "2 added." in page and "nobody@navy.example" in page and "2 members" in page
    assert emails_in(page) == ["grace1@navy.example", "grace2@navy.example"]
    wrong = editor.post(f"{path}/members", data={"emails": "not an address", "csrf_token": csrf})
    assert wrong.status_code == 400 and "not an email address" in wrong.text
    renamed = editor.post(f"{path}/rename", data={"name": "Helpers", "csrf_token": csrf})
    assert renamed.status_code == 303 and "<h1>Helpers</h1>" in editor.get(path).text
    gone = editor.post(
        f"{path}/members/remove", data={"remove": "GRACE2@navy.example", "csrf_token": csrf}
    )
    assert gone.status_code == 303
    page = editor.get(path).text
    assert emails_in(page) == ["grace1@navy.example"] and "1 member" in page
    index = signed_in(api, "viewer").get("/console/lists?q=help")
    assert "Helpers</a>" in index.text and "Create a list" not in index.text
    viewer = signed_in(api, "viewer")
    assert (
        viewer.post(f"{path}/rename", data={"name": "x", "csrf_token": token(viewer)}).status_code
        == 403
    )
