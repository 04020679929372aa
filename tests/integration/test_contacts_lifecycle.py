"""A contact's life after it is created, over real HTTP, worker and SMTP sink: PATCH and
DELETE, merging two contacts, data protection export and erasure (API and CLI), and the
strict import mode that never re-subscribes anyone without being told consent was given."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import SURGE, Process, create_org, run_cli, surge_env
from tests.helpers import make_message, wait_for

HOOK_TYPES = ["contact.updated", "contact.deleted", "contact.unsubscribed"]


@pytest.fixture(scope="module")
def env(database_url: str, sink: tuple[int, Path], api_port: int) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{sink[0]}?tls=none&rate=1000&name=sink",
        SURGE_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
        SURGE_PAYMENT_GATEWAY="sandbox",
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Lifecycle Org")


@pytest.fixture(scope="module")
def staff(api: str, org: dict[str, str], worker: Process) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        # An endpoint subscribed to contact events, so that they are written to the outbox.
        hook = {"url": "http://127.0.0.1:9/hook", "event_types": HOOK_TYPES}
        assert client.post("/v1/webhook-endpoints", json=hook).status_code == 201
        yield client


@pytest.fixture(scope="module")
def public(api: str, org: dict[str, str]) -> Iterator[httpx.Client]:
    """The publishable key's client: events and donations."""
    headers = {"Authorization": f"Bearer {org['publishable_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def other(api: str, database_url: str) -> Iterator[httpx.Client]:
    org = create_org(database_url, "Someone Else")
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        yield client


def new_contact(client: httpx.Client, email: str, **fields: Any) -> int:
    response = client.post("/v1/contacts", json={"contacts": [{"email": email, **fields}]})
    assert response.status_code == 200, response.text
    return int(response.json()["contacts"][0]["id"])


def new_list(client: httpx.Client, name: str, *contact_ids: int) -> int:
    list_id = int(client.post("/v1/lists", json={"name": name}).json()["id"])
    if contact_ids:
        added = client.post(f"/v1/lists/{list_id}/members", json={"contact_ids": contact_ids})
        assert added.status_code == 200, added.text
    return list_id


def hook_events(database_url: str, event_type: str, contact_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select data from webhook_events where type = %s"
            " and (data->>'contact_id')::bigint = %s order by id",
            [event_type, contact_id],
        ).fetchall()
    return [row[0] for row in rows]


def sql(database_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def wait_until(database_url: str, query: str, *params: Any, timeout: float = 20) -> None:
    """Poll ``query`` until its one value is true (or a non-zero count)."""
    deadline = time.monotonic() + timeout
    while not sql(database_url, query, *params)[0][0]:
        assert time.monotonic() < deadline, query
        time.sleep(0.1)


def post_csv(client: httpx.Client, data: bytes, **params: Any) -> dict[str, Any]:
    accepted = client.post(
        "/v1/imports", content=data, params=params, headers={"Content-Type": "text/csv"}
    )
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/imports/{accepted.json()['id']}").json()
        if body["status"] in ("completed", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"import did not finish: {body}")


def donate(public: httpx.Client, campaign_id: int, email: str, amount: int = 2500) -> int:
    body = {"amount": amount, "currency": "USD", "email": email, "name": "D", "token": "tok_ok"}
    response = public.post(
        f"/v1/campaigns/{campaign_id}/donations",
        json=body,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code in (200, 201, 202), response.text
    return int(response.json()["id"])


def wait_donation(staff: httpx.Client, donation_id: int) -> None:
    deadline = time.monotonic() + 30
    while staff.get(f"/v1/donations/{donation_id}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def send_event(public: httpx.Client, **event: Any) -> None:
    response = public.post("/v1/events", json={"properties": {"n": 1}, **event})
    assert response.status_code == 202, response.text


def segment(api: str, org: dict[str, str], call: str, body: dict[str, Any]) -> None:
    """A Segment-style call, with the write key as the basic-auth user as the SDKs send it."""
    key = base64.b64encode(f"{org['publishable_key']}:".encode()).decode()
    response = httpx.post(f"{api}/v1/{call}", json=body, headers={"Authorization": f"Basic {key}"})
    assert response.status_code in (200, 202), response.text


def waiting_journey(staff: httpx.Client, list_id: int) -> int:
    """A journey whose members get a webhook step, then wait an hour: active meanwhile."""
    body = {
        "name": "welcome",
        "trigger": {"kind": "list", "list_id": list_id},
        "steps": [{"kind": "webhook", "label": "hello"}, {"kind": "wait", "seconds": 3600}],
    }
    journey = staff.post("/v1/journeys", json=body)
    assert journey.status_code == 201, journey.text
    journey_id = int(journey.json()["id"])
    assert staff.post(f"/v1/journeys/{journey_id}/activate").status_code == 200
    return journey_id


def journey_stats(staff: httpx.Client, journey_id: int) -> tuple[int, int, int]:
    stats = staff.get(f"/v1/journeys/{journey_id}").json()["stats"]
    return stats["entered"], stats["active"], stats["exited"]


# -- PATCH ------------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_given(staff: httpx.Client) -> None:
    cid = new_contact(staff, "patch@x.io", first_name="Pat", last_name="Ch", attributes={"a": 1})
    response = staff.patch(f"/v1/contacts/{cid}", json={"last_name": None, "email": "P@x.io"})
    assert response.status_code == 200, response.text
    contact = response.json()
    assert (contact["email"], contact["first_name"], contact["last_name"]) == (
        "P@x.io",
        "Pat",
        None,
    )
    assert contact["attributes"] == {"a": 1}
    assert staff.get(f"/v1/contacts/{cid}").json() == contact


def test_patch_merges_attributes_and_null_removes_a_key(staff: httpx.Client) -> None:
    cid = new_contact(staff, "attrs@x.io", attributes={"keep": 1, "drop": 2, "change": 3})
    body = {"attributes": {"drop": None, "change": {"nested": True}, "new": "x"}}
    contact = staff.patch(f"/v1/contacts/{cid}", json=body).json()
    assert contact["attributes"] == {"keep": 1, "change": {"nested": True}, "new": "x"}


def test_patch_to_another_contacts_address_is_409_naming_email(staff: httpx.Client) -> None:
    new_contact(staff, "taken@x.io")
    cid = new_contact(staff, "taker@x.io")
    response = staff.patch(f"/v1/contacts/{cid}", json={"email": "TAKEN@x.io"})
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "email"
    assert staff.get(f"/v1/contacts/{cid}").json()["email"] == "taker@x.io"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"first_name": "x" * 201}, "first_name"),
        ({"status": "happy"}, "status"),
        ({"attributes": []}, "attributes"),
        ({"resubscribe": "yes"}, "resubscribe"),
    ],
)
def test_bad_patches_are_400_naming_the_field(
    staff: httpx.Client, body: dict[str, Any], field: str
) -> None:
    cid = new_contact(staff, "badpatch@x.io")
    response = staff.patch(f"/v1/contacts/{cid}", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field
    unknown = staff.patch(f"/v1/contacts/{cid}", json={"phone": "1"})
    assert unknown.status_code == 400 and "phone" in unknown.json()["error"]["message"]


@pytest.mark.parametrize("stopped", ["unsubscribed", "bounced", "complained"])
def test_a_stopped_contact_is_subscribed_again_only_with_resubscribe(
    staff: httpx.Client, stopped: str
) -> None:
    cid = new_contact(staff, f"stop-{stopped}@x.io")
    assert staff.patch(f"/v1/contacts/{cid}", json={"status": stopped}).status_code == 200
    refused = staff.patch(f"/v1/contacts/{cid}", json={"status": "subscribed"})
    assert refused.status_code == 409
    assert refused.json()["error"]["field"] == "status"
    assert staff.get(f"/v1/contacts/{cid}").json()["status"] == stopped
    body = {"status": "subscribed", "resubscribe": True}
    assert staff.patch(f"/v1/contacts/{cid}", json=body).json()["status"] == "subscribed"


def test_patch_announces_the_changed_fields_and_a_no_op_announces_nothing(
    staff: httpx.Client, database_url: str
) -> None:
    cid = new_contact(staff, "hooked@x.io", first_name="H")
    before = staff.get(f"/v1/contacts/{cid}").json()
    same = staff.patch(f"/v1/contacts/{cid}", json={"first_name": "H", "attributes": {}})
    assert same.json() == before  # nothing written, updated_at unchanged
    assert hook_events(database_url, "contact.updated", cid) == []
    staff.patch(f"/v1/contacts/{cid}", json={"first_name": "Hugo", "status": "unsubscribed"})
    [event] = hook_events(database_url, "contact.updated", cid)
    assert event == {"contact_id": cid, "changed": ["first_name", "status"], "via": "api"}


# -- tenancy ----------------------------------------------------------------------------------


def test_every_lifecycle_call_on_another_organisations_contact_is_404(
    staff: httpx.Client, other: httpx.Client
) -> None:
    mine = new_contact(staff, "mine@x.io")
    theirs = new_contact(other, "theirs@x.io")
    calls = [
        staff.patch(f"/v1/contacts/{theirs}", json={"first_name": "x"}),
        staff.delete(f"/v1/contacts/{theirs}"),
        staff.post(f"/v1/contacts/{theirs}/merge", json={"from": mine}),
        staff.post(f"/v1/contacts/{mine}/merge", json={"from": theirs}),
        staff.get(f"/v1/contacts/{theirs}/lists"),
        staff.get(f"/v1/contacts/{theirs}/export"),
        staff.post(f"/v1/contacts/{theirs}/erase"),
        staff.get(f"/v1/contacts/{theirs}/preferences-link"),
    ]
    assert [r.status_code for r in calls] == [404] * len(calls)
    assert calls[3].json()["error"]["field"] == "from"
    assert other.get(f"/v1/contacts/{theirs}").json()["first_name"] is None
    assert staff.get(f"/v1/contacts/{mine}").status_code == 200


# -- DELETE -----------------------------------------------------------------------------------


def test_delete_removes_the_contact_and_its_lists_and_announces_it(
    staff: httpx.Client, org: dict[str, str], database_url: str
) -> None:
    cid = new_contact(staff, "gone@x.io")
    list_id = new_list(staff, "delete-me", cid)
    response = staff.delete(f"/v1/contacts/{cid}")
    assert response.status_code == 204
    assert staff.get(f"/v1/contacts/{cid}").status_code == 404
    assert staff.get(f"/v1/lists/{list_id}/members").json()["data"] == []
    assert staff.delete(f"/v1/contacts/{cid}").status_code == 404
    [event] = hook_events(database_url, "contact.deleted", cid)
    assert event == {"contact_id": cid, "reason": "deleted", "merged_into": None}
    # Only a hash of the address is kept, salted with the organisation's id.
    digest = hashlib.sha256(f"{org['id']}:gone@x.io".encode()).digest()
    stored = sql(
        database_url,
        "select contact_id, reason, status from contact_tombstones where email_hash = %s",
        digest,
    )
    assert stored == [(cid, "deleted", "subscribed")]


def test_deleting_a_contact_ends_its_journeys_as_exits(
    staff: httpx.Client, database_url: str
) -> None:
    cid = new_contact(staff, "walker@x.io")
    journey_list = new_list(staff, "walkers")
    journey = waiting_journey(staff, journey_list)
    staff.post(f"/v1/lists/{journey_list}/members", json={"contact_ids": [cid]})
    wait_until(database_url, "select count(*) from journey_enrolments where contact_id = %s", cid)
    assert staff.delete(f"/v1/contacts/{cid}").status_code == 204
    assert journey_stats(staff, journey) == (1, 0, 1)
    rows = sql(
        database_url,
        "select state, exit_reason from journey_enrolments where contact_id = %s",
        cid,
    )
    assert rows == [("exited", "contact deleted")]


def test_a_deleted_address_does_not_come_back_silently(staff: httpx.Client) -> None:
    cid = new_contact(staff, "ghost@x.io", status="unsubscribed")
    assert staff.delete(f"/v1/contacts/{cid}").status_code == 204

    again = staff.post(
        "/v1/contacts", json={"contacts": [{"email": "a1@x.io"}, {"email": "GHOST@x.io"}]}
    )
    assert again.status_code == 409
    assert again.json()["error"]["field"] == "contacts[1].email"
    assert "deleted" in again.json()["error"]["message"]
    assert staff.get("/v1/contacts", params={"email": "a1@x.io"}).json()["data"] == []

    done = post_csv(staff, b"email,first_name\nghost@x.io,G\nnew-one@x.io,N\n")
    assert (done["status"], done["rows_imported"], done["rows_failed"]) == ("completed", 1, 1)
    [error] = done["errors"]
    assert error["row"] == 2 and "deleted" in error["reason"] and "resubscribe" in error["reason"]
    assert staff.get("/v1/contacts", params={"email": "ghost@x.io"}).json()["data"] == []

    # Told consent was collected again, an import creates it; then it is an ordinary address.
    back = post_csv(staff, b"email\nghost@x.io\n", resubscribe="true")
    assert (back["rows_imported"], back["resubscribe"]) == (1, True)
    [ghost] = staff.get("/v1/contacts", params={"email": "ghost@x.io"}).json()["data"]
    assert ghost["status"] == "subscribed" and ghost["id"] != cid
    assert (
        staff.post("/v1/contacts", json={"contacts": [{"email": "ghost@x.io"}]}).status_code == 200
    )


# -- strict imports ---------------------------------------------------------------------------


def test_strict_import_never_resubscribes_and_resubscribe_does(staff: httpx.Client) -> None:
    ids = {
        s: new_contact(staff, f"strict-{s}@x.io", status=s)
        for s in ("unsubscribed", "bounced", "complained")
    }
    rows = b"".join(b"strict-%s@x.io,Again,subscribed\n" % s.encode() for s in ids)
    csv = b"email,first_name,status\n" + rows + b"strict-fresh@x.io,F,subscribed\n"
    done = post_csv(staff, csv)
    assert (done["rows_imported"], done["rows_failed"], done["rows_status_kept"]) == (4, 0, 3)
    for status, cid in ids.items():
        contact = staff.get(f"/v1/contacts/{cid}").json()
        assert (contact["status"], contact["first_name"]) == (status, "Again")

    # An explicit stronger status still applies: unsubscribing is never refused.
    post_csv(staff, b"email,status\nstrict-fresh@x.io,unsubscribed\n")
    [fresh] = staff.get("/v1/contacts", params={"email": "strict-fresh@x.io"}).json()["data"]
    assert fresh["status"] == "unsubscribed"

    forced = post_csv(staff, csv, resubscribe="true")
    assert forced["rows_status_kept"] == 0
    for cid in ids.values():
        assert staff.get(f"/v1/contacts/{cid}").json()["status"] == "subscribed"


def test_strict_api_upsert_keeps_the_status_and_says_so(staff: httpx.Client) -> None:
    cid = new_contact(staff, "api-strict@x.io", status="complained")
    body = {"contacts": [{"email": "api-strict@x.io", "status": "subscribed", "last_name": "L"}]}
    answer = staff.post("/v1/contacts", json=body).json()
    assert answer["status_kept"] == [0]
    contact = staff.get(f"/v1/contacts/{cid}").json()
    assert (contact["status"], contact["last_name"]) == ("complained", "L")


def test_members_who_left_a_list_are_not_put_back_by_an_import(
    staff: httpx.Client, database_url: str
) -> None:
    cid = new_contact(staff, "left@x.io")
    list_id = new_list(staff, "left-list", cid)
    sql(database_url, "update list_members set unsubscribed_at = now() where contact_id = %s", cid)
    post_csv(staff, b"email\nleft@x.io\n", list_id=list_id)
    assert staff.get(f"/v1/lists/{list_id}/members").json()["data"] == []
    again = staff.post(f"/v1/lists/{list_id}/members", json={"contact_ids": [cid]}).json()
    assert (again["added"], again["found"]) == (0, 1)
    post_csv(staff, b"email\nleft@x.io\n", list_id=list_id, resubscribe="true")
    assert [m["id"] for m in staff.get(f"/v1/lists/{list_id}/members").json()["data"]] == [cid]
    sql(database_url, "update list_members set unsubscribed_at = now() where contact_id = %s", cid)
    body = {"emails": ["LEFT@x.io"], "resubscribe": True}
    rejoined = staff.post(f"/v1/lists/{list_id}/members", json=body).json()
    assert (rejoined["added"], rejoined["found"]) == (1, 1)
    assert [m["id"] for m in staff.get(f"/v1/lists/{list_id}/members").json()["data"]] == [cid]


def test_a_bad_resubscribe_parameter_is_400(staff: httpx.Client) -> None:
    response = staff.post(
        "/v1/imports",
        content=b"email\nx@x.io\n",
        params={"resubscribe": "maybe"},
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "resubscribe"


# -- merge ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def campaign(staff: httpx.Client) -> int:
    # Event webhooks too, so that erasure has payloads to scrub.
    hook = {"url": "http://127.0.0.1:9/events", "event_types": ["event.received"]}
    assert staff.post("/v1/webhook-endpoints", json=hook).status_code == 201
    body = {"name": "Lifecycle appeal", "kind": "fundraising", "currency": "USD"}
    return int(staff.post("/v1/campaigns", json=body).json()["id"])


def test_merge_moves_everything_to_the_contact_kept(
    staff: httpx.Client,
    public: httpx.Client,
    campaign: int,
    database_url: str,
    api: str,
    org: dict[str, str],
) -> None:
    keep = new_contact(staff, "keep@x.io", first_name="Kim", attributes={"tier": "gold"})
    drop = new_contact(
        staff,
        "drop@x.io",
        first_name="K",
        last_name="Lee",
        attributes={"tier": "x", "city": "Oslo"},
    )
    both = new_list(staff, "both", keep, drop)
    only_drop = new_list(staff, "only-drop", drop)
    shared = wait_for(staff, make_message(staff, both)["id"], "sent")  # one delivery each
    alone = wait_for(staff, make_message(staff, only_drop)["id"], "sent")
    send_event(public, type="app.login", contact_id=drop)
    send_event(public, type="app.visit", contact_email="DROP@x.io")
    segment(api, org, "identify", {"userId": "drop-1", "traits": {"email": "drop@x.io"}})
    donation = donate(public, campaign, "drop@x.io")
    wait_donation(staff, donation)
    wait_until(database_url, "select count(*) from profiles where id = 'drop-1'")
    journey_list = new_list(staff, "drop's journey")
    journey = waiting_journey(staff, journey_list)
    staff.post(f"/v1/lists/{journey_list}/members", json={"contact_ids": [drop]})
    wait_until(database_url, "select count(*) from journey_enrolments where contact_id = %s", drop)

    response = staff.post(f"/v1/contacts/{keep}/merge", json={"from": drop})
    assert response.status_code == 200, response.text
    merged = response.json()
    assert merged["merged_from"] == drop
    contact = merged["contact"]
    assert (contact["first_name"], contact["last_name"]) == ("Kim", "Lee")
    assert contact["attributes"] == {"tier": "gold", "city": "Oslo"}  # the kept one wins
    assert merged["moved"] == {
        "lists": 2,
        "deliveries": 1,
        "deliveries_dropped": 1,
        "events": 3,  # by id, by address, and the identify call's
        "donations": 1,
        "journeys": 1,
        "profiles": 1,
    }
    assert staff.get(f"/v1/contacts/{drop}").status_code == 404
    lists = staff.get(f"/v1/contacts/{keep}/lists").json()["data"]
    assert sorted(m["list_id"] for m in lists) == sorted([both, only_drop, journey_list])
    export = staff.get(f"/v1/contacts/{keep}/export").json()
    assert sorted(d["message_id"] for d in export["deliveries"]) == sorted(
        [shared["id"], alone["id"]]
    )
    assert {"app.login", "app.visit"} <= {e["type"] for e in export["events"]}
    assert [d["id"] for d in export["donations"]] == [donation]
    assert [p["id"] for p in export["profiles"]] == ["drop-1"]
    assert [(j["journey_id"], j["state"]) for j in export["journeys"]] == [(journey, "active")]
    assert journey_stats(staff, journey) == (1, 1, 0)  # still one person on the way
    # The figures do not move: the message still says two were sent.
    assert staff.get(f"/v1/messages/{shared['id']}").json()["progress"]["sent"] == 2
    assert hook_events(database_url, "contact.deleted", drop) == [
        {"contact_id": drop, "reason": "merged", "merged_into": keep}
    ]
    # The merged-away address is not imported back as a duplicate.
    blocked = staff.post("/v1/contacts", json={"contacts": [{"email": "drop@x.io"}]})
    assert blocked.status_code == 409 and f"merged into contact {keep}" in blocked.text


def test_merge_keeps_the_persons_choice_to_stop(staff: httpx.Client) -> None:
    keep = new_contact(staff, "choice-keep@x.io")
    drop = new_contact(staff, "choice-drop@x.io", status="unsubscribed")
    merged = staff.post(f"/v1/contacts/{keep}/merge", json={"from": drop}).json()
    assert merged["contact"]["status"] == "unsubscribed"
    bounced_keep = new_contact(staff, "b-keep@x.io")
    bounced_drop = new_contact(staff, "b-drop@x.io", status="bounced")
    merged = staff.post(f"/v1/contacts/{bounced_keep}/merge", json={"from": bounced_drop}).json()
    assert merged["contact"]["status"] == "subscribed"  # the bounce was the other address's


def test_bad_merges_are_4xx_naming_from(staff: httpx.Client) -> None:
    cid = new_contact(staff, "self@x.io")
    itself = staff.post(f"/v1/contacts/{cid}/merge", json={"from": cid})
    assert itself.status_code == 400 and itself.json()["error"]["field"] == "from"
    missing = staff.post(f"/v1/contacts/{cid}/merge", json={"from": 999_999_999})
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "from"
    bad = staff.post(f"/v1/contacts/{cid}/merge", json={"from": 0})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "from"
    assert staff.post(f"/v1/contacts/{cid}/merge", json={}).status_code == 400


# -- export and erasure -----------------------------------------------------------------------


def test_export_then_erase_a_person(
    staff: httpx.Client,
    public: httpx.Client,
    campaign: int,
    database_url: str,
    api: str,
    org: dict[str, str],
) -> None:
    hook = {"url": "http://127.0.0.1:9/journeys", "event_types": ["journey.step"]}
    assert staff.post("/v1/webhook-endpoints", json=hook).status_code == 201
    cid = new_contact(staff, "Erin@x.io", first_name="Erin", attributes={"age": 40})
    list_id = new_list(staff, "erin's", cid)
    message = wait_for(staff, make_message(staff, list_id)["id"], "sent")
    journey_list = new_list(staff, "erin's journey")
    journey = waiting_journey(staff, journey_list)
    staff.post(f"/v1/lists/{journey_list}/members", json={"contact_ids": [cid]})
    send_event(public, type="app.login", contact_id=cid)
    send_event(public, type="app.visit", contact_email="erin@x.io")
    segment(api, org, "identify", {"userId": "erin-1", "traits": {"email": "Erin@x.io"}})
    segment(api, org, "alias", {"userId": "erin-1", "previousId": "anon-erin"})
    segment(api, org, "track", {"anonymousId": "anon-erin", "event": "Viewed Erin's page"})
    donation = donate(public, campaign, "ERIN@x.io", amount=4200)
    wait_donation(staff, donation)
    staff.post("/v1/suppressions", json={"suppressions": [{"email": "erin@x.io"}]})
    totals_before = staff.get(f"/v1/campaigns/{campaign}/totals").json()
    totals_before.pop("as_of")
    # Let the consumers and the journey runner do their part first.
    wait_until(database_url, "select count(*) from contact_activity where contact_id = %s", cid)
    wait_until(
        database_url,
        "select count(*) >= 2 from webhook_events where type = 'event.received'"
        " and (data->>'contact_id' = %s or data->>'contact_email' = 'erin@x.io')",
        str(cid),
    )
    wait_until(
        database_url,
        "select count(*) from profile_aliases where alias = 'anon-erin' and profile_id = 'erin-1'",
    )
    wait_until(
        database_url,
        "select count(*) from webhook_events where type = 'journey.step'"
        " and data->'contact'->>'id' = %s",
        str(cid),
    )
    assert journey_stats(staff, journey) == (1, 1, 0)

    export = staff.get(f"/v1/contacts/{cid}/export")
    assert export.status_code == 200
    assert "attachment" in export.headers["content-disposition"]
    data = export.json()
    assert data["contact"]["first_name"] == "Erin"
    assert {(m["list_id"], m["status"]) for m in data["lists"]} == {
        (list_id, "subscribed"),
        (journey_list, "subscribed"),
    }
    [delivery] = data["deliveries"]
    assert (delivery["message_id"], delivery["status"]) == (message["id"], "sent")
    types = {e["type"] for e in data["events"]}
    assert {"app.login", "app.visit", "Viewed Erin's page"} <= types
    [profile] = data["profiles"]
    assert (profile["id"], profile["aliases"]) == ("erin-1", ["anon-erin"])
    [enrolment] = data["journeys"]
    assert (enrolment["journey_id"], enrolment["state"]) == (journey, "active")
    [given] = data["donations"]
    assert (given["id"], given["amount"], given["status"]) == (donation, 4200, "succeeded")
    assert [s["reason"] for s in data["suppressions"]] == ["manual"]
    assert data["activity"] and data["last_activity"]

    erased = staff.post(f"/v1/contacts/{cid}/erase")
    assert erased.status_code == 200, erased.text
    counts = erased.json()["erased"]
    assert counts.pop("activity") >= 2  # the daily and last-day rows of each type
    assert counts.pop("events") == len(data["events"])
    assert counts.pop("webhook_events") >= 3  # two events and the journey's step
    assert counts == {
        "lists": 2,
        "deliveries": 1,
        "profiles": 1,
        "journeys": 1,
        "donations": 1,
        "suppressions": 1,
    }
    assert staff.get(f"/v1/contacts/{cid}").status_code == 404
    assert staff.post(f"/v1/contacts/{cid}/erase").status_code == 404
    left = sql(
        database_url,
        "select count(*) from events where contact_id = %s or contact_email = 'erin@x.io'"
        " or user_id = 'erin-1' or anonymous_id = 'anon-erin'",
        cid,
    )
    assert left == [(0,)]
    assert sql(database_url, "select count(*) from deliveries where contact_id = %s", cid) == [(0,)]
    for table in ("contact_activity", "contact_last_activity", "journey_enrolments"):
        assert sql(database_url, f"select count(*) from {table} where contact_id = %s", cid) == [
            (0,)
        ]
    assert sql(database_url, "select count(*) from profiles where id = 'erin-1'") == [(0,)]
    assert sql(database_url, "select count(*) from profile_aliases where alias = 'anon-erin'") == [
        (0,)
    ]
    [(email, name, amount)] = sql(
        database_url, "select email, name, amount_minor from donations where id = %s", donation
    )
    assert (email, name, amount) == ("erased@erased.invalid", None, 4200)
    # The figures stay whole: sent is sent, raised is raised, the journey lost one to an exit.
    assert staff.get(f"/v1/messages/{message['id']}").json()["progress"]["sent"] == 1
    totals_after = staff.get(f"/v1/campaigns/{campaign}/totals").json()
    totals_after.pop("as_of")
    assert totals_after == totals_before
    assert journey_stats(staff, journey) == (1, 0, 1)
    assert staff.get("/v1/suppressions", params={"email": "erin@x.io"}).json()["data"] == []
    [event] = hook_events(database_url, "contact.deleted", cid)
    assert event == {"contact_id": cid, "reason": "erased", "merged_into": None}
    payloads = sql(database_url, "select data::text from webhook_events")
    assert all("erin" not in p.lower() for (p,) in payloads)
    # No trace of the address is left to read; a strict import does not bring it back.
    dump = sql(database_url, "select count(*) from contacts where lower(email) = 'erin@x.io'")
    assert dump == [(0,)]
    again = post_csv(staff, b"email\nerin@x.io\n")
    assert again["rows_failed"] == 1 and "erased" in again["errors"][0]["reason"]


def test_export_and_erasure_find_what_is_filed_under_a_former_address(
    staff: httpx.Client,
    public: httpx.Client,
    campaign: int,
    database_url: str,
    org: dict[str, str],
) -> None:
    """A PATCH moved Fay to a new address, and a contact merged into her had a third: the
    donations, suppressions and events filed only under the old addresses are hers too."""
    fay = new_contact(staff, "fay@old.example", first_name="Fay")
    twin = new_contact(staff, "fay@twin.example")
    gift = donate(public, campaign, "Fay@Old.example", amount=1100)
    wait_donation(staff, gift)
    suppress = [{"email": "fay@old.example"}, {"email": "fay@twin.example"}]
    staff.post("/v1/suppressions", json={"suppressions": suppress})
    send_event(public, type="app.visit", contact_email="fay@old.example")
    wait_until(database_url, "select count(*) from events where contact_email = 'fay@old.example'")
    assert staff.patch(f"/v1/contacts/{fay}", json={"email": "fay@new.example"}).status_code == 200
    merged = staff.post(f"/v1/contacts/{fay}/merge", json={"from": twin})
    assert merged.status_code == 200, merged.text

    data = staff.get(f"/v1/contacts/{fay}/export").json()
    assert [d["id"] for d in data["donations"]] == [gift]
    assert sorted(s["email"] for s in data["suppressions"]) == [
        "fay@old.example",
        "fay@twin.example",
    ]
    assert "app.visit" in {e["type"] for e in data["events"]}
    # A data request names the address the person gave then: the CLI finds them by it.
    by_old = run_cli(
        database_url, "contacts", "export", "--org", str(org["id"]), "--email", "fay@old.example"
    )
    assert json.loads(by_old.stdout)["contact"]["id"] == fay

    erased = staff.post(f"/v1/contacts/{fay}/erase")
    assert erased.status_code == 200, erased.text
    assert (erased.json()["erased"]["donations"], erased.json()["erased"]["suppressions"]) == (1, 2)
    assert sql(database_url, "select email from donations where id = %s", gift) == [
        ("erased@erased.invalid",)
    ]
    left = (
        "select (select count(*) from events where contact_email = 'fay@old.example')"
        " + (select count(*) from suppressions where email like 'fay@%%')"
        " + (select count(*) from contact_addresses where email like 'fay@%%')"
    )
    assert sql(database_url, left) == [(0,)]


def test_cli_exports_and_erases_by_email(
    staff: httpx.Client, org: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    cid = new_contact(staff, "cli-person@x.io", first_name="Cli")
    out = tmp_path / "person.json"
    run_cli(
        database_url,
        "contacts",
        "export",
        "--org",
        str(org["id"]),
        "--email",
        "CLI-person@x.io",
        "-o",
        str(out),
    )
    assert json.loads(out.read_text())["contact"]["id"] == cid
    printed = run_cli(
        database_url, "contacts", "export", "--org", str(org["id"]), "--email", "cli-person@x.io"
    )
    assert json.loads(printed.stdout)["contact"]["first_name"] == "Cli"

    erase = ["contacts", "erase", "--org", str(org["id"]), "--email", "cli-person@x.io"]
    refused = subprocess.run(
        [SURGE, *erase], input="n\n", env=surge_env(database_url), capture_output=True, text=True
    )
    assert refused.returncode == 1 and "Aborted" in refused.stderr
    assert staff.get(f"/v1/contacts/{cid}").status_code == 200

    erased = run_cli(database_url, *erase, "--yes")
    assert f"erased contact {cid}" in erased.stdout
    assert staff.get(f"/v1/contacts/{cid}").status_code == 404

    unknown = run_cli(
        database_url,
        "contacts",
        "erase",
        "--org",
        str(org["id"]),
        "--email",
        "nobody@x.io",
        "--yes",
        check=False,
    )
    assert unknown.returncode == 1
    assert "no contact" in unknown.stderr and "Traceback" not in unknown.stderr
    no_org = run_cli(
        database_url, "contacts", "export", "--org", "999999", "--email", "x@x.io", check=False
    )
    assert no_org.returncode == 1 and "organization 999999 not found" in no_org.stderr


# -- queued deliveries ------------------------------------------------------------------------


def test_a_deleted_contacts_queued_delivery_ends_skipped_and_counted(
    staff: httpx.Client, database_url: str
) -> None:
    ids = [new_contact(staff, f"queued{i}@x.io") for i in range(6)]
    list_id = new_list(staff, "queued", *ids)
    message = make_message(staff, list_id, send_at="2099-01-01T00:00:00Z")
    # Planned by hand as dispatch's plan does, so the deliveries wait queued.
    sql(
        database_url,
        "with d as (insert into deliveries (message_id, contact_id, organization_id, chunk)"
        " select %s, contact_id, organization_id, 0 from list_members where list_id = %s"
        " returning 1) update message_stats set total = (select count(*) from d)"
        " where message_id = %s",
        message["id"],
        list_id,
        message["id"],
    )
    assert staff.delete(f"/v1/contacts/{ids[0]}").status_code == 204
    # Merged into a contact with a delivery of its own for the message: skipped, then dropped.
    merged = staff.post(f"/v1/contacts/{ids[1]}/merge", json={"from": ids[2]})
    assert merged.json()["moved"]["deliveries_dropped"] == 1
    assert staff.post(f"/v1/contacts/{ids[3]}/erase").status_code == 200
    rows = dict(
        sql(
            database_url,
            "select contact_id, status from deliveries where message_id = %s",
            message["id"],
        )
    )
    assert rows == {ids[0]: "skipped", ids[1]: "queued", ids[4]: "queued", ids[5]: "queued"}
    [(total, skipped)] = sql(
        database_url,
        "select total, skipped from message_stats where message_id = %s",
        message["id"],
    )
    assert (total, skipped) == (6, 3)
