"""Signing in to the console over real HTTP: passwords, sessions, CSRF, roles, TOTP, the
login throttle shared by API processes, the audit log, and `surge user create`."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import httpx
import psycopg
import pyotp
import pytest

from surge.audit import Actor
from surge.db.embedded import free_port
from surge.db.pool import connect
from surge.orgs import service as orgs
from surge.users import service as users
from tests.conftest import SURGE, start_api, surge_env
from tests.helpers import CONSOLE_PASSWORD as PASSWORD
from tests.helpers import console_browser as browser
from tests.helpers import console_login as login
from tests.helpers import csrf_token as token_of
from tests.helpers import signed_in


@pytest.fixture(scope="module")
def env(database_url: str) -> dict[str, str]:
    # A small per-email limit keeps the throttle test short.
    return surge_env(database_url, SURGE_CONSOLE_LOGIN_FAILURES_PER_EMAIL="3")


def add_user(database_url: str, org: str, email: str, role: str, password: str = PASSWORD) -> int:
    """A console user, made in-process as `surge user create` makes it (the CLI itself is
    tested below; a subprocess per user would cost seconds)."""

    async def run() -> int:
        conn = await connect(database_url)
        try:
            user = await users.create_user(
                conn, Actor.cli(int(org)), email=email, name="", role=role, password=password
            )
        finally:
            await conn.close()
        return user.id

    return asyncio.run(run())


@pytest.fixture(scope="module")
def org(database_url: str) -> str:
    async def run() -> int:
        conn = await connect(database_url)
        try:
            return (await orgs.create_organization(conn, "Console Org")).id
        finally:
            await conn.close()

    return str(asyncio.run(run()))


@pytest.fixture(scope="module")
def people(database_url: str, org: str) -> dict[str, int]:
    return {
        role: add_user(database_url, org, f"{role}@example.org", role)
        for role in ("owner", "admin", "editor", "viewer")
    }


def audit_actions(database_url: str, org: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select action from audit_log where organization_id = %s order by id", [int(org)]
        ).fetchall()
    return [r[0] for r in rows]


def test_login_opens_a_session_and_the_overview(api: str, people: dict[str, int]) -> None:
    client = browser(api)
    assert client.get("/console/").status_code == 303  # to the login page
    response = login(client, "viewer@example.org")
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    cookie = response.headers["set-cookie"]
    assert "surge_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # SURGE_PUBLIC_URL is http here
    page = client.get("/console/")
    assert page.status_code == 200 and "Console Org" in page.text
    assert page.headers["cache-control"] == "no-store"


def test_wrong_password_rerenders_the_form_with_the_error(api: str, people: dict[str, int]) -> None:
    response = login(browser(api), "editor@example.org", "not the password at all")
    assert response.status_code == 400
    assert "not right" in response.text and 'value="editor@example.org"' in response.text


def test_console_pages_stay_out_of_openapi_and_unknown_pages_are_html_404(
    api: str, people: dict[str, int]
) -> None:
    paths = httpx.get(api + "/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]
    client = signed_in(api, "viewer@example.org")
    missing = client.get("/console/no-such-page")
    assert missing.status_code == 404 and "Page not found" in missing.text
    assert missing.headers["content-type"].startswith("text/html")


def test_static_files_are_cached_by_content_hash(api: str) -> None:
    page = httpx.get(api + "/console/login")
    url = re.search(r'src="(/console/static/[0-9a-f]+/htmx\.min\.js)"', page.text).group(1)  # type: ignore[union-attr]
    first = httpx.get(api + url, headers={"Accept-Encoding": "gzip"})
    assert first.status_code == 200 and "immutable" in first.headers["cache-control"]
    assert first.headers["content-encoding"] == "gzip" and b"htmx" in first.content
    again = httpx.get(api + url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    stale = httpx.get(api + "/console/static/0000/htmx.min.js")
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"


def test_a_burst_of_failures_locks_the_address_on_every_api_process(
    api: str, env: dict[str, str], database_url: str, org: str
) -> None:
    add_user(database_url, org, "limited@example.org", "viewer")
    first = browser(api)
    for _ in range(3):  # SURGE_CONSOLE_LOGIN_FAILURES_PER_EMAIL=3 in this module
        assert login(first, "Limited@example.org", "wrong guess number one").status_code == 400
    port = free_port()
    other = start_api(env, port)
    try:
        second = browser(f"http://127.0.0.1:{port}")
        locked = login(second, "limited@example.org")  # even the right password
        assert locked.status_code == 429
        assert 0 < int(locked.headers["retry-after"]) <= 900
        assert "Too many failed attempts" in locked.text
    finally:
        other.stop()
    # Other addresses from the same client are still let in.
    assert login(first, "viewer@example.org").status_code == 303


def test_unsafe_requests_need_the_csrf_token_and_a_same_origin(
    api: str, people: dict[str, int]
) -> None:
    client = signed_in(api, "admin@example.org")
    page = client.get("/console/keys")
    token = token_of(page)
    no_token = client.post("/console/keys", data={"name": "x", "kind": "secret"})
    assert no_token.status_code == 403 and "security token" in no_token.text
    wrong = client.post("/console/keys", data={"name": "x", "kind": "secret", "csrf_token": "no"})
    assert wrong.status_code == 403
    foreign = client.post(
        "/console/keys",
        data={"name": "x", "kind": "secret", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and "another site" in foreign.text
    no_origin = httpx.post(
        api + "/console/keys",
        data={"name": "x", "kind": "secret", "csrf_token": token},
        cookies=client.cookies,
    )
    assert no_origin.status_code == 403
    # htmx sends the token as a header (hx-headers on <body>).
    by_header = client.post(
        "/console/keys",
        data={"name": "by header", "kind": "secret"},
        headers={"X-CSRF-Token": token},
    )
    assert by_header.status_code == 200 and "sk_" in by_header.text


def test_roles_are_enforced_on_the_server(api: str, people: dict[str, int]) -> None:
    viewer = signed_in(api, "viewer@example.org")
    token = token_of(viewer.get("/console/keys"))
    refused = viewer.post(
        "/console/keys", data={"name": "v", "kind": "secret", "csrf_token": token}
    )
    assert refused.status_code == 403 and "admin role" in refused.text
    assert viewer.get("/console/users").status_code == 403
    assert "/console/users" not in viewer.get("/console/").text  # not offered either
    editor = signed_in(api, "editor@example.org")
    token = token_of(editor.get("/console/jobs"))
    assert (
        editor.post("/console/jobs/retry", data={"job": "1", "csrf_token": token}).status_code
        == 403
    )
    admin = signed_in(api, "admin@example.org")
    assert admin.get("/console/users").status_code == 403
    owner = signed_in(api, "owner@example.org")
    assert owner.get("/console/users").status_code == 200


def totp_code(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def away_from_a_step_boundary() -> None:
    if 30 - time.time() % 30 < 3:
        time.sleep(3.5)


def test_totp_enrolment_then_required_at_login_and_codes_work_once(
    api: str, database_url: str, org: str
) -> None:
    add_user(database_url, org, "twofactor@example.org", "editor")
    client = signed_in(api, "twofactor@example.org")
    token = token_of(client.get("/console/account"))
    assert client.post("/console/account/totp", data={"csrf_token": token}).status_code == 303
    page = client.get("/console/account")
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page.text).group(1).replace(" ", "")  # type: ignore[union-attr]
    assert "otpauth://totp/" in page.text
    bad = client.post("/console/account/totp/confirm", data={"code": "000000", "csrf_token": token})
    assert bad.status_code == 400 and 'aria-invalid="true"' in bad.text
    away_from_a_step_boundary()
    confirm = {"code": totp_code(secret, -1), "csrf_token": token}
    assert client.post("/console/account/totp/confirm", data=confirm).status_code == 303

    fresh = browser(api)
    step_one = login(fresh, "twofactor@example.org")
    assert step_one.status_code == 303 and step_one.headers["location"].startswith(
        "/console/login/code"
    )
    assert fresh.get("/console/").status_code == 303  # the half-session reaches nothing
    code_page = fresh.get("/console/login/code")
    half_token = token_of(code_page)
    wrong = fresh.post("/console/login/code", data={"code": "123456", "csrf_token": half_token})
    assert wrong.status_code == 400
    code = totp_code(secret)
    done = fresh.post("/console/login/code", data={"code": code, "csrf_token": half_token})
    assert done.status_code == 303 and fresh.get("/console/").status_code == 200

    again = browser(api)
    login(again, "twofactor@example.org")
    replay = again.post(
        "/console/login/code",
        data={"code": code, "csrf_token": token_of(again.get("/console/login/code"))},
    )
    assert replay.status_code == 400  # the same code does not sign in twice


def test_logout_and_expiry_end_sessions(
    api: str, database_url: str, people: dict[str, int]
) -> None:
    client = signed_in(api, "editor@example.org")
    token = token_of(client.get("/console/"))
    stolen = dict(client.cookies)
    out = client.post("/console/logout", data={"csrf_token": token})
    assert out.status_code == 303
    assert httpx.get(api + "/console/", cookies=stolen).status_code == 303

    idle = signed_in(api, "editor@example.org")
    absolute = signed_in(api, "viewer@example.org")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "update console_sessions set last_seen_at = now() - interval '2 hours'"
            " where user_id = %s",
            [people["editor"]],
        )
        conn.execute(
            "update console_sessions set expires_at = now() - interval '1 second'"
            " where user_id = %s",
            [people["viewer"]],
        )
    for client in (idle, absolute):
        gone = client.get("/console/keys")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/console/login")
    late = idle.get("/console/keys", headers={"HX-Request": "true"})
    assert late.status_code == 401 and late.headers["hx-redirect"].startswith("/console/login")


def test_password_change_signs_out_other_sessions(api: str, database_url: str, org: str) -> None:
    add_user(database_url, org, "changer@example.org", "viewer")
    here, elsewhere = signed_in(api, "changer@example.org"), signed_in(api, "changer@example.org")
    token = token_of(here.get("/console/account"))
    form = {"current_password": PASSWORD, "new_password": "short", "confirm_password": "short"}
    short = here.post("/console/account/password", data={**form, "csrf_token": token})
    assert short.status_code == 400 and "at least 12" in short.text
    new = "a much better passphrase"
    form = {"current_password": PASSWORD, "new_password": new, "confirm_password": new}
    assert (
        here.post("/console/account/password", data={**form, "csrf_token": token}).status_code
        == 303
    )
    assert here.get("/console/").status_code == 200
    assert elsewhere.get("/console/").status_code == 303
    assert login(browser(api), "changer@example.org", new).status_code == 303


def test_disabled_people_are_signed_out_and_cannot_sign_in(
    api: str, database_url: str, org: str, people: dict[str, int]
) -> None:
    victim = add_user(database_url, org, "leaver@example.org", "editor")
    theirs = signed_in(api, "leaver@example.org")
    owner = signed_in(api, "owner@example.org")
    token = token_of(owner.get("/console/users"))
    assert (
        owner.post(f"/console/users/{victim}/disable", data={"csrf_token": token}).status_code
        == 303
    )
    assert theirs.get("/console/").status_code == 303
    assert login(browser(api), "leaver@example.org").status_code == 400
    # The last owner can be neither demoted nor disabled.
    demote = owner.post(
        f"/console/users/{people['owner']}/role", data={"role": "viewer", "csrf_token": token}
    )
    assert demote.status_code == 303
    assert "last owner" in owner.get("/console/users").text


def test_changes_are_audited_with_who_did_them(
    api: str, database_url: str, org: str, people: dict[str, int]
) -> None:
    admin = signed_in(api, "admin@example.org")
    token = token_of(admin.get("/console/keys"))
    created = admin.post(
        "/console/keys", data={"name": "audited", "kind": "publishable", "csrf_token": token}
    )
    key_id = re.search(r'action="/console/keys/(\d+)/revoke"', created.text).group(1)  # type: ignore[union-attr]
    admin.post(f"/console/keys/{key_id}/revoke", data={"csrf_token": token})
    actions = audit_actions(database_url, org)
    assert actions[:4] == ["user.create"] * 4  # surge user create, as "cli"
    assert {"user.login", "api_key.create", "api_key.revoke"} <= set(actions)
    page = admin.get("/console/audit")
    assert "api_key.revoke" in page.text and "admin@example.org" in page.text


def test_user_create_reads_the_password_from_stdin_and_refuses_bad_input(
    database_url: str, org: str, people: dict[str, int]
) -> None:
    def create(email: str, password: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SURGE, "user", "create", "--org", org, "--email", email, *extra],
            input=password + "\n",
            env=surge_env(database_url),
            capture_output=True,
            text=True,
            timeout=120,
        )

    made = create("Cli.Person@example.org", PASSWORD, "--role", "editor", "--name", "Cli Person")
    assert made.returncode == 0 and "(Cli.Person@example.org, editor) created" in made.stdout
    short = create("new@example.org", "too short")
    assert short.returncode == 1 and "at least 12" in short.stderr
    taken = create("OWNER@example.org", PASSWORD, "--role", "owner")
    assert taken.returncode == 1 and "already has an account" in taken.stderr
    wrong_org = subprocess.run(
        [SURGE, "user", "create", "--org", "999999", "--email", "x@example.org"],
        input=PASSWORD + "\n",
        env=surge_env(database_url),
        capture_output=True,
        text=True,
    )
    assert wrong_org.returncode == 1 and "no organisation" in wrong_org.stderr
    listed = subprocess.run(
        [SURGE, "user", "list", "--org", org],
        env=surge_env(database_url),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "owner@example.org\towner\towner" in listed and PASSWORD not in listed
    assert "Cli.Person@example.org\tCli Person\teditor" in listed
