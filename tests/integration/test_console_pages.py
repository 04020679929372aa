"""The console's own pages over real HTTP: the live overview, jobs, API keys, people."""

from __future__ import annotations

import asyncio
import re

import httpx
import psycopg
import pytest

from surge.audit import Actor
from surge.db.pool import connect
from surge.orgs import service as orgs
from surge.users import service as users
from tests.helpers import CONSOLE_PASSWORD as PASSWORD
from tests.helpers import csrf_token as token_of
from tests.helpers import signed_in


def _run(database_url: str, make):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        conn = await connect(database_url)
        try:
            return await make(conn)
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def orgs_ids(database_url: str) -> tuple[int, int]:
    async def make(conn):  # type: ignore[no-untyped-def]
        ours = (await orgs.create_organization(conn, "Pages Org")).id
        theirs = (await orgs.create_organization(conn, "Other Org")).id
        for role in ("admin", "viewer"):
            await users.create_user(
                conn,
                Actor.cli(ours),
                email=f"{role}@pages.example",
                name=role.title(),
                role=role,
                password=PASSWORD,
            )
        await users.create_user(
            conn,
            Actor.cli(ours),
            email="owner@pages.example",
            name="Owner",
            role="owner",
            password=PASSWORD,
        )
        return ours, theirs

    result: tuple[int, int] = _run(database_url, make)
    return result


def test_overview_streams_live_figures_from_the_rollups(
    api: str, database_url: str, orgs_ids: tuple[int, int]
) -> None:
    ours, theirs = orgs_ids
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into event_counts (organization_id, type, minute, count)"
            " values (%s, 'page', date_trunc('minute', now()), 1200),"
            " (%s, 'page', date_trunc('minute', now()), 999999)",
            [ours, theirs],
        )
        campaign = conn.execute(
            "insert into campaigns (organization_id, name, kind, currency)"
            " values (%s, 'Giving day', 'fundraising', 'USD') returning id",
            [ours],
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "insert into donations (organization_id, campaign_id, idempotency_key, request_hash,"
            " amount_minor, currency, email, status, succeeded_at)"
            " select %s, %s, 'k' || i, '\\x00', 2500, 'USD', 'd@example.org', 'succeeded', now()"
            " from generate_series(1, 3) i",
            [ours, campaign],
        )
    client = signed_in(api, "viewer@pages.example")
    page = client.get("/console/")
    assert 'sse-connect="/console/overview/live"' in page.text
    with client.stream("GET", "/console/overview/live") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = []
        for line in stream.iter_lines():
            lines.append(line)
            if line == "" and any(x.startswith("event: figures") for x in lines):
                break
    html = "\n".join(x.removeprefix("data: ") for x in lines)
    assert "Events per second" in html
    events = re.search(r"Events per second</dt><dd>([\d,.]+)<", html).group(1)  # type: ignore[union-attr]
    assert 0 < float(events.replace(",", "")) <= 1200  # ours only, never the other org's
    assert "75.00 USD" in html and "<dd>3</dd>" in html


