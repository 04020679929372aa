"""Upload limits: a file over SURGE_MAX_IMPORT_BYTES is refused with 413 and leaves nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest

from surge.db.embedded import free_port
from tests.conftest import create_org, start_api, surge_env

LIMIT = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def small_api(database_url: str) -> Iterator[str]:
    """An API process whose import limit is 3 MiB."""
    port = free_port()
    env = surge_env(database_url, SURGE_MAX_IMPORT_BYTES=str(LIMIT))
    server = start_api(env, port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def client(small_api: str, database_url: str) -> httpx.Client:
    org = create_org(database_url, "Limits Org")
    return httpx.Client(
        base_url=small_api,
        headers={"Authorization": f"Bearer {org['secret_key']}", "Content-Type": "text/csv"},
        timeout=30,
    )


def stored(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select (select count(*) from imports), (select count(*) from import_chunks)"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_declared_length_over_the_limit_is_413(client: httpx.Client, database_url: str) -> None:
    response = client.post("/v1/imports", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert stored(database_url) == (0, 0)


def test_streamed_body_over_the_limit_is_413_and_rolled_back(
    client: httpx.Client, database_url: str
) -> None:
    def body() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
        yield b"email\n"
        for _ in range(8):
            yield b"a@b.io\n" * 80_000

    response = client.post("/v1/imports", content=body())
    assert response.status_code == 413
    assert stored(database_url) == (0, 0)


def test_a_file_just_under_the_limit_is_accepted(client: httpx.Client, database_url: str) -> None:
    data = b"email\n" + b"a@b.io\n" * ((LIMIT - 6) // 7)
    response = client.post("/v1/imports", content=data)
    assert response.status_code == 202
    assert stored(database_url) == (1, 3)
