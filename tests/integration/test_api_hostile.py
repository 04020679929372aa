"""Hostile input to the API is a 4xx naming the field: never a 500, never a half-written record.

Each case here was a 500 found by a fuzzer or a real client. The property test at the end
throws hostile strings and numbers at the contacts API: whatever it accepts reads back equal.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import create_org

NUL = "a\u0000b"


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Hostile Org")


@pytest.fixture(scope="module")
def client(api: str, org: dict[str, str]) -> httpx.Client:
    return httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )


@pytest.fixture(scope="module")
def campaign_id(client: httpx.Client) -> int:
    created = client.post("/v1/campaigns", json={"name": "Spring", "kind": "fundraising"})
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


@pytest.fixture(scope="module")
def list_id(client: httpx.Client) -> int:
    created = client.post("/v1/lists", json={"name": "Everyone"})
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def assert_invalid(response: httpx.Response, field: str | None, status: int = 400) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field, error


def count(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(f"select count(*) from {table}").fetchone()  # noqa: S608
        assert row is not None
        return int(row[0])


def one_contact(**fields: Any) -> dict[str, Any]:
    return {"contacts": [{"email": "n@x.io", **fields}]}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/v1/contacts",
            {"contacts": [{"email": "n@x.io", "first_name": NUL}]},
            "contacts[0].first_name",
        ),
        (
            "/v1/contacts",
            {"contacts": [{"email": "n@x.io", "attributes": {NUL: 1}}]},
            "contacts[0].attributes",
        ),
        (
            "/v1/contacts",
            {"contacts": [{"email": "n@x.io", "attributes": {"k": NUL}}]},
            "contacts[0].attributes.k",
        ),
        ("/v1/lists", {"name": NUL}, "name"),
        ("/v1/campaigns", {"name": NUL}, "name"),
        ("/v1/webhook-endpoints", {"url": "https://x.io/" + NUL, "event_types": ["*"]}, "url"),
    ],
)
def test_nul_in_a_text_field_is_400_naming_it(
    client: httpx.Client, path: str, body: dict[str, Any], field: str
) -> None:
    assert_invalid(client.post(path, json=body), field)


def test_nul_in_a_query_parameter_is_400_naming_it(client: httpx.Client) -> None:
    assert_invalid(client.get("/v1/contacts", params={"email": NUL}), "email")
    assert_invalid(client.get("/v1/contacts", params={"after": NUL}), "after")


@pytest.mark.parametrize("limit", ["\u00b2", "1\u0660", "-5", "0", "99999999999999999999999", " 7"])
def test_a_limit_that_is_not_a_plain_number_in_range_is_400(
    client: httpx.Client, list_id: int, limit: str
) -> None:
    assert_invalid(client.get("/v1/contacts", params={"limit": limit}), "limit")
    assert_invalid(client.get(f"/v1/lists/{list_id}/members", params={"limit": limit}), "limit")


def test_integers_beyond_64_bits_are_400_naming_the_field(
    client: httpx.Client, list_id: int, campaign_id: int
) -> None:
    huge = 2**63
    members = client.post(f"/v1/lists/{list_id}/members", json={"contact_ids": [1, huge]})
    assert_invalid(members, "contact_ids[1]")
    assert_invalid(client.post("/v1/campaigns", json={"name": "Big", "goal": huge}), "goal")
    message = {"subject": "s", "from_email": "a@x.io", "list_ids": [huge], "text": "t"}
    assert_invalid(
        client.post(f"/v1/campaigns/{campaign_id}/messages", json=message), "list_ids[0]"
    )


@pytest.mark.parametrize(
    "path", ["/v1/campaigns/{n}", "/v1/messages/{n}", "/v1/contacts/{n}", "/v1/lists/{n}"]
)
def test_an_id_beyond_64_bits_in_a_path_is_404(client: httpx.Client, path: str) -> None:
    response = client.get(path.format(n=2**64))
    assert response.status_code == 404, response.text


def test_attributes_nested_a_thousand_deep_are_400(client: httpx.Client) -> None:
    deep = '{"a": ' * 1000 + "1" + "}" * 1000  # too deep for json.dumps to write
    body = '{"contacts": [{"email": "d@x.io", "attributes": ' + deep + "}]}"
    response = client.post(
        "/v1/contacts", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text


def test_a_number_too_long_to_convert_is_400(client: httpx.Client) -> None:
    body = '{"contacts": [{"email": "big@x.io", "attributes": {"n": %s}}]}' % ("9" * 5000)
    response = client.post(
        "/v1/contacts", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text


def test_a_campaign_with_a_time_out_of_range_is_refused_and_not_written(
    client: httpx.Client, database_url: str
) -> None:
    before = count(database_url, "campaigns")
    for field in ("starts_at", "ends_at"):
        body = {"name": "Ancient", field: "0001-01-01T00:00:00+14:00"}
        assert_invalid(client.post("/v1/campaigns", json=body), field)
    assert count(database_url, "campaigns") == before


def test_a_campaign_ending_before_it_starts_is_400(client: httpx.Client) -> None:
    body = {
        "name": "Backwards",
        "starts_at": "2030-01-02T00:00:00Z",
        "ends_at": "2030-01-01T00:00:00Z",
    }
    assert_invalid(client.post("/v1/campaigns", json=body), "ends_at")


def test_a_message_scheduled_out_of_range_is_400(
    client: httpx.Client, campaign_id: int, list_id: int
) -> None:
    message = {
        "subject": "s",
        "from_email": "a@x.io",
        "list_ids": [list_id],
        "text": "t",
        "send_at": "9999-12-31T23:59:59-14:00",
    }
    assert_invalid(client.post(f"/v1/campaigns/{campaign_id}/messages", json=message), "send_at")


def test_an_overlong_idempotency_key_is_400_naming_the_header(
    api: str, org: dict[str, str], campaign_id: int, client: httpx.Client
) -> None:
    donation = {"amount": 500, "currency": "USD", "email": "d@x.io", "payment_token": "tok_ok"}
    response = httpx.post(
        f"{api}/v1/campaigns/{campaign_id}/donations",
        json=donation,
        headers={"Authorization": f"Bearer {org['publishable_key']}", "Idempotency-Key": "k" * 300},
    )
    assert_invalid(response, "Idempotency-Key")
    upload = client.post(
        "/v1/imports",
        content=b"email\na@x.io\n",
        headers={"content-type": "text/csv", "Idempotency-Key": "k" * 300},
    )
    assert_invalid(upload, "Idempotency-Key")


def test_a_webhook_for_an_unknown_event_type_is_400(client: httpx.Client) -> None:
    body = {
        "url": "https://hooks.example.org/x",
        "event_types": ["donation.succeeded", "nope.never"],
    }
    assert_invalid(client.post("/v1/webhook-endpoints", json=body), "event_types[1]")


# -- property: hostile contacts ------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=40)
numbers = st.one_of(
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)),
    max_leaves=12,
)
emails = st.one_of(
    st.emails().map(lambda e: e[:254]),
    text,
    st.builds(lambda local, dom: f"{local}@{dom}", text, text),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    email=emails,
    first_name=st.one_of(st.none(), text),
    attributes=st.one_of(st.none(), st.dictionaries(text, values, max_size=5)),
)
def test_hostile_contacts_are_stored_exactly_or_refused_with_a_field(
    client: httpx.Client, email: str, first_name: str | None, attributes: dict[str, Any] | None
) -> None:
    contact: dict[str, Any] = {"email": email, "first_name": first_name, "attributes": attributes}
    response = client.post("/v1/contacts", json={"contacts": [contact]})
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"], response.text
        return
    written = response.json()["contacts"][0]
    stored = client.get(f"/v1/contacts/{written['id']}").json()
    assert stored["email"] == email.strip()
    if first_name is not None:
        assert stored["first_name"] == first_name
    if attributes is not None:
        # Attributes merge key by key into what an earlier example stored for this email.
        for key, value in attributes.items():
            assert same(stored["attributes"][key], value), (key, value)


def same(a: Any, b: Any) -> bool:
    """JSON equality, numbers by value: jsonb stores 1e16 and reads it back as 10**16."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    numbers = (int, float)
    if isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool):
        return not isinstance(b, bool) and Decimal(repr(a)) == Decimal(repr(b))
    return type(a) is type(b) and a == b
