"""Journeys over the real API and a real worker: each trigger enrols, steps run in order,
exit rules take contacts out, each contact enters once unless re-entry is allowed, counts
per step add up, and bad definitions are 4xx naming the field.

Members join lists through POST /v1/lists/{id}/members, events arrive through POST
/v1/events and donations through the public donation endpoint (sandbox gateway); mail goes
to a recording SMTP server and webhooks to a recording HTTP server.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import create_org, surge_env
from tests.helpers import Receiver, Recorder, recording_smtp, webhook_receiver


@pytest.fixture(scope="module")
def outbound() -> Iterator[Recorder]:
    with recording_smtp() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    with webhook_receiver() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def env(database_url: str, outbound: Recorder) -> dict[str, str]:
    return surge_env(database_url, SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{outbound.port}?tls=none")


@pytest.fixture(scope="module")
def keys(api: str, worker: Any, database_url: str) -> dict[str, str]:
    return create_org(database_url, "Journeys")


@pytest.fixture(scope="module")
def staff(api: str, keys: dict[str, str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {keys['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def campaign(staff: httpx.Client) -> int:
    created = staff.post("/v1/campaigns", json={"name": "Journeys", "currency": "USD"})
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def people(staff: httpx.Client, prefix: str, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Contacts ``<prefix>-<name>@example.org``; name → id."""
    body = {
        "contacts": [
            {
                "email": f"{prefix}-{r['name']}@example.org",
                "first_name": r["name"],
                "attributes": r.get("attributes", {}),
            }
            for r in rows
        ]
    }
    created = staff.post("/v1/contacts", json=body)
    assert created.status_code == 200, created.text
    return {c["email"].split("@")[0].split("-")[1]: c["id"] for c in created.json()["contacts"]}


def new_list(staff: httpx.Client, name: str) -> int:
    return int(staff.post("/v1/lists", json={"name": name}).json()["id"])


def send_step(campaign: int, subject: str) -> dict[str, Any]:
    return {
        "kind": "send",
        "campaign_id": campaign,
        "subject": subject,
        "html": "<p>Hello {{ first_name }}</p>",
        "from_email": "journeys@charity.example",
    }


def create(staff: httpx.Client, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "journey")
    created = staff.post("/v1/journeys", json=body)
    assert created.status_code == 201, created.text
    journey: dict[str, Any] = created.json()
    assert journey["status"] == "draft"
    return journey


def activate(staff: httpx.Client, journey: dict[str, Any]) -> dict[str, Any]:
    done = staff.post(f"/v1/journeys/{journey['id']}/activate")
    assert done.status_code == 200, done.text
    active: dict[str, Any] = done.json()
    assert active["status"] == "active"
    return active


