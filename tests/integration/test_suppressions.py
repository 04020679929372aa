"""The suppression list over HTTP and from the CLI, as staff use it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import create_org, run_cli


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Suppressing Org")


@pytest.fixture(scope="module")
def client(api: str, org: dict[str, str]) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {org['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers, timeout=10) as c:
        yield c


def add(client: httpx.Client, *items: dict[str, str]) -> httpx.Response:
    return client.post("/v1/suppressions", json={"suppressions": list(items)})


def test_addresses_are_added_once_lower_cased_with_their_reason(client: httpx.Client) -> None:
    first = add(
        client,
        {"email": "One@Example.org"},
        {"email": "one@example.org", "reason": "imported"},  # same address: counted once
        {"email": "two@example.org", "reason": "imported", "detail": "from the old ESP"},
    )
    assert first.status_code == 200, first.text
    assert first.json() == {"added": 2, "existing": 0}
    again = add(client, {"email": "two@example.org"})
    assert again.json() == {"added": 0, "existing": 1}
    found = client.get("/v1/suppressions", params={"email": "TWO@example.org"}).json()["data"]
    assert [(s["email"], s["reason"], s["detail"]) for s in found] == [
        ("two@example.org", "imported", "from the old ESP")  # the first reason stays
    ]


def test_pages_follow_the_cursor_to_the_end(client: httpx.Client) -> None:
    add(client, *({"email": f"page{i}@example.org"} for i in range(7)))
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, str | int] = {"limit": 3} | ({"after": after} if after else {})
        page = client.get("/v1/suppressions", params=params).json()
        seen += [s["email"] for s in page["data"]]
        after = page["next"]
        if after is None:
            break
    assert [e for e in seen if e.startswith("page")] == [f"page{i}@example.org" for i in range(7)]
    assert len(seen) == len(set(seen))


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([{"email": "not an address"}], "suppressions[0].email"),
        ([{"email": "a@example.org", "reason": "hard_bounce"}], "suppressions[0].reason"),
        ([], "suppressions"),
        ([{"email": f"x{i}@example.org"} for i in range(1001)], "suppressions"),
        ([{"email": "a@example.org", "detail": "x" * 501}], "suppressions[0].detail"),
    ],
)
def test_bad_input_is_400_naming_the_field(
    client: httpx.Client, items: list[dict[str, str]], field: str
) -> None:
    response = client.post("/v1/suppressions", json={"suppressions": items})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_removing_needs_an_address_that_is_listed(client: httpx.Client) -> None:
    assert client.delete("/v1/suppressions").status_code == 400
    missing = client.delete("/v1/suppressions", params={"email": "never@example.org"})
    assert missing.status_code == 404
    add(client, {"email": "gone@example.org"})
    assert (
        client.delete("/v1/suppressions", params={"email": "GONE@example.org"}).status_code == 204
    )
    assert client.get("/v1/suppressions", params={"email": "gone@example.org"}).json()["data"] == []


def test_one_organisations_list_is_invisible_to_another(
    client: httpx.Client, api: str, database_url: str
) -> None:
    add(client, {"email": "private@example.org"})
    other = create_org(database_url, "Other Org")
    headers = {"Authorization": f"Bearer {other['secret_key']}"}
    with httpx.Client(base_url=api, headers=headers) as theirs:
        assert theirs.get("/v1/suppressions").json() == {"data": [], "next": None}
        gone = theirs.delete("/v1/suppressions", params={"email": "private@example.org"})
        assert gone.status_code == 404
    assert client.get("/v1/suppressions", params={"email": "private@example.org"}).json()["data"]


def test_the_cli_adds_lists_and_removes(database_url: str, org: dict[str, str]) -> None:
    org_id = str(org["id"])
    out = run_cli(database_url, "suppressions", "add", "cli1@example.org", "cli2@example.org",
                  "--org", org_id, "--imported").stdout  # fmt: skip
    assert out.strip() == "2 suppressed, 0 already were"
    listed = run_cli(database_url, "suppressions", "list", "--org", org_id).stdout
    assert "cli1@example.org\timported" in listed
    run_cli(database_url, "suppressions", "remove", "cli1@example.org", "--org", org_id)
    assert "cli1@" not in run_cli(database_url, "suppressions", "list", "--org", org_id).stdout
    bad = run_cli(database_url, "suppressions", "add", "nope", "--org", org_id, check=False)
    assert (
        bad.returncode == 1 and bad.stderr.startswith("Error: ") and "Traceback" not in bad.stderr
    )
    unknown = run_cli(database_url, "suppressions", "list", "--org", "999999", check=False)
    assert unknown.returncode == 1 and "organization 999999 not found" in unknown.stderr
