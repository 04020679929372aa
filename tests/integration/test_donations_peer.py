"""Peer-to-peer fundraising end to end: teams and fundraisers over the real API, gifts made on
their pages charged by a real worker, their totals and the leaderboards."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from surge.donations import peer
from surge.errors import NotFound
from tests.conftest import Process, create_org, surge_env
from tests.donations_support import campaign, client, donate, donated, eventually, final, gift


@pytest.fixture(scope="module")
def env(database_url: str) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_DONATIONS_CHARGE_ATTEMPTS="3",
        SURGE_DONATIONS_CHARGE_BACKOFF="0.1",
        # A second organisation's key runs into the limit; the first one's never does.
        SURGE_SIGNUP_RATE="0.01",
        SURGE_SIGNUP_BURST="20",
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "P2P Org")


@pytest.fixture(scope="module")
def staff(api: str, org: dict[str, str], worker: Process) -> Iterator[httpx.Client]:
    with client(api, org["secret_key"]) as c:
        yield c


@pytest.fixture(scope="module")
def public(api: str, org: dict[str, str]) -> Iterator[httpx.Client]:
    with client(api, org["publishable_key"]) as c:
        yield c


@pytest.fixture(scope="module")
def day(staff: httpx.Client) -> dict[str, Any]:
    return campaign(staff)


def test_teams_get_unique_slugs_per_campaign(staff: httpx.Client, day: dict[str, Any]) -> None:
    first = staff.post(
        f"/v1/campaigns/{day['id']}/teams", json={"name": "Blue Team", "goal": 50000}
    )
    assert first.status_code == 201, first.text
    assert (first.json()["slug"], first.json()["goal"]) == ("blue-team", 50000)
    again = staff.post(f"/v1/campaigns/{day['id']}/teams", json={"name": "Blue team"})
    assert again.json()["slug"] == "blue-team-2"
    taken = staff.post(f"/v1/campaigns/{day['id']}/teams", json={"name": "X", "slug": "blue-team"})
    assert taken.status_code == 409 and taken.json()["error"]["field"] == "slug"
    other = campaign(staff, name="Other day")
    elsewhere = staff.post(f"/v1/campaigns/{other['id']}/teams", json={"name": "Blue Team"})
    assert elsewhere.json()["slug"] == "blue-team"  # unique per campaign, not per organisation


def test_staff_manage_fundraisers_in_keyset_pages(staff: httpx.Client, day: dict[str, Any]) -> None:
    team = staff.post(f"/v1/campaigns/{day['id']}/teams", json={"name": "Runners"}).json()
    made = [
        staff.post(
            f"/v1/campaigns/{day['id']}/fundraisers",
            json={"name": f"Runner {i}", "team_id": team["id"], "email": f"r{i}@example.org"},
        )
        for i in range(3)
    ]
    assert [r.status_code for r in made] == [201, 201, 201], made[0].text
    seen: list[int] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        page = staff.get(f"/v1/campaigns/{day['id']}/fundraisers", params=params).json()
        seen += [f["id"] for f in page["data"]]
        after = page["next"]
        if after is None:
            break
    assert [r.json()["id"] for r in made] == [
        i for i in seen if i in {r.json()["id"] for r in made}
    ]
    changed = staff.patch(
        f"/v1/fundraisers/{made[0].json()['id']}",
        json={"story": "I run for **clean water**.", "goal": 20000, "team_id": None},
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["story"], changed.json()["team_id"]) == (
        "I run for **clean water**.",
        None,
    )
    assert staff.get(f"/v1/fundraisers/{made[0].json()['id']}").json()["goal"] == 20000


def test_a_fundraiser_cannot_join_another_campaigns_team(
    staff: httpx.Client, day: dict[str, Any]
) -> None:
    other = campaign(staff, name="Elsewhere")
    team = staff.post(f"/v1/campaigns/{other['id']}/teams", json={"name": "Far"}).json()
    response = staff.post(
        f"/v1/campaigns/{day['id']}/fundraisers", json={"name": "Lost", "team_id": team["id"]}
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "team_id"


def test_peer_to_peer_needs_a_campaign_with_a_currency(staff: httpx.Client) -> None:
    plain = staff.post("/v1/campaigns", json={"name": "No currency"}).json()
    response = staff.post(f"/v1/campaigns/{plain['id']}/teams", json={"name": "T"})
    assert response.status_code == 409


def test_supporters_sign_up_with_the_publishable_key(
    staff: httpx.Client, public: httpx.Client, day: dict[str, Any]
) -> None:
    team = staff.post(f"/v1/campaigns/{day['id']}/teams", json={"name": "Walkers"}).json()
    body = {"name": " Grace ", "email": "grace@example.org", "team_id": team["id"], "goal": 10000}
    response = public.post(f"/v1/campaigns/{day['id']}/signups", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    assert (response.json()["name"], response.json()["slug"]) == ("Grace", "grace")
    too_long = public.post(f"/v1/campaigns/{day['id']}/signups", json={**body, "name": "x" * 81})
    assert too_long.status_code == 400 and too_long.json()["error"]["field"] == "name"
    # Publishable keys read nothing of the staff API.
    assert public.get(f"/v1/fundraisers/{response.json()['id']}").status_code == 403


def test_sign_ups_close_on_unpublished_campaigns(staff: httpx.Client, public: httpx.Client) -> None:
    hidden = campaign(staff, name="Draft day", page={"published": False})
    body = {"name": "Early", "email": "early@example.org"}
    assert public.post(f"/v1/campaigns/{hidden['id']}/signups", json=body).status_code == 404


def test_sign_ups_are_rate_limited_per_key(api: str, database_url: str) -> None:
    busy = create_org(database_url, "Busy sign-ups")
    with client(api, busy["secret_key"]) as staff, client(api, busy["publishable_key"]) as public:
        day = campaign(staff)
        answers = [
            public.post(
                f"/v1/campaigns/{day['id']}/signups",
                json={"name": f"S{i}", "email": f"s{i}@example.org"},
            )
            for i in range(21)
        ]
    assert [a.status_code for a in answers[:20]] == [201] * 20
    assert answers[20].status_code == 429
    assert int(answers[20].headers["retry-after"]) >= 1


def test_gifts_on_pages_count_for_fundraiser_team_and_leaderboards(
    api: str, staff: httpx.Client, public: httpx.Client, database_url: str
) -> None:
    day = campaign(staff, name="Board day")
    red = staff.post(f"/v1/campaigns/{day['id']}/teams", json={"name": "Red", "goal": 10000}).json()
    blue = staff.post(f"/v1/campaigns/{day['id']}/teams", json={"name": "Blue"}).json()
    ann = staff.post(
        f"/v1/campaigns/{day['id']}/fundraisers", json={"name": "Ann", "team_id": red["id"]}
    ).json()
    bob = staff.post(
        f"/v1/campaigns/{day['id']}/fundraisers", json={"name": "Bob", "team_id": blue["id"]}
    ).json()
    cat = staff.post(f"/v1/campaigns/{day['id']}/fundraisers", json={"name": "Cat"}).json()
    gifts = [
        donated(public, day["id"], gift(amount=1000, fundraiser_id=ann["id"])),
        donated(public, day["id"], gift(amount=2000, fundraiser_id=ann["id"])),
        donated(public, day["id"], gift(amount=5000, fundraiser_id=bob["id"])),
        donated(public, day["id"], gift(amount=700, fundraiser_id=cat["id"])),
        donated(public, day["id"], gift(amount=400, team_id=red["id"])),
        donated(public, day["id"], gift("tok_declined", amount=9000, fundraiser_id=cat["id"])),
    ]
    # The team follows the fundraiser.
    assert [g["team_id"] for g in gifts[:3]] == [red["id"], red["id"], blue["id"]]
    assert [final(staff, g["id"])["status"] for g in gifts][-1] == "failed"

    def fundraisers() -> dict[str, Any]:
        board: dict[str, Any] = httpx.get(f"{api}/v1/campaigns/{day['id']}/leaderboard").json()
        return board

    board = eventually(fundraisers, lambda b: len(b["entries"]) == 3)
    assert [(e["rank"], e["name"], e["raised"]) for e in board["entries"]] == [
        (1, "Bob", 5000),
        (2, "Ann", 3000),
        (3, "Cat", 700),
    ]
    assert board["entries"][1]["donations"] == 2 and board["currency"] == "USD"
    teams = httpx.get(
        f"{api}/v1/campaigns/{day['id']}/leaderboard", params={"kind": "teams", "limit": 1}
    ).json()
    assert [(e["name"], e["raised"]) for e in teams["entries"]] == [("Blue", 5000)]
    red_totals = httpx.get(f"{api}/v1/teams/{red['id']}/totals").json()
    assert (red_totals["raised"], red_totals["donations"], red_totals["percent_of_goal"]) == (
        3400,
        3,
        34.0,
    )
    cat_totals = httpx.get(f"{api}/v1/fundraisers/{cat['id']}/totals")
    assert cat_totals.json()["raised"] == 700  # the declined gift is not counted
    assert cat_totals.headers["cache-control"] == "public, max-age=1"

    async def service_reads() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            found = await peer.fundraiser_by_slug(conn, day["id"], "ann")
            assert (found.id, found.team_id) == (ann["id"], red["id"])
            assert not hasattr(found, "email")
            assert (await peer.team_by_slug(conn, day["id"], "blue")).id == blue["id"]
            with pytest.raises(NotFound):
                await peer.fundraiser_by_slug(conn, day["id"], "nobody")
            own = await peer.leaderboard(conn, day["id"], "fundraisers", 5, team_id=red["id"])
            assert [e.name for e in own.entries] == ["Ann"]

    asyncio.run(service_reads())


def test_a_gift_must_name_a_page_of_its_campaign(
    staff: httpx.Client, public: httpx.Client, day: dict[str, Any]
) -> None:
    other = campaign(staff, name="Not this one")
    stranger = staff.post(f"/v1/campaigns/{other['id']}/fundraisers", json={"name": "S"}).json()
    wrong = donate(public, day["id"], gift(fundraiser_id=stranger["id"]))
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "fundraiser_id"
    team = staff.post(f"/v1/campaigns/{day['id']}/teams", json={"name": "Solo"}).json()
    loner = staff.post(f"/v1/campaigns/{day['id']}/fundraisers", json={"name": "Loner"}).json()
    mismatch = donate(public, day["id"], gift(fundraiser_id=loner["id"], team_id=team["id"]))
    assert mismatch.status_code == 400 and mismatch.json()["error"]["field"] == "team_id"


def test_leaderboard_checks_its_parameters(api: str, day: dict[str, Any]) -> None:
    base = f"{api}/v1/campaigns/{day['id']}/leaderboard"
    assert httpx.get(base, params={"kind": "donors"}).json()["error"]["field"] == "kind"
    assert httpx.get(base, params={"limit": 101}).status_code == 400
    assert httpx.get(f"{api}/v1/campaigns/999999/leaderboard").status_code == 404
    assert httpx.get(f"{api}/v1/teams/999999/totals").status_code == 404


def test_the_wall_shows_names_only_of_donors_who_agreed(
    api: str, staff: httpx.Client, public: httpx.Client
) -> None:
    day = campaign(staff, name="Wall day")
    page = staff.post(f"/v1/campaigns/{day['id']}/fundraisers", json={"name": "Wally"}).json()
    made = [
        donated(public, day["id"], gift(name="Shy Sam", amount=100)),
        donated(public, day["id"], gift(name="Open Olga", amount=200, public_name=True)),
        donated(public, day["id"], gift(amount=300, public_name=True, fundraiser_id=page["id"])),
        donated(public, day["id"], gift("tok_declined", name="Declined Dan", public_name=True)),
    ]
    for d in made:
        final(staff, d["id"])

    def wall(**params: Any) -> dict[str, Any]:
        found: dict[str, Any] = httpx.get(
            f"{api}/v1/campaigns/{day['id']}/recent-donors", params=params
        ).json()
        return found

    found = eventually(wall, lambda w: len(w["donors"]) == 3)
    assert {(d["name"], d["amount"]) for d in found["donors"]} == {
        (None, 100),
        ("Open Olga", 200),
        ("Ada Donor", 300),
    }
    times = [d["at"] for d in found["donors"]]
    assert times == sorted(times, reverse=True)  # newest first
    own = eventually(lambda: wall(fundraiser_id=page["id"]), lambda w: len(w["donors"]) == 1)
    assert own["donors"][0]["fundraiser_id"] == page["id"]
    assert len(wall(limit=1)["donors"]) == 1
    assert httpx.get(f"{api}/v1/campaigns/999999/recent-donors").status_code == 404