def until(
    staff: httpx.Client,
    journey_id: int,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 45,
) -> dict[str, Any]:
    """Poll GET /v1/journeys/{id} until ``check`` holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        journey: dict[str, Any] = staff.get(f"/v1/journeys/{journey_id}").json()
        if check(journey):
            return journey
        assert time.monotonic() < deadline, json.dumps(journey, indent=1)
        time.sleep(0.2)


def received(outbound: Recorder, subject: str) -> set[str]:
    with outbound.lock:
        return {rcpt for rcpt, data in outbound.messages.items() if subject.encode() in data}


def test_members_who_join_a_list_walk_wait_condition_send(
    staff: httpx.Client, campaign: int, outbound: Recorder
) -> None:
    who = people(
        staff,
        "walk",
        [
            {"name": "ada", "attributes": {"vip": True}},
            {"name": "bob", "attributes": {"vip": False}},
            {"name": "cy", "attributes": {"vip": True}},
            {"name": "early", "attributes": {"vip": True}},
        ],
    )
    joined = new_list(staff, "walkers")
    # Members before the first activation do not enter: the trigger counts from then on.
    staff.post(f"/v1/lists/{joined}/members", json={"contact_ids": [who["early"]]})
    journey = create(
        staff,
        trigger={"kind": "list", "list_id": joined},
        steps=[
            {"kind": "wait", "seconds": 0},
            {
                "kind": "condition",
                "rules": {"kind": "attribute", "name": "vip", "op": "eq", "value": True},
            },
            send_step(campaign, "Walk welcome"),
        ],
    )
    activate(staff, journey)
    ids = [who["ada"], who["bob"], who["cy"]]
    assert staff.post(f"/v1/lists/{joined}/members", json={"contact_ids": ids}).status_code == 200
    done = until(staff, journey["id"], lambda j: j["stats"]["active"] == 0 < j["stats"]["entered"])
    stats = done["stats"]
    assert (stats["entered"], stats["completed"], stats["exited"], stats["active"]) == (3, 2, 1, 0)
    wait, condition, send = stats["steps"]
    assert (wait["kind"], wait["entered"], wait["done"], wait["waiting"]) == ("wait", 3, 3, 0)
    assert (condition["entered"], condition["done"], condition["exited"]) == (3, 2, 1)
    assert (send["entered"], send["done"]) == (2, 2)
    [message_id] = send["message_ids"]
    deadline = time.monotonic() + 30
    while received(outbound, "Walk welcome") != {"walk-ada@example.org", "walk-cy@example.org"}:
        assert time.monotonic() < deadline, received(outbound, "Walk welcome")
        time.sleep(0.2)
    message = staff.get(f"/v1/messages/{message_id}").json()
    assert message["status"] == "sending"  # open while the journey runs
    assert message["progress"]["total"] == 2
    enrolled = staff.get(f"/v1/journeys/{journey['id']}/enrolments").json()["data"]
    states = {e["contact_id"]: (e["state"], e["exit_reason"]) for e in enrolled}
    assert states == {
        who["ada"]: ("done", None),
        who["cy"]: ("done", None),
        who["bob"]: ("exited", "condition not met"),
    }
    # Archived: its message is closed and, its chunks all done, marked sent.
    archived = staff.post(f"/v1/journeys/{journey['id']}/archive")
    assert archived.status_code == 200 and archived.json()["status"] == "archived"
    deadline = time.monotonic() + 30
    while staff.get(f"/v1/messages/{message_id}").json()["status"] != "sent":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def post_event(staff: httpx.Client, event_type: str, **who: Any) -> None:
    reply = staff.post("/v1/events", json={"events": [{"type": event_type, **who}]})
    assert reply.status_code == 202, reply.text


def test_an_event_enrols_once_unless_reentry_is_allowed(staff: httpx.Client, campaign: int) -> None:
    who = people(staff, "evt", [{"name": "ann"}, {"name": "ben"}])
    once = create(
        staff,
        name="once",
        trigger={"kind": "event", "type": "Signed Up"},
        steps=[send_step(campaign, "Once only")],
    )
    again = create(
        staff,
        name="again",
        trigger={"kind": "event", "type": "Signed Up"},
        steps=[send_step(campaign, "Every time")],
        reentry=True,
    )
    activate(staff, once)
    activate(staff, again)
    post_event(staff, "Signed Up", contact_id=who["ann"])
    post_event(staff, "Signed Up", contact_email="EVT-ben@example.org")  # by address
    post_event(staff, "Signed Up", contact_email="stranger@example.org")  # not a contact
    post_event(staff, "Something Else", contact_id=who["ann"])
    until(staff, once["id"], lambda j: j["stats"]["completed"] == 2)
    until(staff, again["id"], lambda j: j["stats"]["completed"] == 2)
    post_event(staff, "Signed Up", contact_id=who["ann"])  # ann again, after finishing
    second = until(staff, again["id"], lambda j: j["stats"]["completed"] == 3)
    # A second entry is a delivery of its own: the step's message of the second generation.
    assert len(second["stats"]["steps"][0]["message_ids"]) == 2
    time.sleep(2)  # the event consumer has long run: once still has each contact once
    first = staff.get(f"/v1/journeys/{once['id']}").json()["stats"]
    assert (first["entered"], first["completed"]) == (2, 2)
    enrolled = staff.get(f"/v1/journeys/{again['id']}/enrolments").json()["data"]
    assert {e["contact_id"]: e["entries"] for e in enrolled} == {who["ann"]: 2, who["ben"]: 1}
    # The recorder keeps each recipient's latest mail: count the sends on the message.
    [message_id] = first["steps"][0]["message_ids"]
    deadline = time.monotonic() + 30
    while staff.get(f"/v1/messages/{message_id}").json()["progress"]["sent"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert staff.get(f"/v1/messages/{message_id}").json()["progress"]["total"] == 2


def donate(api: str, keys: dict[str, str], campaign: int, email: str) -> None:
    donor = httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {keys['publishable_key']}"}
    )
    gift = {"amount": 2500, "currency": "USD", "email": email, "token": "tok_ok"}
    reply = donor.post(
        f"/v1/campaigns/{campaign}/donations",
        json=gift,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert reply.status_code in (200, 201, 202), reply.text


def test_donors_enter_and_a_donation_takes_contacts_out(
    api: str, keys: dict[str, str], staff: httpx.Client, campaign: int, outbound: Recorder
) -> None:
    who = people(staff, "gift", [{"name": "dot"}, {"name": "eve"}, {"name": "fin"}])
    thanks = create(
        staff,
        name="thank donors",
        trigger={"kind": "donation", "campaign_id": campaign},
        steps=[send_step(campaign, "Thank you for giving")],
    )
    appeal = create(
        staff,
        name="appeal until they give",
        trigger={"kind": "event", "type": "Viewed Appeal"},
        steps=[{"kind": "wait", "seconds": 4}, send_step(campaign, "Please give")],
        exit_rules=[{"kind": "donated", "campaign_id": campaign}],
    )
    activate(staff, thanks)
    activate(staff, appeal)
    post_event(staff, "Viewed Appeal", contact_id=who["eve"])
    post_event(staff, "Viewed Appeal", contact_id=who["fin"])
    until(staff, appeal["id"], lambda j: j["stats"]["steps"][0]["waiting"] == 2)
    donate(api, keys, campaign, "GIFT-eve@example.org")
    donate(api, keys, campaign, "gift-dot@example.org")
    donate(api, keys, campaign, "not-a-contact@example.org")
    done = until(staff, thanks["id"], lambda j: j["stats"]["completed"] == 2)
    assert done["stats"]["entered"] == 2
    left = until(staff, appeal["id"], lambda j: j["stats"]["active"] == 0)
    assert (left["stats"]["completed"], left["stats"]["exited"]) == (1, 1)
    assert left["stats"]["steps"][0]["exited"] == 1  # left while waiting, before the send
    enrolled = staff.get(f"/v1/journeys/{appeal['id']}/enrolments?state=exited").json()["data"]
    assert [(e["contact_id"], e["exit_reason"]) for e in enrolled] == [
        (who["eve"], "exit rule 0: donated")
    ]
    deadline = time.monotonic() + 30
    while received(outbound, "Please give") != {"gift-fin@example.org"}:
        assert time.monotonic() < deadline, received(outbound, "Please give")
        time.sleep(0.2)
    # A completed send step has queued the mail for dispatch; it arrives moments later.
    while not received(outbound, "Thank you for giving") >= {"gift-dot@example.org"}:
        assert time.monotonic() < deadline, received(outbound, "Thank you for giving")
        time.sleep(0.2)


def test_add_to_list_and_webhook_steps(staff: httpx.Client, hooks: Receiver) -> None:
    who = people(staff, "hook", [{"name": "gus"}, {"name": "hal"}])
    source, target = new_list(staff, "hook source"), new_list(staff, "hook target")
    endpoint = staff.post(
        "/v1/webhook-endpoints",
        json={"url": hooks.base + "/journeys", "event_types": ["journey.step"]},
    )
    assert endpoint.status_code == 201, endpoint.text
    journey = create(
        staff,
        trigger={"kind": "list", "list_id": source},
        steps=[
            {"kind": "add_to_list", "list_id": target},
            {"kind": "webhook", "label": "welcomed"},
        ],
    )
    activate(staff, journey)
    ids = sorted(who.values())
    staff.post(f"/v1/lists/{source}/members", json={"contact_ids": ids})
    until(staff, journey["id"], lambda j: j["stats"]["completed"] == 2)
    members = staff.get(f"/v1/lists/{target}/members").json()["data"]
    assert sorted(m["id"] for m in members) == ids
    deadline = time.monotonic() + 30
    while len(hooks.at("/journeys")) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    bodies = [json.loads(r.body) for r in hooks.at("/journeys")]
    assert {b["type"] for b in bodies} == {"journey.step"}
    assert sorted(b["data"]["contact"]["id"] for b in bodies) == ids
    assert {b["data"]["label"] for b in bodies} == {"welcomed"}


def test_a_birthday_attribute_enrols_on_its_day(staff: httpx.Client, campaign: int) -> None:
    today = datetime.now(UTC).date()
    who = people(
        staff,
        "bday",
        [
            {"name": "ivy", "attributes": {"birthday": f"1990-{today:%m-%d}"}},
            {"name": "jo", "attributes": {"birthday": "not a date"}},
            {"name": "kim", "attributes": {"birthday": 19900101}},
            {"name": "lee"},
        ],
    )
    journey = create(
        staff,
        trigger={"kind": "date", "attribute": "birthday"},
        steps=[{"kind": "wait", "days": 1}],
        reentry=True,
    )
    activate(staff, journey)
    done = until(staff, journey["id"], lambda j: j["stats"]["entered"] >= 1, timeout=60)
    enrolled = staff.get(f"/v1/journeys/{journey['id']}/enrolments").json()["data"]
    assert [e["contact_id"] for e in enrolled] == [who["ivy"]]
    assert done["stats"]["steps"][0]["waiting"] == 1


def test_pause_holds_contacts_and_activate_resumes(staff: httpx.Client, campaign: int) -> None:
    who = people(staff, "hold", [{"name": "max"}])
    journey = create(
        staff,
        trigger={"kind": "event", "type": "Held"},
        steps=[{"kind": "webhook", "label": "held"}],
    )
    activate(staff, journey)
    paused = staff.post(f"/v1/journeys/{journey['id']}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert staff.post(f"/v1/journeys/{journey['id']}/pause").status_code == 409
    post_event(staff, "Held", contact_id=who["max"])
    held = until(staff, journey["id"], lambda j: j["stats"]["entered"] == 1)
    time.sleep(1.5)  # the runner has had its turns: a paused journey runs nothing
    held = staff.get(f"/v1/journeys/{journey['id']}").json()
    assert held["stats"]["steps"][0]["waiting"] == 1 and held["stats"]["completed"] == 0
    activate(staff, held)
    until(staff, journey["id"], lambda j: j["stats"]["completed"] == 1)


def test_trigger_and_steps_change_only_in_draft(staff: httpx.Client, campaign: int) -> None:
    journey = create(
        staff, trigger={"kind": "event", "type": "Draft"}, steps=[{"kind": "wait", "hours": 1}]
    )
    patched = staff.patch(
        f"/v1/journeys/{journey['id']}",
        json={"steps": [{"kind": "wait", "minutes": 5}], "name": "renamed"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["steps"] == [
        {"kind": "wait", "days": 0, "hours": 0, "minutes": 5, "seconds": 0}
    ]
    activate(staff, journey)
    refused = staff.patch(f"/v1/journeys/{journey['id']}", json={"steps": [{"kind": "wait"}]})
    assert refused.status_code == 409
    renamed = staff.patch(f"/v1/journeys/{journey['id']}", json={"name": "again", "reentry": True})
    assert renamed.status_code == 200 and renamed.json()["reentry"] is True
    assert staff.post(f"/v1/journeys/{journey['id']}/archive").status_code == 200
    assert staff.post(f"/v1/journeys/{journey['id']}/activate").status_code == 409
    assert staff.patch(f"/v1/journeys/{journey['id']}", json={"name": "x"}).status_code == 409


EVENT = {"kind": "event", "type": "X"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"trigger": {"kind": "nope"}, "steps": [{"kind": "wait"}]}, "trigger.kind"),
        ({"trigger": {"kind": "list", "list_id": 999999}, "steps": [{"kind": "wait"}]},
         "trigger.list_id"),
        ({"trigger": EVENT, "steps": []}, "steps"),
        ({"trigger": EVENT, "steps": [{"kind": "wait", "seconds": -1}]}, "steps[0].seconds"),
        ({"trigger": EVENT, "steps": [{"kind": "wait", "days": 300, "hours": 8000}]}, "steps[0]"),
        (
            {"trigger": EVENT, "steps": [
                {"kind": "wait"},
                {"kind": "condition", "rules": {"kind": "status", "statuses": ["subscribed"]},
                 "else_goto": 1},
            ]},
            "steps[1].else_goto",
        ),
        (
            {"trigger": EVENT, "steps": [
                {"kind": "condition", "rules": {"kind": "list", "list_id": 999999}}]},
            "steps[0].rules.list_id",
        ),
        (
            {"trigger": EVENT, "steps": [
                {"kind": "send", "campaign_id": 1, "subject": "{{ nope }}",
                 "html": "x", "from_email": "a@example.org"}]},
            "steps[0].subject",
        ),
        (
            {"trigger": EVENT, "steps": [
                {"kind": "send", "campaign_id": 999999, "subject": "Hi",
                 "text": "x", "from_email": "a@example.org"}]},
            "steps[0].campaign_id",
        ),
        ({"trigger": EVENT, "steps": [{"kind": "webhook", "label": "Bad Label"}]},
         "steps[0].label"),
        ({"trigger": EVENT, "steps": [{"kind": "add_to_list", "list_id": 999999}]},
         "steps[0].list_id"),
        ({"trigger": {"kind": "date"}, "steps": [{"kind": "wait"}]}, "trigger.attribute"),
        ({"trigger": {"kind": "date", "first_donation": True, "annual": False},
          "steps": [{"kind": "wait"}]}, "trigger.annual"),
        ({"trigger": EVENT, "steps": [{"kind": "wait"}],
          "exit_rules": [{"kind": "rules", "rules": {"kind": "list", "list_id": 999999}}]},
         "exit_rules[0].rules.list_id"),
        # msgspec names an unknown field in the message, not as a path.
        ({"trigger": EVENT, "steps": [{"kind": "wait"}], "surprise": 1}, None),
    ],
)  # fmt: skip
def test_bad_definitions_are_400_naming_the_field(
    staff: httpx.Client, campaign: int, body: dict[str, Any], field: str | None
) -> None:
    body = {"name": "bad", **body}
    if "steps" in body:
        for step in body["steps"]:
            if step.get("kind") == "send" and step["campaign_id"] == 1:
                step["campaign_id"] = campaign
    reply = staff.post("/v1/journeys", json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["field"] == field


def test_journeys_are_the_organisations_own(
    api: str, database_url: str, staff: httpx.Client
) -> None:
    journey = create(staff, trigger=EVENT, steps=[{"kind": "wait"}])
    other = create_org(database_url, "Other")
    with httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {other['secret_key']}"}
    ) as them:
        assert them.get(f"/v1/journeys/{journey['id']}").status_code == 404
        assert them.post(f"/v1/journeys/{journey['id']}/activate").status_code == 404
        assert them.get(f"/v1/journeys/{journey['id']}/enrolments").status_code == 404
        assert them.get("/v1/journeys").json()["data"] == []
    page = staff.get("/v1/journeys?limit=1").json()
    assert len(page["data"]) == 1 and page["next"]
    assert staff.get(f"/v1/journeys/{journey['id']}/enrolments?state=bogus").status_code == 400
