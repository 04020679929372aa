"""schemathesis over every operation of /openapi.json, against a real ``surge api``.

Requests are generated from our own document, valid ones and deliberately invalid ones,
with ids of real resources as well as random ones, and sent over HTTP with a real key. No
answer may be a 5xx. ``SURGE_SCHEMATHESIS_EXAMPLES`` raises the examples per operation and
mode (30 here keeps ``make test`` quick; the acceptance run used 300).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from surge.api.openapi import document
from surge.app import routes
from tests.conftest import create_org

EXAMPLES = int(os.environ.get("SURGE_SCHEMATHESIS_EXAMPLES", "30"))

DOCUMENT = document(routes())
OPERATIONS = [(path, method) for path, ops in DOCUMENT["paths"].items() for method in ops]


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Fuzzed Org")


@pytest.fixture(scope="module")
def schema(api: str) -> Any:
    return schemathesis.openapi.from_url(api + "/openapi.json")


@pytest.fixture(scope="module")
def real_ids(api: str, org: dict[str, str]) -> dict[str, int]:
    """One real resource of each kind, so that generated requests reach past the 404."""
    client = httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )

    def made(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code in (200, 201, 202), response.text
        body: dict[str, Any] = response.json()
        return body

    contact = made(client.post("/v1/contacts", json={"contacts": [{"email": "f@x.io"}]}))
    members = made(client.post("/v1/lists", json={"name": "Fuzz"}))
    campaign = made(
        client.post(
            "/v1/campaigns",
            json={"name": "Fuzz", "kind": "fundraising", "goal": 100, "currency": "USD"},
        )
    )
    message = made(
        client.post(
            f"/v1/campaigns/{campaign['id']}/messages",
            json={
                "subject": "Hi",
                "from_email": "a@x.io",
                "list_ids": [members["id"]],
                "text": "t",
                "send_at": "2099-01-01T00:00:00Z",
            },
        )
    )
    endpoint = made(
        client.post(
            "/v1/webhook-endpoints",
            json={"url": "http://127.0.0.1:9/hook", "event_types": ["*"]},
        )
    )
    upload = made(
        client.post("/v1/imports", content=b"email\ni@x.io\n", headers={"content-type": "text/csv"})
    )
    donation = made(
        httpx.post(
            f"{api}/v1/campaigns/{campaign['id']}/donations",
            json={"amount": 500, "currency": "USD", "email": "d@x.io", "token": "tok_ok"},
            headers={"Authorization": f"Bearer {org['publishable_key']}", "Idempotency-Key": "k"},
        )
    )
    segment = made(
        client.post(
            "/v1/segments",
            json={"name": "Fuzz", "rules": {"kind": "list", "list_id": members["id"]}},
        )
    )
    journey = made(
        client.post(
            "/v1/journeys",
            json={
                "name": "Fuzz",
                "trigger": {"kind": "list", "list_id": members["id"]},
                "steps": [{"kind": "wait", "seconds": 60}],
            },
        )
    )
    export = made(client.post("/v1/exports", json={"kind": "contacts"}))
    return {
        "segment_id": segment["id"],
        "journey_id": journey["id"],
        "export_id": export["id"],
        "id": contact["contacts"][0]["id"],
        "campaign_id": campaign["id"],
        "message_id": message["id"],
        "endpoint_id": endpoint["id"],
        "donation_id": donation["id"],
        "list_id": members["id"],
        "import_id": upload["id"],
    }


def _real(path: str, ids: dict[str, int]) -> dict[str, int]:
    """Real ids for ``path``'s parameters (``{id}`` is a contact, list or import by path)."""
    fixed = {name: ids[name] for name in ids if "{" + name + "}" in path}
    if "{id}" in path:
        for kind in ("list", "import"):
            if path.startswith(f"/v1/{kind}s/"):
                fixed["id"] = ids[f"{kind}_id"]
    return fixed


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_no_generated_request_gets_a_server_error(
    schema: Any,
    api: str,
    org: dict[str, str],
    real_ids: dict[str, int],
    path: str,
    method: str,
) -> None:
    operation = schema[path][method]
    spec = DOCUMENT["paths"][path][method]
    key = org["publishable_key"] if {"publishable": []} in spec.get("security", []) else None
    auth = {"Authorization": f"Bearer {key or org['secret_key']}"}
    strategies = [
        operation.as_strategy(mode, headers=auth, path_parameters=fixed)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for fixed in ({}, _real(path, real_ids))
    ]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def check(case: Any) -> None:
        response = case.call(base_url=api)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} query={case.query} "
            f"headers={dict(case.headers or {})} body={case.body!r}\n"
            f"-> {response.status_code} {response.text[:500]}"
        )

    check()
