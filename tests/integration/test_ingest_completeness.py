"""Ingest completeness over real HTTP: messageId de-duplication, every Segment call type
processed (page, screen, group, alias into profiles), and the per-event size limit.

The Segment and RudderStack Python SDKs are the clients where it matters: they choose the
messageIds, resend batches they got no answer for, and send every call through /v1/batch.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest

from surge.db.embedded import free_port
from surge.db.pool import connect
from surge.ingest import store
from tests.conftest import Process, create_org, start_api, surge_env


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Completeness Org")


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def stored(database_url: str, where: str, params: Any = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        query = (
            "select type, payload, message_id, user_id, anonymous_id, contact_email"
            f" from events where {where} order by id"
        )
        return conn.execute(query, params).fetchall()


DROPPED = "surge_ingest_duplicates_dropped_total "


def segment_client() -> Any:
    from segment.analytics.client import Client  # type: ignore[import-untyped]

    return Client


def rudderstack_client() -> Any:
    from rudderstack.analytics.client import Client  # type: ignore[import-untyped]

    return Client


SDKS = [
    pytest.param(segment_client, id="segment-analytics-python"),
    pytest.param(
        rudderstack_client,
        id="rudder-sdk-python",
        marks=pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    ),
]


def sdk_client(factory: Callable[[], Any], key: str, host: str, errors: list[Any]) -> Any:
    """An SDK client sending each call at once (sync mode), errors collected."""
    return factory()(
        write_key=key,
        host=host,
        sync_mode=True,
        max_retries=3,
        on_error=lambda exc, batch: errors.append(exc),
    )


# -- messageId de-duplication ------------------------------------------------------------------


def test_a_resent_message_id_is_acknowledged_again_and_stored_once(
    api: str, org: dict[str, str], database_url: str
) -> None:
    track = {"userId": "u1", "event": "dedupe.track", "messageId": "m-track-1"}
    for _ in range(3):
        res = httpx.post(api + "/v1/track", json=track, headers=basic(org["publishable_key"]))
        assert res.status_code == 200, res.text
        assert res.json() == {"success": True, "accepted": 1}
    [row] = stored(database_url, "type = 'dedupe.track'")
    assert row[2] == "m-track-1" and row[3] == "u1"
    metrics = httpx.get(api + "/metrics").text
    [dropped] = [line for line in metrics.splitlines() if line.startswith(DROPPED)]
    assert float(dropped.split()[-1]) >= 2


def test_duplicates_within_one_batch_are_stored_once(
    api: str, org: dict[str, str], database_url: str
) -> None:
    message = {"type": "track", "event": "dedupe.batch", "messageId": "m-batch-1"}
    other = {"type": "track", "event": "dedupe.batch", "messageId": "m-batch-2"}
    body = {"batch": [message, other, message, {"type": "track", "event": "dedupe.batch"}]}
    res = httpx.post(api + "/v1/batch", json=body, headers=basic(org["publishable_key"]))
    assert res.status_code == 200, res.text
    assert res.json() == {"success": True, "accepted": 4, "rejected": []}
    rows = stored(database_url, "type = 'dedupe.batch'")
    assert [r[2] for r in rows] == ["m-batch-1", "m-batch-2", None]


def test_events_api_message_ids_are_deduplicated_too(
    api: str, org: dict[str, str], database_url: str
) -> None:
    body = {"events": [{"type": "dedupe.own", "message_id": "own-1", "properties": {"n": 1}}]}
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    for _ in range(2):
        res = httpx.post(api + "/v1/events", json=body, headers=headers)
        assert res.status_code == 202, res.text
        assert res.json() == {"accepted": 1}
    assert len(stored(database_url, "type = 'dedupe.own'")) == 1


def test_the_same_message_id_in_two_organisations_is_two_events(
    api: str, org: dict[str, str], database_url: str
) -> None:
    other = create_org(database_url, "Other Completeness Org")
    for key in (org["publishable_key"], other["publishable_key"]):
        track = {"userId": "u", "event": "dedupe.tenants", "messageId": "shared-id"}
        assert httpx.post(api + "/v1/track", json=track, headers=basic(key)).status_code == 200
    assert len(stored(database_url, "type = 'dedupe.tenants'")) == 2


def test_a_long_message_id_is_deduplicated_by_its_digest(
    api: str, org: dict[str, str], database_url: str
) -> None:
    long_id = "x" * 5000
    for suffix in ("", "", "y"):
        track = {"userId": "u", "event": "dedupe.long", "messageId": long_id + suffix}
        res = httpx.post(api + "/v1/track", json=track, headers=basic(org["publishable_key"]))
        assert res.status_code == 200, res.text
    rows = stored(database_url, "type = 'dedupe.long'")
    assert [len(r[2]) for r in rows] == [5000, 5001]


def test_resends_to_two_api_processes_at_once_and_after_a_restart_store_each_event_once(
    api: str, env: dict[str, str], org: dict[str, str], database_url: str
) -> None:
    key = org["publishable_key"]
    second = start_api(env, free_port())
    try:
        hosts = [api, f"http://127.0.0.1:{second.args[-1]}"]
        batches = [
            {"batch": [{"type": "track", "event": "dedupe.race", "messageId": f"race-{i}-{j}"}
                       for j in range(20)]}
            for i in range(25)
        ]  # fmt: skip

        def send(n: int) -> int:
            res = httpx.post(
                hosts[n % 2] + "/v1/batch", json=batches[n // 4], headers=basic(key), timeout=30
            )
            return res.status_code

        # Each batch four times, two copies to each process, all at once.
        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(send, range(100))) == {200}
    finally:
        second.stop()
    restarted = start_api(env, free_port())
    try:
        again = f"http://127.0.0.1:{restarted.args[-1]}/v1/batch"
        assert httpx.post(again, json=batches[0], headers=basic(key)).status_code == 200
    finally:
        restarted.stop()
    rows = stored(database_url, "type = 'dedupe.race'")
    assert len(rows) == 500
    assert len({r[2] for r in rows}) == 500


class LosesFirstAnswers:
    """A proxy in front of the API that forwards every request but, for the first
    ``lose`` of them, closes the connection instead of answering: the SDK never hears
    that its batch was stored, and resends it."""

    def __init__(self, upstream: str, lose: int) -> None:
        self.upstream = upstream
        self.lose = lose
        self.forwarded = 0
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type", "content-encoding")
                }
                res = httpx.post(proxy.upstream + self.path, content=body, headers=headers)
                with proxy.lock:
                    proxy.forwarded += 1
                    lost = proxy.forwarded <= proxy.lose
                if lost:
                    self.close_connection = True
                    return
                self.send_response(res.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(res.content)))
                self.end_headers()
                self.wfile.write(res.content)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@contextmanager
def losing_proxy(upstream: str, lose: int) -> Iterator[tuple[str, LosesFirstAnswers]]:
    proxy = LosesFirstAnswers(upstream, lose)
    server = ThreadingHTTPServer(("127.0.0.1", 0), proxy.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", proxy
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("sdk", SDKS)
def test_an_sdk_resending_a_batch_whose_answer_was_lost_stores_each_call_once(
    sdk: Callable[[], Any], api: str, database_url: str
) -> None:
    org = create_org(database_url, f"Resend Org {sdk.__name__}")
    errors: list[Any] = []
    with losing_proxy(api, lose=2) as (host, proxy):
        client = sdk()(
            write_key=org["publishable_key"],
            host=host,
            max_retries=5,
            upload_interval=0.05,
            on_error=lambda exc, batch: errors.append(exc),
        )
        for i in range(30):
            client.track(f"user-{i % 3}", "Resent Call", {"i": i})
        client.flush()
        client.shutdown()
    assert errors == []
    assert proxy.forwarded > proxy.lose  # the lost batches were sent again
    rows = stored(
        database_url,
        "organization_id = %s and type = 'Resent Call'",
        (org["id"],),
    )
    assert sorted(r[1]["properties"]["i"] for r in rows) == list(range(30))


@pytest.mark.parametrize("sdk", SDKS)
def test_an_sdk_call_sent_twice_with_its_message_id_is_stored_once(
    sdk: Callable[[], Any], api: str, database_url: str
) -> None:
    org = create_org(database_url, f"Twice Org {sdk.__name__}")
    errors: list[Any] = []
    client = sdk_client(sdk, org["publishable_key"], api, errors)
    for _ in range(2):
        client.track("user-1", "Twice", {"a": 1}, message_id="sdk-twice-1")
        client.identify("user-1", {"email": "twice@example.org"}, message_id="sdk-twice-2")
    client.flush()
    assert errors == []
    rows = stored(database_url, "organization_id = %s", (org["id"],))
    assert sorted(r[2] for r in rows) == ["sdk-twice-1", "sdk-twice-2"]


def message_id_windows(database_url: str) -> dict[str, float]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select message_id, extract(epoch from now() - accepted_at) from event_message_ids"
        ).fetchall()
    return {str(m): float(age) for m, age in rows}


@pytest.fixture(scope="module")
def short_window_api(database_url: str) -> Iterator[str]:
    """An API that remembers messageIds for 1 second only."""
    port = free_port()
    server = start_api(surge_env(database_url, SURGE_INGEST_DEDUPE_WINDOW_SECONDS="1"), port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_a_resend_after_the_window_is_a_new_event(
    short_window_api: str, org: dict[str, str], database_url: str
) -> None:
    track = {"userId": "u", "event": "dedupe.window", "messageId": "window-1"}
    headers = basic(org["publishable_key"])
    for pause in (0.0, 0.0, 1.5):
        time.sleep(pause)
        res = httpx.post(short_window_api + "/v1/track", json=track, headers=headers)
        assert res.status_code == 200, res.text
    assert len(stored(database_url, "type = 'dedupe.window'")) == 2


def test_with_the_window_at_zero_nothing_is_deduplicated(
    database_url: str, org: dict[str, str]
) -> None:
    port = free_port()
    server = start_api(surge_env(database_url, SURGE_INGEST_DEDUPE_WINDOW_SECONDS="0"), port)
    try:
        track = {"userId": "u", "event": "dedupe.off", "messageId": "off-1"}
        for _ in range(2):
            res = httpx.post(
                f"http://127.0.0.1:{port}/v1/track",
                json=track,
                headers=basic(org["publishable_key"]),
            )
            assert res.status_code == 200, res.text
    finally:
        server.stop()
    assert len(stored(database_url, "type = 'dedupe.off'")) == 2
    assert "off-1" not in message_id_windows(database_url)


def test_pruning_forgets_only_message_ids_past_the_window(database_url: str) -> None:
    async def run() -> list[int]:
        conn = await connect(database_url)
        try:
            await conn.execute(
                "insert into event_message_ids (organization_id, message_id, accepted_at)"
                " select 999, 'old-' || i, now() - interval '2 days' from generate_series(1, 25) i"
                " union all select 999, 'new-' || i, now() from generate_series(1, 5) i"
            )
            deleted = [await store.prune_message_ids(conn, 86400, 10) for _ in range(4)]
            return deleted
        finally:
            await conn.close()

    assert asyncio.run(run()) == [10, 10, 5, 0]
    left = {m for m in message_id_windows(database_url) if m.startswith(("old-", "new-"))}
    assert left == {f"new-{i}" for i in range(1, 6)}


# -- every Segment call type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "stored_type"),
    [
        ("page", {"userId": "u", "name": "Pricing", "properties": {"url": "/p"}}, "page"),
        ("screen", {"anonymousId": "a", "name": "Home", "category": "App"}, "screen"),
        ("group", {"userId": "u", "groupId": "acme", "traits": {"plan": "gold"}}, "group"),
        ("alias", {"previousId": "a", "userId": "u"}, "alias"),
    ],
)
def test_per_call_routes_store_page_screen_group_and_alias(
    api: str,
    org: dict[str, str],
    database_url: str,
    path: str,
    body: dict[str, Any],
    stored_type: str,
) -> None:
    body = {**body, "messageId": f"route-{path}"}
    res = httpx.post(f"{api}/v1/{path}", json=body, headers=basic(org["publishable_key"]))
    assert res.status_code == 200, res.text
    assert res.json() == {"success": True, "accepted": 1}
    [row] = stored(database_url, "message_id = %s", (f"route-{path}",))
    assert row[0] == stored_type
    assert {k: row[1][k] for k in body} == body


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("group", {"userId": "u"}, "groupId"),
        ("group", {"groupId": "g"}, "userId"),
        ("alias", {"userId": "u"}, "previousId"),
        ("alias", {"previousId": "a"}, "userId"),
        ("track", {"event": "e", "userId": "u" * 513}, "userId"),
        ("identify", {"anonymousId": {"not": "an id"}}, "anonymousId"),
    ],
)
def test_calls_missing_the_ids_they_need_are_400_naming_the_field(
    api: str, org: dict[str, str], path: str, body: dict[str, Any], field: str
) -> None:
    res = httpx.post(f"{api}/v1/{path}", json=body, headers=basic(org["publishable_key"]))
    assert res.status_code == 400, res.text
    assert res.json()["error"]["field"] == field
    batch = {"batch": [{"type": path, **body}, {"type": "track", "event": "fine"}]}
    res = httpx.post(f"{api}/v1/batch", json=batch, headers=basic(org["publishable_key"]))
    assert res.status_code == 200, res.text
    assert [(r["index"], r["field"]) for r in res.json()["rejected"]] == [(0, f"batch[0].{field}")]


# -- profiles: identify, group and alias processed ----------------------------------------------


def profile(api: str, key: str, id: str) -> httpx.Response:
    return httpx.get(
        api + "/v1/profile", params={"id": id}, headers={"Authorization": f"Bearer {key}"}
    )


def wait_for_profile(
    api: str, key: str, id: str, check: Callable[[dict[str, Any]], bool], timeout: float = 30
) -> dict[str, Any]:
    """Poll GET /v1/profile until ``check`` holds (the worker's consumer runs every second)."""
    deadline = time.monotonic() + timeout
    while True:
        res = profile(api, key, id)
        if res.status_code == 200 and check(res.json()):
            found: dict[str, Any] = res.json()
            return found
        assert time.monotonic() < deadline, res.text
        time.sleep(0.2)


@pytest.mark.parametrize("sdk", SDKS)
def test_sdk_page_screen_group_and_alias_calls_are_stored_and_merged_into_the_profile(
    sdk: Callable[[], Any], api: str, database_url: str, worker: Process
) -> None:
    org = create_org(database_url, f"Profile Org {sdk.__name__}")
    errors: list[Any] = []
    client = sdk_client(sdk, org["publishable_key"], api, errors)
    client.track(anonymous_id="anon-1", event="Viewed Pricing", properties={"plan": "pro"})
    client.page(anonymous_id="anon-1", category="Docs", name="Intro", properties={"url": "/i"})
    client.screen("user-1", "App", "Home", {"seen": 1})
    client.identify("user-1", {"email": "User1@Example.org", "plan": "pro", "n": 1})
    client.identify("user-1", {"n": 2, "seats": 5})
    client.group("user-1", "team-1", {"name": "Team One", "size": 10**20})
    client.alias("anon-1", "user-1")
    client.track(anonymous_id="anon-1", event="Came Back Later")
    client.flush()
    assert errors == []
    rows = stored(database_url, "organization_id = %s", (org["id"],))
    assert [r[0] for r in rows] == [
        "Viewed Pricing", "page", "screen", "identify", "identify", "group", "alias",
        "Came Back Later",
    ]  # fmt: skip
    page, screen = rows[1][1], rows[2][1]
    assert (page["name"], page["category"], page["properties"]) == ("Intro", "Docs", {"url": "/i"})
    assert (screen["name"], screen["properties"]) == ("Home", {"seen": 1})
    assert rows[5][1]["groupId"] == "team-1" and rows[6][1]["previousId"] == "anon-1"

    key = org["secret_key"]
    found = wait_for_profile(api, key, "anon-1", lambda p: p["events"] == 8)
    assert found["id"] == "user-1" and found["known"] is True
    assert found["aliases"] == ["anon-1"]
    assert found["contact_email"] == "user1@example.org"
    assert found["traits"] == {"email": "User1@Example.org", "plan": "pro", "n": 2, "seats": 5}
    assert [(g["id"], g["traits"]) for g in found["groups"]] == [
        ("team-1", {"name": "Team One", "size": 10**20})
    ]
    assert found["first_seen_at"] <= found["last_seen_at"]
    assert profile(api, key, "user-1").json() == found


def test_an_anonymous_id_arriving_with_a_user_id_is_linked_but_never_two_users_merged(
    api: str, org: dict[str, str], database_url: str, worker: Process
) -> None:
    headers = basic(org["publishable_key"])
    batch = [
        {"type": "page", "anonymousId": "device-1", "name": "Home"},
        {"type": "page", "anonymousId": "device-1", "name": "Pricing"},
        {"type": "identify", "userId": "ann", "anonymousId": "device-1"},
        # The same device, another person: device-1 stays Ann's, Bob stays Bob.
        {"type": "identify", "userId": "bob", "anonymousId": "device-1"},
        {"type": "track", "userId": "bob", "event": "Signed In"},
        # A userId sent as an anonymousId later is not swallowed either.
        {"type": "identify", "userId": "carl", "anonymousId": "ann"},
        # Only identify links: a track with both ids counts for the user, links nothing.
        {"type": "page", "anonymousId": "device-2", "name": "Home"},
        {"type": "track", "userId": "dora", "anonymousId": "device-2", "event": "Odd"},
    ]
    res = httpx.post(api + "/v1/batch", json={"batch": batch}, headers=headers)
    assert res.status_code == 200 and res.json()["accepted"] == 8, res.text
    key = org["secret_key"]
    ann = wait_for_profile(api, key, "device-1", lambda p: p["id"] == "ann")
    assert ann["events"] == 3 and ann["aliases"] == ["device-1"]
    bob = wait_for_profile(api, key, "bob", lambda p: p["events"] == 2)
    assert bob["aliases"] == []
    carl = wait_for_profile(api, key, "carl", lambda p: p["events"] == 1)
    assert carl["aliases"] == []
    assert wait_for_profile(api, key, "dora", lambda p: p["events"] == 1)["aliases"] == []
    assert profile(api, key, "device-2").json()["id"] == "device-2"
    assert profile(api, key, "ann").json()["events"] == 3


def test_alias_chains_resolve_to_the_last_user_with_every_event(
    api: str, org: dict[str, str], database_url: str, worker: Process
) -> None:
    headers = basic(org["publishable_key"])
    calls = [
        {"type": "track", "userId": "old-a", "event": "e"},
        {"type": "group", "userId": "old-a", "groupId": "g-chain", "traits": {"tier": 1}},
        {"type": "track", "userId": "mid-b", "event": "e"},
        {"type": "alias", "previousId": "old-a", "userId": "mid-b"},
        {"type": "alias", "previousId": "mid-b", "userId": "new-c"},
        {"type": "track", "userId": "old-a", "event": "e"},  # after both aliases
    ]
    # One call per request: each in a batch of its own, as clients sending live would.
    for call in calls:
        res = httpx.post(api + "/v1/batch", json={"batch": [call]}, headers=headers)
        assert res.status_code == 200, res.text
    key = org["secret_key"]
    found = wait_for_profile(api, key, "old-a", lambda p: p["events"] == 6)
    assert found["id"] == "new-c"
    assert found["aliases"] == ["mid-b", "old-a"]
    assert [g["id"] for g in found["groups"]] == ["g-chain"]


def test_profile_reads_need_a_secret_key_and_an_id(api: str, org: dict[str, str]) -> None:
    assert profile(api, org["publishable_key"], "x").status_code == 403
    assert profile(api, org["secret_key"], "nobody-at-all").status_code == 404
    res = httpx.get(api + "/v1/profile", headers={"Authorization": f"Bearer {org['secret_key']}"})
    assert res.status_code == 400 and res.json()["error"]["field"] == "id"


def test_another_organisation_cannot_read_a_profile(
    api: str, org: dict[str, str], database_url: str, worker: Process
) -> None:
    track = {"userId": "private-user", "event": "e"}
    httpx.post(api + "/v1/track", json=track, headers=basic(org["publishable_key"]))
    wait_for_profile(api, org["secret_key"], "private-user", lambda p: p["events"] >= 1)
    other = create_org(database_url, "Nosy Org")
    assert profile(api, other["secret_key"], "private-user").status_code == 404


# -- per-event size limit -----------------------------------------------------------------------


def test_an_event_over_the_limit_is_400_naming_it_and_a_batch_keeps_the_rest(
    api: str, org: dict[str, str], database_url: str
) -> None:
    headers = basic(org["publishable_key"])
    big = {"event": "size.big", "userId": "u", "properties": {"x": "a" * 40_000}}
    res = httpx.post(api + "/v1/track", json=big, headers=headers)
    assert res.status_code == 400, res.text
    assert res.json()["error"]["code"] == "event_too_large"
    small = {"type": "track", "event": "size.small", "userId": "u"}
    batch = {"batch": [small, {"type": "track", **big}, small]}
    res = httpx.post(api + "/v1/batch", json=batch, headers=headers)
    assert res.status_code == 200, res.text
    assert [(r["index"], r["code"], r["field"]) for r in res.json()["rejected"]] == [
        (1, "event_too_large", "batch[1]")
    ]
    assert len(stored(database_url, "type = 'size.small'")) == 2
    assert not stored(database_url, "type = 'size.big'")
    events = {"events": [{"type": "size.ok"}, {"type": "size.big", "properties": big}]}
    res = httpx.post(api + "/v1/events", json=events, auth=(org["publishable_key"], ""))
    assert res.status_code == 400
    assert res.json()["error"] | {"message": ""} == {
        "code": "event_too_large",
        "field": "events[1].properties",
        "message": "",
    }
    assert not stored(database_url, "type like 'size.ok'")


def test_a_request_over_the_body_limit_is_still_413(api: str, org: dict[str, str]) -> None:
    messages = [{"type": "track", "event": "e", "p": "a" * 30_000} for _ in range(40)]
    res = httpx.post(
        api + "/v1/batch", json={"batch": messages}, headers=basic(org["publishable_key"])
    )
    assert res.status_code == 413


def test_the_event_size_limit_is_a_setting(database_url: str, org: dict[str, str]) -> None:
    port = free_port()
    env = surge_env(database_url, SURGE_INGEST_MAX_EVENT_BYTES="2048")
    server = start_api(env, port)
    try:
        headers = basic(org["publishable_key"])
        for size, status in ((1500, 200), (3000, 400)):
            track = {"event": "size.setting", "userId": "u", "p": "a" * size}
            res = httpx.post(f"http://127.0.0.1:{port}/v1/track", json=track, headers=headers)
            assert res.status_code == status, res.text
    finally:
        server.stop()
