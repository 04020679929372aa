"""Property test of intake over real HTTP with hostile strings, numbers, times and nesting.

Whatever arrives: never a 5xx; a 2xx means the event is stored and reads back (as text and
as Python values, as the consumers read it); a 400 names the field. JSON text is built by
hand so that what encoders never write (lone surrogate escapes, ``\\u0000``, 5,000-digit
integers, exponents of ±20,000, 1,000 levels of nesting) reaches the server as sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import create_org

ESCAPES = ["\\u0000", "\\ud800", "\\udfff", "\\ud83d\\ude00", "\\\\u0000", '\\"', "\\\\"]
CONTROL = st.characters(min_codepoint=0, max_codepoint=0x1F)


def _string_text(text: str, escape: str | None, ascii_only: bool) -> str:
    body = json.dumps(text, ensure_ascii=ascii_only)[1:-1]
    return '"' + body + (escape or "") + '"'


strings = st.builds(
    _string_text,
    st.text(st.one_of(st.characters(exclude_categories=["Cs"]), CONTROL), max_size=20)
    | st.sampled_from(["1e23456", "9E-99999", "0e" + "7" * 30, "1" * 5000]),
    st.none() | st.sampled_from(ESCAPES),
    st.booleans(),
)
numbers = st.one_of(
    st.integers().map(str),
    st.integers(min_value=1, max_value=5000).map(lambda n: "-" * (n % 2) + "9" * n),
    st.builds(
        lambda m, f, e: f"{m}.{f}e{e}",
        st.integers(-(10**6), 10**6),
        st.integers(0, 10**6),
        st.integers(-20000, 20000),
    ),
    st.sampled_from(["1e1000", "1e-1000", "1e1001", "0e-100000", "0." + "0" * 999 + "1"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
leaves = st.one_of(strings, numbers, st.sampled_from(["true", "false", "null"]))
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(strings, inner), max_size=4).map(
            lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"
        ),
    ),
    max_leaves=12,
)
deep = st.builds(lambda n, v: "[" * n + v + "]" * n, st.integers(0, 1200), leaves)
times = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        ["0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-14:00", "1970-01-01T00:00:00Z"]
    ),
)


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Hostile Intake Org")


@pytest.fixture(scope="module")
def http(api: str, org: dict[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, auth=(org["publishable_key"], ""), timeout=30) as client:
        yield client


class Counter:
    n = 0

    def next(self) -> str:
        self.n += 1
        return f"hostile.{self.n}"


counter = Counter()


def check(
    res: httpx.Response, database_url: str, event_type: str, expect_batch: bool = False
) -> None:
    assert res.status_code < 500, res.text
    body = res.json()
    if res.status_code >= 400:
        assert res.status_code in (400, 413), res.text
        assert body["error"]["field"], res.text
        assert body["code"] == body["error"]["code"]
        stored: list[Any] = []
    else:
        with psycopg.connect(database_url) as conn:
            stored = conn.execute(
                "select payload::text, payload, occurred_at from events where type = %s",
                (event_type,),
            ).fetchall()
        rejected = body.get("rejected", [])
        assert len(stored) == body["accepted"] == (0 if rejected else 1), res.text
        for bad in rejected:
            assert bad["field"].startswith("batch[0]"), res.text


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(props=st.one_of(values, deep), when=st.none() | times)
def test_hostile_events_never_5xx_and_2xx_reads_back(
    http: httpx.Client, database_url: str, props: str, when: str | None
) -> None:
    event_type = counter.next()
    stamp = "" if when is None else f',"occurred_at":"{when}"'
    content = f'{{"type":"{event_type}"{stamp},"properties":{{"v":{props}}}}}'
    res = http.post("/v1/events", content=content.encode("utf-8", "surrogatepass"))
    check(res, database_url, event_type)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(props=st.one_of(values, deep), user=strings, when=st.none() | times, batch=st.booleans())
def test_hostile_segment_messages_never_5xx_and_2xx_reads_back(
    http: httpx.Client, database_url: str, props: str, user: str, when: str | None, batch: bool
) -> None:
    event_type = counter.next()
    stamp = "" if when is None else f',"timestamp":"{when}"'
    # Hostile, but unique to the example: a messageId seen before would be a duplicate.
    message_id = f'"{event_type}-{user[1:]}'
    message = (
        f'{{"type":"track","event":"{event_type}","userId":{user},'
        f'"messageId":{message_id}{stamp},"properties":{{"v":{props}}}}}'
    )
    if batch:
        res = http.post("/v1/batch", content=f'{{"batch":[{message}]}}'.encode())
    else:
        res = http.post("/v1/track", content=message.encode())
    check(res, database_url, event_type)
