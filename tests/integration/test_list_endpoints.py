"""Every resource can be listed in keyset pages with its filters, and only its own
organisation's: campaigns, messages, a message's deliveries, lists and imports.
(Contacts, list members, donations, segments, journeys, exports, suppressions and webhook
endpoints have their own modules' tests.)"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.conftest import create_org, surge_env
from tests.helpers import make_audience, make_message, wait_for


@pytest.fixture(scope="module")
def env(database_url: str, sink: Any) -> dict[str, str]:
    return surge_env(database_url, SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none")


@pytest.fixture(scope="module")
def staff(api: str, worker: Any, database_url: str) -> httpx.Client:
    keys = create_org(database_url, "Lister")
    return httpx.Client(base_url=api, headers={"Authorization": f"Bearer {keys['secret_key']}"})


@pytest.fixture(scope="module")
def stranger(api: str, database_url: str) -> httpx.Client:
    keys = create_org(database_url, "Stranger")
    return httpx.Client(base_url=api, headers={"Authorization": f"Bearer {keys['secret_key']}"})


def every_page(client: httpx.Client, path: str, key: str = "id", **params: Any) -> list[Any]:
    """Walk the pages two at a time; the ids (or ``key``) of every item, in order."""
    seen: list[Any] = []
    after = None
    while True:
        query = {**params, "limit": 2, **({"after": after} if after else {})}
        reply = client.get(path, params=query)
        assert reply.status_code == 200, reply.text
        page = reply.json()
        seen += [item[key] for item in page["data"]]
        after = page["next"]
        if after is None:
            return seen


def test_campaigns_messages_and_deliveries(staff: httpx.Client, stranger: httpx.Client) -> None:
    list_id, contact_ids = make_audience(staff, "lister", 5)
    first = make_message(staff, list_id)
    campaign = first["campaign_id"]
    second = make_message(staff, list_id, send_at="2099-01-01T00:00:00Z")
    staff.post("/v1/campaigns", json={"name": "Fund", "kind": "fundraising"})
    wait_for(staff, first["id"], "sent")

    campaigns = every_page(staff, "/v1/campaigns")
    assert campaign in campaigns and len(campaigns) == 3
    assert len(every_page(staff, "/v1/campaigns", kind="fundraising")) == 1
    assert every_page(stranger, "/v1/campaigns") == []

    assert every_page(staff, "/v1/messages", campaign_id=campaign) == [first["id"]]
    assert every_page(staff, "/v1/messages", status="scheduled") == [second["id"]]
    listed = staff.get("/v1/messages", params={"limit": 10}).json()["data"]
    assert {m["id"] for m in listed} == {first["id"], second["id"]}
    assert all(m["progress"] is None for m in listed)
    assert every_page(stranger, "/v1/messages") == []

    path = f"/v1/messages/{first['id']}/deliveries"
    assert every_page(staff, path, key="contact_id") == sorted(contact_ids)
    assert every_page(staff, path, key="contact_id", status="sent") == sorted(contact_ids)
    assert every_page(staff, path, key="contact_id", status="failed") == []
    one = staff.get(path, params={"limit": 1}).json()["data"][0]
    assert one["email"].endswith("@example.org") and one["sent_at"] is not None
    assert stranger.get(path).status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/campaigns", {"kind": "charity"}, "kind"),
        ("/v1/messages", {"status": "gone"}, "status"),
        ("/v1/messages", {"campaign_id": "x"}, "campaign_id"),
        ("/v1/imports", {"status": "done"}, "status"),
        ("/v1/lists", {"after": "not-a-cursor"}, "after"),
        ("/v1/lists", {"limit": "0"}, "limit"),
    ],
)
def test_bad_filters_are_400_naming_them(
    staff: httpx.Client, path: str, params: dict[str, str], field: str
) -> None:
    reply = staff.get(path, params=params)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["field"] == field


def test_lists_by_name_and_imports_by_status(staff: httpx.Client, stranger: httpx.Client) -> None:
    made = [
        staff.post("/v1/lists", json={"name": name}).json()["id"]
        for name in ("Donors 2025", "donors_2026", "Volunteers", "100% donors")
    ]
    assert set(every_page(staff, "/v1/lists", name="donors")) >= {made[0], made[1], made[3]}
    assert every_page(staff, "/v1/lists", name="%") == [made[3]]  # wildcards are literal
    assert every_page(staff, "/v1/lists", name="_2026") == [made[1]]
    assert every_page(stranger, "/v1/lists") == []

    upload = staff.post(
        "/v1/imports", content=b"email\nimp@example.org\n", headers={"content-type": "text/csv"}
    ).json()
    deadline = time.monotonic() + 30
    while staff.get(f"/v1/imports/{upload['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert upload["id"] in every_page(staff, "/v1/imports", status="completed")
    assert every_page(staff, "/v1/imports", status="failed") == []
    assert every_page(stranger, "/v1/imports") == []
