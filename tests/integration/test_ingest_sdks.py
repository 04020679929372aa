"""Segment's and RudderStack's Python SDKs, as clients use them, deliver every call to intake.

Each SDK runs with its defaults where they matter (random UUID messageIds, ISO timestamps,
gzip, batches of 100, its own retry logic): ~3 % of random UUIDs once looked like huge numbers
to intake and lost their whole batch. Only the retries are bounded, so a regression fails the
test quickly instead of hanging it; the point is that every batch gets its 200 at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import psycopg
import pytest

from tests.conftest import create_org

CALLS = 5000


class Sdk(Protocol):
    """What both SDKs' ``Client`` offer (same method names, same positional order)."""

    def track(self, *args: Any, **kwargs: Any) -> Any: ...
    def identify(self, *args: Any, **kwargs: Any) -> Any: ...
    def page(self, *args: Any, **kwargs: Any) -> Any: ...
    def screen(self, *args: Any, **kwargs: Any) -> Any: ...
    def group(self, *args: Any, **kwargs: Any) -> Any: ...
    def alias(self, *args: Any, **kwargs: Any) -> Any: ...
    def flush(self) -> None: ...
    def shutdown(self) -> None: ...


def mixed_calls(sdk: Sdk) -> None:
    """5,000 calls, every kind the SDKs support, with the SDK's default ids and timestamps."""
    for i in range(CALLS):
        user = f"user-{i % 97}"
        match i % 6:
            case 0:
                sdk.track(user, "Order Completed", {"revenue": i / 7, "sku": f"é-{i}", "n": i})
            case 1:
                sdk.identify(user, {"email": f"{user}@example.org", "plan": "pro"})
            case 2:
                sdk.page(user, "Docs", "Getting started", {"url": f"https://x.org/{i}"})
            case 3:
                sdk.screen(user, "App", "Home", {"seen": i})
            case 4:
                sdk.group(user, f"team-{i % 5}", {"name": "Ünicode team", "size": 10**20})
            case _:
                sdk.alias(f"anon-{i}", user)
    sdk.flush()
    sdk.shutdown()


def stored_for(database_url: str, organization_id: object) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from events where organization_id = %s", (organization_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _segment_client() -> Any:
    from segment.analytics.client import Client  # type: ignore[import-untyped]

    return Client


def _rudderstack_client() -> Any:
    from rudderstack.analytics.client import Client  # type: ignore[import-untyped]

    return Client


@pytest.mark.parametrize(
    "sdk",
    [
        pytest.param(_segment_client, id="segment-analytics-python"),
        pytest.param(
            _rudderstack_client,
            id="rudder-sdk-python",
            marks=pytest.mark.filterwarnings("ignore::DeprecationWarning"),
        ),
    ],
)
def test_the_sdk_delivers_every_one_of_5000_mixed_calls(
    sdk: Callable[[], Any], api: str, database_url: str
) -> None:
    org = create_org(database_url, f"SDK Org {sdk.__name__}")
    errors: list[Any] = []
    started = time.monotonic()
    mixed_calls(
        sdk()(
            write_key=org["publishable_key"],
            host=api,
            max_retries=1,
            upload_interval=0.05,
            on_error=lambda exc, batch: errors.append((exc, len(batch))),
        )
    )
    assert errors == []
    assert stored_for(database_url, org["id"]) == CALLS
    assert time.monotonic() - started < 60
