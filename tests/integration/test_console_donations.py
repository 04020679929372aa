"""The console's donations and webhooks pages over real HTTP, with a real worker: the live
chart of the day, the filtered list, a refund by an admin (and not by an editor), webhook
endpoints with their secret shown once, and a delivery replayed to a real receiver."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Process, create_org, surge_env
from tests.helpers import Receiver, add_console_users, signed_in, webhook_receiver
from tests.helpers import csrf_token as token_of


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path]) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&rate=1000&name=sink",
        SURGE_PAYMENT_GATEWAY="sandbox",
        SURGE_DONATIONS_CHARGE_BACKOFF="0.1",
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, Any]:
    made: dict[str, Any] = create_org(database_url, "Giving Org")
    add_console_users(
        database_url,
        int(made["id"]),
        {"admin@giving.example": "admin", "editor@giving.example": "editor"},
    )
    return made


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def admin(api: str, org: dict[str, Any], worker: Process) -> Iterator[httpx.Client]:
    client = signed_in(api, "admin@giving.example")
    yield client
    client.close()


@pytest.fixture(scope="module")
def endpoint(admin: httpx.Client, receiver: Receiver) -> int:
    """An endpoint for donation.succeeded, made on the webhooks page (before any gift)."""
    page = admin.get("/console/webhooks")
    form = {
        "csrf_token": token_of(page),
        "url": receiver.base + "/hooks",
        "description": "CRM",
        "event_types": ["donation.succeeded"],
    }
    created = admin.post("/console/webhooks", data=form)
    assert created.status_code == 200, created.text
    secret = re.search(r'id="new-secret">(whsec_[^<]+)<', created.text)
    assert secret is not None
    listed = admin.get("/console/webhooks")
    assert secret.group(1) not in listed.text  # shown once only
    found = re.search(r'href="/console/webhooks/(\d+)"', listed.text)
    assert found is not None
    return int(found.group(1))


@pytest.fixture(scope="module")
def gifts(api: str, org: dict[str, Any], endpoint: int) -> dict[str, Any]:
    """A campaign with three succeeded gifts and a declined one, made through the API."""
    staff = httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )
    donor = httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['publishable_key']}"}, timeout=30
    )
    body = {"name": "Winter Day", "kind": "fundraising", "goal": 100_000, "currency": "USD"}
    campaign = staff.post("/v1/campaigns", json=body).json()["id"]
    ids = []
    for amount, token in (
        (2500, "tok_ok"),
        (5000, "tok_ok"),
        (1000, "tok_ok"),
        (700, "tok_decline"),
    ):
        gift = {"amount": amount, "currency": "USD", "email": "ada@example.org", "token": token}
        response = donor.post(
            f"/v1/campaigns/{campaign}/donations",
            json=gift,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    deadline = time.monotonic() + 60
    while any(staff.get(f"/v1/donations/{i}").json()["status"] == "pending" for i in ids):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    staff.close()
    donor.close()
    return {"campaign": campaign, "ids": ids}


def test_donations_page_lists_and_filters_newest_first(
    admin: httpx.Client, gifts: dict[str, Any]
) -> None:
    ids = gifts["ids"]
    page = admin.get("/console/donations")
    assert page.status_code == 200
    shown = [int(i) for i in re.findall(r'href="/console/donations/(\d+)"', page.text)]
    assert shown == sorted(ids, reverse=True)
    assert "Winter Day" in page.text and "25.00 USD" in page.text
    failed = admin.get("/console/donations", params={"status": "failed"})
    assert re.findall(r'href="/console/donations/(\d+)"', failed.text) == [str(ids[3])]
    other = admin.get("/console/donations", params={"campaign_id": gifts["campaign"] + 1000})
    assert "No donations match" in other.text
    assert admin.get("/console/donations", params={"status": "lost"}).status_code == 400


def test_live_chart_of_the_day_sums_todays_gifts(
    admin: httpx.Client, gifts: dict[str, Any]
) -> None:
    # A process that starts mid-day adds up the earlier hours first, a few at a time.
    html = ""
    with admin.stream("GET", "/console/donations/live") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines: list[str] = []
        for line in stream.iter_lines():
            lines.append(line.removeprefix("data: "))
            if line == "":
                html, lines = "\n".join(lines), []
                if "Adding up" not in html:
                    break
    assert "85.00 USD" in html and "<dd>3</dd>" in html
    assert '<svg class="chart"' in html and '<title id="day-chart-title">Raised today' in html


def test_admin_refunds_a_donation_and_an_editor_cannot(
    api: str, admin: httpx.Client, gifts: dict[str, Any], database_url: str
) -> None:
    donation = gifts["ids"][1]
    page = admin.get(f"/console/donations/{donation}")
    assert "50.00 USD may still be refunded" in page.text and ">Refund</button>" in page.text
    token, key = token_of(page), re.search(r'name="key" value="([^"]+)"', page.text)
    assert key is not None
    form = {"csrf_token": token, "key": key.group(1), "amount": "20", "reason": "duplicate"}
    editor = signed_in(api, "editor@giving.example")
    assert ">Refund</button>" not in editor.get(f"/console/donations/{donation}").text
    editor_form = {**form, "csrf_token": token_of(editor.get("/console/donations"))}
    assert (
        editor.post(f"/console/donations/{donation}/refunds", data=editor_form).status_code == 403
    )
    editor.close()
    too_much = admin.post(f"/console/donations/{donation}/refunds", data={**form, "amount": "60"})
    assert too_much.status_code == 400 and 'id="amount-error"' in too_much.text
    for _ in range(2):  # a double submit: the same key refunds once
        done = admin.post(f"/console/donations/{donation}/refunds", data=form)
        assert done.status_code == 303, done.text
    deadline = time.monotonic() + 30
    while "Refunded 20.00 USD" not in (shown := admin.get(f"/console/donations/{donation}").text):
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    assert "30.00 USD may still be refunded" in shown and "duplicate" in shown
    with psycopg.connect(database_url) as conn:
        refunds = conn.execute(
            "select count(*) from donation_refunds where donation_id = %s", [donation]
        ).fetchone()
        audited = conn.execute(
            "select count(*) from audit_log where action = 'donation.refund' and subject = %s",
            [f"donation:{donation}"],
        ).fetchone()
    assert refunds == (1,) and audited == (1,)


def test_a_delivery_is_replayed_to_the_receiver(
    admin: httpx.Client, endpoint: int, gifts: dict[str, Any], receiver: Receiver
) -> None:
    deadline = time.monotonic() + 30
    while len(receiver.at("/hooks")) < 3:
        assert time.monotonic() < deadline, receiver.requests
        time.sleep(0.1)
    page = admin.get(f"/console/webhooks/{endpoint}")
    assert page.text.count(">delivered<") == 3 and "donation.succeeded" in page.text
    delivery = re.search(r"/deliveries/(\d+)/replay", page.text)
    assert delivery is not None
    replay = f"/console/webhooks/{endpoint}/deliveries/{delivery.group(1)}/replay"
    done = admin.post(replay, data={"csrf_token": token_of(page)})
    assert done.status_code == 303
    assert "replayed as delivery" in admin.get(f"/console/webhooks/{endpoint}").text
    while len(receiver.at("/hooks")) < 4:
        assert time.monotonic() < deadline, receiver.requests
        time.sleep(0.1)
    ids = [r.headers["webhook-id"] for r in receiver.at("/hooks")]
    assert ids[3] in ids[:3]  # the same event: receivers can tell it is a replay
    disabled = admin.post(
        f"/console/webhooks/{endpoint}/disable", data={"csrf_token": token_of(page)}
    )
    assert disabled.status_code == 303
    after = admin.get(f"/console/webhooks/{endpoint}")
    assert ">disabled<" in after.text and "/replay" not in after.text
    refused = admin.post(replay, data={"csrf_token": token_of(page)})
    assert refused.status_code == 303
    assert "is disabled; enable it to replay" in admin.get(f"/console/webhooks/{endpoint}").text


def test_webhooks_are_for_admins_only(api: str, endpoint: int) -> None:
    editor = signed_in(api, "editor@giving.example")
    assert editor.get("/console/webhooks").status_code == 403
    assert editor.get(f"/console/webhooks/{endpoint}").status_code == 403
    assert "/console/webhooks" not in editor.get("/console/donations").text  # not in the nav
    editor.close()
