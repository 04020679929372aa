"""Segments over the real API: rules over attributes, lists, status, events and donations;
count previews; a message sent to a segment reaches exactly its members.

Events go in through POST /v1/events and donations through the public donation endpoint;
a real worker runs the activity consumer and charges the donations (sandbox gateway).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import create_org, surge_env
from tests.helpers import Recorder, make_message, recording_smtp, wait_for


@pytest.fixture(scope="module")
def outbound() -> Iterator[Recorder]:
    with recording_smtp() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def env(database_url: str, outbound: Recorder) -> dict[str, str]:
    return surge_env(database_url, SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{outbound.port}?tls=none")


People = dict[str, int]


@pytest.fixture(scope="module")
def org(api: str, worker: Any, database_url: str) -> tuple[httpx.Client, People, int, int]:
    """Six contacts with attributes, two lists, events and a donation; waits until the
    activity rollup and the donation are in."""
    keys = create_org(database_url, "Segmented")
    staff = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {keys['secret_key']}"})
    rows = [
        ("ada", {"city": "Leeds", "age": 36, "vip": True}),
        ("bob", {"city": "York", "age": 17}),
        ("cy", {"city": "leeds-north", "age": 52}),
        ("di", {"city": "Hull", "age": 36.5}),
        ("ed", {}),
        ("fay", {"city": "100%_Leeds"}),
    ]
    body = {"contacts": [{"email": f"{n}@example.org", "attributes": a} for n, a in rows]}
    created = staff.post("/v1/contacts", json=body).json()["contacts"]
    people = {c["email"].split("@")[0]: c["id"] for c in created}
    everyone = staff.post("/v1/lists", json={"name": "everyone"}).json()["id"]
    some = staff.post("/v1/lists", json={"name": "some"}).json()["id"]
    staff.post(f"/v1/lists/{everyone}/members", json={"contact_ids": list(people.values())})
    staff.post(f"/v1/lists/{some}/members", json={"contact_ids": [people["ada"], people["bob"]]})
    staff.post("/v1/contacts", json={"contacts": [{"email": "ed@example.org"}]})
    now = datetime.now(UTC)
    events = [
        {"type": "Page Viewed", "contact_id": people["ada"]},
        {"type": "Page Viewed", "contact_id": people["ada"]},
        {"type": "Page Viewed", "contact_email": "BOB@example.org"},
        {
            "type": "Page Viewed",
            "contact_id": people["cy"],
            "occurred_at": (now - timedelta(days=40)).isoformat(),
        },
        {"type": "Page Viewed", "contact_email": "stranger@example.org"},
    ]
    assert staff.post("/v1/events", json={"events": events}).status_code == 202
    campaign = staff.post(
        "/v1/campaigns", json={"name": "Day", "kind": "fundraising", "currency": "USD"}
    ).json()["id"]
    donor = httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {keys['publishable_key']}"}
    )
    gift = {"amount": 5000, "currency": "USD", "email": "Di@example.org", "token": "tok_ok"}
    donated = donor.post(
        f"/v1/campaigns/{campaign}/donations",
        json=gift,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert donated.status_code in (200, 201, 202), donated.text
    deadline = time.monotonic() + 30
    while count(staff, {"kind": "event", "type": "Page Viewed", "within_days": 365}) < 3 or (
        count(staff, {"kind": "donated"}) < 1
    ):
        assert time.monotonic() < deadline, "activity or donation not processed in time"
        time.sleep(0.2)
    return staff, people, everyone, some


def count(staff: httpx.Client, rules: dict[str, Any]) -> int:
    reply = staff.post("/v1/segments/preview", json={"rules": rules})
    assert reply.status_code == 200, reply.text
    return int(reply.json()["matching"])


def attr(name: str, op: str, value: Any = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"kind": "attribute", "name": name, "op": op}
    if value is not None:
        rule["value"] = value
    return rule


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (attr("city", "eq", "Leeds"), {"ada"}),
        (attr("city", "contains", "leeds"), {"ada", "cy", "fay"}),
        (attr("city", "contains", "100%_"), {"fay"}),  # LIKE wildcards are literal text
        (attr("city", "contains", "%"), {"fay"}),
        (attr("age", "gte", 36), {"ada", "cy", "di"}),
        (attr("age", "lt", 36), {"bob"}),
        (attr("age", "in", [17, 52]), {"bob", "cy"}),
        (attr("vip", "exists"), {"ada"}),
        (attr("vip", "ne", True), {"bob", "cy", "di", "ed", "fay"}),
        (attr("city", "lt", "I"), {"di", "fay"}),
        ({"kind": "not", "rule": attr("city", "eq", "Leeds")}, {"bob", "cy", "di", "ed", "fay"}),
        ({"kind": "event", "type": "Page Viewed", "within_days": 7}, {"ada", "bob"}),
        ({"kind": "event", "type": "Page Viewed", "min_count": 2}, {"ada"}),
        ({"kind": "event", "type": "Page Viewed", "within_days": 365}, {"ada", "bob", "cy"}),
        ({"kind": "event", "type": "Never Happened"}, set()),
        ({"kind": "donated", "min_amount": 5000, "currency": "USD"}, {"di"}),
        ({"kind": "donated", "min_amount": 5001}, set()),
        ({"kind": "donated", "before": "2000-01-01"}, set()),
        ({"kind": "status", "statuses": ["subscribed"]}, {"ada", "bob", "cy", "di", "ed", "fay"}),
        (
            {
                "kind": "any",
                "rules": [
                    {"kind": "donated"},
                    {"kind": "all", "rules": [attr("age", "gte", 50), attr("city", "exists")]},
                ],
            },
            {"cy", "di"},
        ),
    ],
)
def test_rules_match_what_they_say(
    org: tuple[httpx.Client, People, int, int], rules: dict[str, Any], expected: set[str]
) -> None:
    staff, people, _, _ = org
    saved = staff.post("/v1/segments", json={"name": "s", "rules": rules})
    assert saved.status_code == 201, saved.text
    assert saved.json()["rules"] == {**rules, **saved.json()["rules"]}
    counted = staff.get(f"/v1/segments/{saved.json()['id']}/count").json()
    assert counted["matching"] == len(expected)
    assert count(staff, rules) == len(expected)
    staff.delete(f"/v1/segments/{saved.json()['id']}")


def test_list_rules_and_membership(org: tuple[httpx.Client, People, int, int]) -> None:
    staff, _, everyone, some = org
    assert count(staff, {"kind": "list", "list_id": some}) == 2
    both = {
        "kind": "all",
        "rules": [
            {"kind": "list", "list_id": everyone},
            {"kind": "not", "rule": {"kind": "list", "list_id": some}},
        ],
    }
    assert count(staff, both) == 4


def test_a_message_to_a_segment_reaches_its_members_only(
    org: tuple[httpx.Client, People, int, int], outbound: Recorder
) -> None:
    staff, _, everyone, _ = org
    segment = staff.post(
        "/v1/segments",
        json={
            "name": "adults in Leeds",
            "rules": {
                "kind": "all",
                "rules": [attr("age", "gte", 18), attr("city", "contains", "leeds")],
            },
        },
    ).json()
    message = make_message(staff, everyone, segment_id=segment["id"])
    assert message["segment_id"] == segment["id"]
    done = wait_for(staff, message["id"], "sent")
    assert done["progress"]["total"] == 2
    assert {"ada@example.org", "cy@example.org"} <= set(outbound.messages)
    assert "bob@example.org" not in outbound.messages
    # In use: cannot be deleted.
    assert staff.delete(f"/v1/segments/{segment['id']}").status_code == 409


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"kind": "list", "list_id": 999999}, "rules.list_id"),
        ({"kind": "all", "rules": [{"kind": "list", "list_id": 999999}]}, "rules.rules[0].list_id"),
        (attr("age", "gt", True), "rules.value"),
        (attr("age", "eq"), "rules.value"),
        (attr("age", "in", []), "rules.value"),
        (attr("age", "exists", 3), "rules.value"),
        ({"kind": "donated", "since": "2026-01-01", "before": "2025-01-01"}, "rules.before"),
        ({"kind": "event", "type": "x", "within_days": 401}, "rules.within_days"),
        ({"kind": "bogus"}, "rules.kind"),
    ],
)
def test_bad_rules_are_400_naming_the_field(
    org: tuple[httpx.Client, People, int, int], rules: dict[str, Any], field: str
) -> None:
    staff, _, _, _ = org
    reply = staff.post("/v1/segments", json={"name": "bad", "rules": rules})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["field"] == field


def test_nesting_and_size_are_bounded(org: tuple[httpx.Client, People, int, int]) -> None:
    staff, _, _, _ = org
    rule: dict[str, Any] = attr("a", "exists")
    for _ in range(6):
        rule = {"kind": "not", "rule": rule}
    assert staff.post("/v1/segments/preview", json={"rules": rule}).status_code == 400
    wide = {"kind": "any", "rules": [attr("a", "exists")] * 50}
    assert staff.post("/v1/segments/preview", json={"rules": wide}).status_code == 400


def test_segments_belong_to_their_organisation(
    api: str, database_url: str, org: tuple[httpx.Client, People, int, int]
) -> None:
    staff, _, _, some = org
    saved = staff.post("/v1/segments", json={"name": "mine", "rules": attr("a", "exists")}).json()
    other = create_org(database_url, "Other")
    them = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {other['secret_key']}"})
    assert them.get(f"/v1/segments/{saved['id']}").status_code == 404
    assert them.get(f"/v1/segments/{saved['id']}/count").status_code == 404
    assert them.delete(f"/v1/segments/{saved['id']}").status_code == 404
    assert (
        them.post(
            "/v1/segments/preview", json={"rules": {"kind": "list", "list_id": some}}
        ).status_code
        == 400
    )
    assert them.get("/v1/segments").json()["data"] == []
    page = staff.get("/v1/segments", params={"limit": 1}).json()
    assert len(page["data"]) == 1 and page["next"]


scalars = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
leaves = st.one_of(
    st.builds(
        lambda n, op, v: {"kind": "attribute", "name": n, "op": op, "value": v},
        st.text(min_size=1, max_size=20),
        st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "contains"]),
        scalars,
    ),
    st.builds(
        lambda t, d, c: {"kind": "event", "type": t, "within_days": d, "min_count": c},
        st.text(min_size=1, max_size=20),
        st.integers(1, 400),
        st.integers(1, 5),
    ),
    st.builds(lambda a: {"kind": "donated", "min_amount": a}, st.integers(0, 2**62)),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(
            lambda r: {"kind": "all", "rules": r}, st.lists(children, min_size=1, max_size=3)
        ),
        st.builds(
            lambda r: {"kind": "any", "rules": r}, st.lists(children, min_size=1, max_size=3)
        ),
        st.builds(lambda r: {"kind": "not", "rule": r}, children),
    ),
    max_leaves=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rules=trees)
def test_any_rule_is_counted_or_refused_never_a_server_error(
    org: tuple[httpx.Client, People, int, int], rules: dict[str, Any]
) -> None:
    staff, _, _, _ = org
    reply = staff.post("/v1/segments/preview", json={"rules": rules})
    assert reply.status_code in (200, 400), reply.text
