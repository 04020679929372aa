"""Event intake over real HTTP: POST /v1/events and the Segment-compatible endpoints."""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from surge.db.embedded import free_port
from tests.conftest import Process, create_org, start_api, surge_env


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Ingest Org")


@pytest.fixture(scope="module")
def client(api: str, org: dict[str, str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {org['publishable_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as c:
        yield c


def stored(database_url: str, where: str = "true", params: Any = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        query = (
            "select type, contact_email, contact_id, campaign_id, payload, occurred_at"
            f" from events where {where} order by id"
        )
        return conn.execute(query, params).fetchall()


def test_single_event_is_stored_before_202(client: httpx.Client, database_url: str) -> None:
    res = client.post(
        "/v1/events",
        json={
            "type": "app.signup",
            "contact_email": "Ada@Example.org",
            "occurred_at": "2026-01-02T03:04:05Z",
            "properties": {"plan": "pro", "seats": 3},
        },
    )
    assert res.status_code == 202, res.text
    assert res.json() == {"accepted": 1}
    [row] = stored(database_url, "type = 'app.signup'")
    assert row[1] == "ada@example.org"
    assert row[4] == {"plan": "pro", "seats": 3}
    assert row[5].isoformat().startswith("2026-01-02T03:04:05")


def test_batch_of_events_is_stored(client: httpx.Client, database_url: str) -> None:
    events = [{"type": "app.batch", "properties": {"n": i}, "contact_id": i + 1} for i in range(50)]
    res = client.post("/v1/events", json={"events": events})
    assert res.status_code == 202, res.text
    assert res.json() == {"accepted": 50}
    rows = stored(database_url, "type = 'app.batch'")
    assert sorted(r[4]["n"] for r in rows) == list(range(50))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": [{"type": "ok"}, {"typo": "x"}]}, "events[1]"),
        ({"events": [{"type": "ok"}, {"type": 5}]}, "events[1].type"),
        ({"type": "x", "contact_email": "not-an-email"}, "contact_email"),
        ({"type": "x", "occurred_at": "yesterday"}, "occurred_at"),
        ({"type": "x", "properties": [1, 2]}, "properties"),
        ({"type": "x", "properties": {"a": "\u0000"}}, "properties.a"),
        ({"type": ""}, "type"),
        ({"properties": {}}, "type"),
        ({"type": "donation.succeeded"}, "type"),
        ({"events": [{"type": "a"}], "type": "b"}, "type"),
    ],
)
def test_bad_events_are_400_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    res = client.post("/v1/events", json=body)
    assert res.status_code == 400, res.text
    assert res.json()["error"]["field"] == field


def test_malformed_and_invalid_utf8_bodies_are_400(client: httpx.Client) -> None:
    for content in (b"{", b"", b'{"type": "x", "properties": {"a": "\xff"}}', b"[1]"):
        res = client.post("/v1/events", content=content)
        assert res.status_code == 400, (content, res.text)


def test_an_oversized_event_is_400_and_an_oversized_request_413(client: httpx.Client) -> None:
    res = client.post("/v1/events", json={"type": "big", "properties": {"x": "a" * 40_000}})
    assert res.status_code == 400
    assert res.json()["error"]["field"] == "properties"
    many = [{"type": "big", "properties": {"x": "a" * 30_000}} for _ in range(40)]
    assert client.post("/v1/events", json={"events": many}).status_code == 413


def test_unknown_key_is_401(api: str) -> None:
    res = httpx.post(api + "/v1/events", json={"type": "x"}, auth=("pk_nope_nope", ""))
    assert res.status_code == 401
    assert httpx.post(api + "/v1/events", json={"type": "x"}).status_code == 401


def _basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_segment_track_and_identify_with_basic_auth(
    api: str, org: dict[str, str], database_url: str
) -> None:
    track = {
        "userId": "u1",
        "event": "Order Completed",
        "properties": {"revenue": 12.5, "email": "Buyer@Example.org"},
        "context": {"ip": "1.2.3.4", "library": {"name": "curl"}},
        "integrations": {"All": True},
        "messageId": "m-1",
        "timestamp": "2026-03-01T10:00:00Z",
        "sentAt": "2026-03-01T10:00:00Z",
    }
    res = httpx.post(api + "/v1/track", json=track, headers=_basic(org["publishable_key"]))
    assert res.status_code == 200, res.text
    assert res.json() == {"success": True, "accepted": 1}
    identify = {"userId": "u1", "traits": {"email": "ident@example.org", "name": "Ida"}}
    body = gzip.compress(json.dumps(identify).encode())
    headers = {**_basic(org["publishable_key"]), "Content-Encoding": "gzip"}
    res = httpx.post(api + "/v1/identify", content=body, headers=headers)
    assert res.status_code == 200, res.text
    [t] = stored(database_url, "type = 'Order Completed'")
    assert t[1] == "buyer@example.org"
    assert t[4]["messageId"] == "m-1" and t[4]["context"]["ip"] == "1.2.3.4"
    [i] = stored(database_url, "type = 'identify'")
    assert i[1] == "ident@example.org"


def test_segment_batch_names_the_bad_message(api: str, org: dict[str, str]) -> None:
    batch = {"batch": [{"type": "track", "event": "ok"}, {"type": "track", "userId": "x"}]}
    res = httpx.post(api + "/v1/batch", json=batch, headers=_basic(org["publishable_key"]))
    assert res.status_code == 200, res.text
    [bad] = res.json()["rejected"]
    assert (bad["index"], bad["code"], bad["field"]) == (1, "invalid", "batch[1].event")


def test_one_invalid_message_does_not_lose_the_rest_of_its_batch(
    api: str, org: dict[str, str], database_url: str
) -> None:
    good = [
        {"type": "track", "event": "batch.survivor", "properties": {"i": i}} for i in range(990)
    ]
    bad = [
        {"type": "track", "event": "x", "properties": {"n": 1e308}, "p": "1e" + "9" * 5},
        {"type": "track", "event": "x", "timestamp": "0001-01-01T00:00:00+14:00"},
        {"type": "nope"},
    ]
    body = json.dumps({"batch": good[:500] + bad + good[500:]}).replace('"1e99999"', "1e99999")
    res = httpx.post(api + "/v1/batch", content=body, headers=_basic(org["publishable_key"]))
    assert res.status_code == 200, res.text
    answer = res.json()
    assert answer["success"] is True and answer["accepted"] == 990
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [
        (500, "batch[500].p"),
        (501, "batch[501].timestamp"),
        (502, "batch[502].type"),
    ]
    assert len(stored(database_url, "type = 'batch.survivor'")) == 990


def test_a_body_that_is_not_a_batch_is_400(api: str, org: dict[str, str]) -> None:
    for content in (b"{", b'{"batch": 1}', b"[]"):
        res = httpx.post(api + "/v1/batch", content=content, headers=_basic(org["publishable_key"]))
        assert res.status_code == 400, (content, res.text)


def test_uuid_like_message_ids_are_not_taken_for_huge_numbers(
    api: str, org: dict[str, str], database_url: str
) -> None:
    for message_id in ("1e23456", "4e2bf7c8-1e73456-9E-12345", "0E+99999"):
        track = {"userId": "u1", "event": "uuid.like", "messageId": message_id}
        res = httpx.post(api + "/v1/track", json=track, headers=_basic(org["publishable_key"]))
        assert res.status_code == 200, res.text
    assert len(stored(database_url, "type = 'uuid.like'")) == 3


@pytest.mark.parametrize(
    "number", ["1e1001", "1e-1001", "0e-100000", "1" * 4301, "0." + "1" * 1000]
)
def test_numbers_beyond_the_bounds_are_400_naming_the_field(
    client: httpx.Client, number: str
) -> None:
    body = '{"type": "too.big", "properties": {"n": ' + number + "}}"
    res = client.post("/v1/events", content=body)
    assert res.status_code == 400, res.text
    assert res.json()["error"]["field"] == "properties.n"


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00"])
def test_times_outside_the_sane_range_are_400_and_not_stored(
    api: str, client: httpx.Client, org: dict[str, str], database_url: str, stamp: str
) -> None:
    res = client.post("/v1/events", json={"type": "bad.time", "occurred_at": stamp})
    assert res.status_code == 400, res.text
    assert res.json()["error"]["field"] == "occurred_at"
    track = {"event": "bad.time", "timestamp": stamp}
    res = httpx.post(api + "/v1/track", json=track, headers=_basic(org["publishable_key"]))
    assert res.status_code == 400, res.text
    assert res.json()["error"]["field"] == "timestamp"
    assert not stored(database_url, "type = 'bad.time'")


def test_intake_errors_carry_top_level_code_and_message_for_sdks(
    api: str, org: dict[str, str]
) -> None:
    res = httpx.post(api + "/v1/batch", content=b"{", headers=_basic(org["publishable_key"]))
    assert res.status_code == 400
    body = res.json()
    assert body["error"]["code"] == body["code"] == "invalid"
    assert body["error"]["message"] == body["message"]
    assert set(body["error"]) == {"code", "message", "field"}


def test_rudderstack_sdk_does_not_retry_a_400(api: str, org: dict[str, str]) -> None:
    from rudderstack.analytics.request import APIError, post  # type: ignore[import-untyped]

    with pytest.raises(APIError) as err:
        post(org["publishable_key"], host=api, batch=1)
    assert err.value.status == 400 and err.value.code == "invalid"


def test_a_cached_key_is_not_accepted_under_another_auth_scheme(
    api: str, org: dict[str, str]
) -> None:
    key = org["publishable_key"]
    for scheme in ("Bearer", "Basic"):
        token = key if scheme == "Bearer" else base64.b64encode(f"{key}:".encode()).decode()
        good = httpx.post(
            api + "/v1/events", json={"type": "x"}, headers={"Authorization": f"{scheme} {token}"}
        )
        assert good.status_code == 202, good.text
        for other in ("Foo", "Token", "Digest"):
            res = httpx.post(
                api + "/v1/events",
                json={"type": "x"},
                headers={"Authorization": f"{other} {token}"},
            )
            assert res.status_code == 401, (scheme, other, res.text)


def test_openapi_describes_the_segment_request_bodies(api: str) -> None:
    doc = httpx.get(api + "/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for path, name in (
        ("/v1/track", "SegmentTrack"),
        ("/v1/identify", "SegmentIdentify"),
        ("/v1/batch", "SegmentBatchIn"),
        ("/v1/events", "EventsIn"),
    ):
        body = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": f"#/components/schemas/{name}"}
    assert schemas["SegmentTrack"]["required"] == ["event"]
    assert {"type": "string", "format": "date-time"} in schemas["SegmentTrack"]["properties"][
        "timestamp"
    ]["anyOf"]
    assert "rejected" in schemas["SegmentBatchAccepted"]["required"]


def test_segment_python_library_delivers(api: str, org: dict[str, str], database_url: str) -> None:
    from segment.analytics.client import Client  # type: ignore[import-untyped]

    errors: list[Any] = []
    segment = Client(
        write_key=org["publishable_key"],
        host=api,
        sync_mode=True,
        on_error=lambda e, batch: errors.append(e),
    )
    segment.track("user-9", "Library Track", {"plan": "gold"})
    segment.identify("user-9", {"email": "lib@example.org"})
    segment.flush()
    assert errors == []
    [row] = stored(database_url, "type = 'Library Track'")
    assert row[4]["userId"] == "user-9" and row[4]["properties"] == {"plan": "gold"}
    assert stored(database_url, "contact_email = 'lib@example.org'")


@pytest.fixture(scope="module")
def limited_api(database_url: str) -> Iterator[str]:
    """An API whose writer holds at most 5 rows and whose keys may send 1 event/s, burst 3."""
    port = free_port()
    env = surge_env(
        database_url,
        SURGE_INGEST_MAX_BACKLOG="5",
        SURGE_INGEST_RATE="1",
        SURGE_INGEST_BURST="3",
    )
    server = start_api(env, port)
    base = f"http://127.0.0.1:{port}"
    yield base
    server.stop()


def test_full_writer_backlog_is_503_with_retry_after(limited_api: str, database_url: str) -> None:
    key = create_org(database_url, "Backlog Org")["publishable_key"]
    events = [{"type": "too.many"} for _ in range(6)]
    res = httpx.post(limited_api + "/v1/events", json={"events": events}, auth=(key, ""))
    assert res.status_code == 503
    assert res.headers["Retry-After"] == "1"
    assert not stored(database_url, "type = 'too.many'")


def test_rate_limited_key_gets_429_with_ratelimit_headers(
    limited_api: str, database_url: str
) -> None:
    key = create_org(database_url, "Noisy Org")["publishable_key"]
    body = {"events": [{"type": "noisy"} for _ in range(3)]}
    first = httpx.post(limited_api + "/v1/events", json=body, auth=(key, ""))
    assert first.status_code == 202
    second = httpx.post(limited_api + "/v1/events", json=body, auth=(key, ""))
    assert second.status_code == 429
    assert int(second.headers["Retry-After"]) >= 1
    assert second.headers["RateLimit-Policy"] == '"events";q=1;w=1'
    assert second.headers["RateLimit"].startswith('"events";r=0;t=')
    assert second.headers["RateLimit-Remaining"] == "0"


def test_worker_jobs_roll_events_up_per_minute(
    client: httpx.Client, database_url: str, org: dict[str, str], worker: Process
) -> None:
    events = [{"type": "rolled.up", "occurred_at": "2026-04-01T08:30:15Z"} for _ in range(7)]
    assert client.post("/v1/events", json={"events": events}).status_code == 202
    deadline = time.monotonic() + 20
    found: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        with psycopg.connect(database_url) as conn:
            found = conn.execute(
                "select organization_id, minute, count from event_counts where type = 'rolled.up'"
            ).fetchall()
        if found:
            break
        time.sleep(0.2)
    assert [(str(o), m.isoformat(), c) for o, m, c in found] == [
        (str(org["id"]), "2026-04-01T08:30:00+00:00", 7)
    ]