def test_jobs_page_retries_and_cancels_only_this_organisations_jobs(
    api: str, database_url: str, orgs_ids: tuple[int, int]
) -> None:
    ours, theirs = orgs_ids
    with psycopg.connect(database_url, autocommit=True) as conn:
        ids = {}
        for name, org, state in (
            ("dead", ours, "discarded"),
            ("waiting", ours, "retryable"),
            ("foreign", theirs, "discarded"),
        ):
            ids[name] = conn.execute(
                "insert into jobs (queue, kind, state, organization_id, attempt, last_error)"
                " values ('default', 'builtin.fail', %s, %s, 3, 'boom <b>') returning id",
                [state, org],
            ).fetchone()[0]  # type: ignore[index]
    viewer = signed_in(api, "viewer@pages.example")
    page = viewer.get("/console/jobs")
    assert f">{ids['dead']}<" in page.text and f">{ids['foreign']}<" not in page.text
    assert "boom &lt;b&gt;" in page.text and "Retry the chosen jobs" not in page.text
    admin = signed_in(api, "admin@pages.example")
    token = token_of(admin.get("/console/jobs"))
    both = {"job": [str(ids["dead"]), str(ids["foreign"])], "csrf_token": token}
    refused = admin.post("/console/jobs/retry", data=both)
    assert refused.status_code == 303
    assert f"no such job: {ids['foreign']}" in admin.get("/console/jobs").text
    assert (
        admin.post(
            "/console/jobs/retry", data={"job": str(ids["dead"]), "csrf_token": token}
        ).status_code
        == 303
    )
    assert (
        admin.post(
            "/console/jobs/cancel", data={"job": str(ids["waiting"]), "csrf_token": token}
        ).status_code
        == 303
    )
    nothing = admin.post("/console/jobs/cancel", data={"csrf_token": token})
    assert nothing.status_code == 303
    with psycopg.connect(database_url) as conn:
        states = dict(conn.execute("select id, state from jobs").fetchall())
        cancelled = conn.execute(
            "select state from job_history where id = %s", [ids["waiting"]]
        ).fetchone()
        audited = conn.execute(
            "select action from audit_log where action like 'job.%%' order by id"
        ).fetchall()
    assert states[ids["dead"]] == "available" and states[ids["foreign"]] == "discarded"
    assert cancelled == ("cancelled",)
    assert [a for (a,) in audited] == ["job.retry", "job.cancel"]


def test_a_new_api_key_is_shown_once_and_works_until_revoked(
    api: str, orgs_ids: tuple[int, int]
) -> None:
    admin = signed_in(api, "admin@pages.example")
    token = token_of(admin.get("/console/keys"))
    empty = admin.post("/console/keys", data={"name": " ", "kind": "secret", "csrf_token": token})
    assert empty.status_code == 400
    assert (
        'aria-describedby="name-hint name-error"' in empty.text
        and 'aria-invalid="true"' in empty.text
    )
    created = admin.post(
        "/console/keys", data={"name": "CRM sync", "kind": "secret", "csrf_token": token}
    )
    secret = re.search(r'id="new-key">(sk_[A-Za-z0-9_-]+)<', created.text).group(1)  # type: ignore[union-attr]
    assert (
        httpx.get(api + "/v1/contacts", headers={"Authorization": f"Bearer {secret}"}).status_code
        == 200
    )
    listing = admin.get("/console/keys").text
    assert secret not in listing and "CRM sync" in listing and "admin@pages.example" in listing
    key_id = re.findall(r'action="/console/keys/(\d+)/revoke"', created.text)[0]
    assert (
        admin.post(f"/console/keys/{key_id}/revoke", data={"csrf_token": token}).status_code == 303
    )
    assert "revoked" in admin.get("/console/keys").text
    again = admin.post(f"/console/keys/{key_id}/revoke", data={"csrf_token": token})
    assert again.status_code == 303 and "no such live API key" in admin.get("/console/keys").text


def test_owner_adds_people_with_errors_shown_by_their_fields(
    api: str, orgs_ids: tuple[int, int]
) -> None:
    owner = signed_in(api, "owner@pages.example")
    token = token_of(owner.get("/console/users"))
    form = {"email": "not-an-address", "name": "", "role": "editor", "password": PASSWORD}
    bad = owner.post("/console/users", data={**form, "csrf_token": token})
    assert bad.status_code == 400 and 'id="email-error"' in bad.text
    assert 'value="not-an-address"' in bad.text and PASSWORD not in bad.text
    form["email"] = "new.editor@pages.example"
    assert owner.post("/console/users", data={**form, "csrf_token": token}).status_code == 303
    taken = owner.post(
        "/console/users", data={**form, "email": "NEW.editor@pages.example", "csrf_token": token}
    )
    assert taken.status_code == 400 and "already has an account" in taken.text
    assert signed_in(api, "new.editor@pages.example").get("/console/").status_code == 200
