"""What a giving-day page shows, end to end over the real API with gifts charged by a real
worker: peer-to-peer teams and fundraisers, their totals and leaderboards, the wall of recent
donors, sponsor matches and challenges, and how a refund comes back out of all of them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from surge.donations import counting, peer
from surge.errors import NotFound
from tests.conftest import create_org, surge_env
from tests.donations_support import campaign, client, donate, donated, eventually, final, gift


@pytest.fixture(scope="module")
def env(database_url: str) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_DONATIONS_CHARGE_ATTEMPTS="3",
        SURGE_DONATIONS_CHARGE_BACKOFF="0.1",
        # A second organisation's key runs into the limit; the first one's never does.
        SURGE_SIGNUP_RATE="0.01",
        SURGE_SIGNUP_BURST="6",
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "P2P Org")


@pytest.fixture(scope="module")
def other(database_url: str) -> dict[str, str]:
    """A second organisation: its key runs into the sign-up limit, its staff see nothing."""
    return create_org(database_url, "Other P2P Org")


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


def test_sign_ups_are_rate_limited_per_key(api: str, other: dict[str, str]) -> None:
    with client(api, other["secret_key"]) as staff, client(api, other["publishable_key"]) as public:
        day = campaign(staff)
        answers = [
            public.post(
                f"/v1/campaigns/{day['id']}/signups",
                json={"name": f"S{i}", "email": f"s{i}@example.org"},
            )
            for i in range(7)
        ]
    assert [a.status_code for a in answers[:6]] == [201] * 6
    assert answers[6].status_code == 429
    assert int(answers[6].headers["retry-after"]) >= 1


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


def totals(api: str, campaign_id: int) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(f"{api}/v1/campaigns/{campaign_id}/totals").json()
    return found


def test_matches_and_challenges_add_to_the_total_and_reconcile(
    api: str, staff: httpx.Client, public: httpx.Client
) -> None:
    day = campaign(staff, goal=20_000)
    base = f"/v1/campaigns/{day['id']}/matches"
    first = donated(public, day["id"], gift(amount=1000, email="early@example.org"))
    one_to_one = staff.post(base, json={"sponsor": "Acme", "cap": 3000})
    assert one_to_one.status_code == 201, one_to_one.text
    assert one_to_one.json()["ratio_percent"] == 100
    donors = staff.post(
        base,
        json={
            "sponsor": "Bee Foundation",
            "kind": "challenge",
            "cap": 1500,
            "threshold_kind": "donors",
            "threshold": 2,
        },
    ).json()
    hour = staff.post(
        base,
        json={
            "sponsor": "Power hour",
            "ratio_percent": 200,
            "cap": 100_000,
            "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    ).json()
    assert hour["starts_at"] is not None  # a window starts now
    later = [
        donated(public, day["id"], gift(amount=1500, email="ann@example.org")),
        donated(public, day["id"], gift(amount=500, email="ANN@example.org")),
        donated(public, day["id"], gift("tok_declined", amount=4000, email="bob@example.org")),
    ]
    assert [final(staff, d["id"])["status"] for d in [first, *later]][-1] == "failed"
    found = eventually(lambda: totals(api, day["id"]), lambda t: t["donations"] == 3)
    # 3,000 raised by 2 donors (the address is the donor, whatever its case).
    assert (found["raised"], found["donations"], found["donors"]) == (3000, 3, 2)
    shares = {m["sponsor"]: m for m in found["matches"]}
    assert shares["Acme"]["share"] == 3000  # 1:1 of 3,000, at its cap
    assert shares["Bee Foundation"]["unlocked"] and shares["Bee Foundation"]["share"] == 1500
    # The power hour counts only what was given after it started: 2,000, doubled.
    assert (shares["Power hour"]["raised"], shares["Power hour"]["share"]) == (2000, 4000)
    assert shares["Power hour"]["window"] == "open"
    assert found["matched"] == 8500 == sum(m["share"] for m in found["matches"])
    assert found["total"] == found["raised"] + found["matched"] == 11_500
    assert found["percent_of_goal"] == 57.5

    # A sponsor who withdraws takes their share out of the totals; caps may change.
    assert staff.delete(f"/v1/matches/{donors['id']}").status_code == 204
    assert staff.patch(f"/v1/matches/{hour['id']}", json={"cap": 1000}).json()["cap"] == 1000
    after = eventually(lambda: totals(api, day["id"]), lambda t: t["matched"] == 4000)
    assert after["total"] == 7000
    listed = staff.get(base).json()["data"]
    assert [m["sponsor"] for m in listed] == ["Acme", "Power hour"]


def test_match_terms_are_checked_field_by_field(staff: httpx.Client) -> None:
    day = campaign(staff, name="Checks")
    base = f"/v1/campaigns/{day['id']}/matches"
    cases = [
        ({"sponsor": "A", "cap": 0}, "cap"),
        ({"sponsor": "A", "cap": 10, "kind": "challenge"}, "threshold_kind"),
        ({"sponsor": "A", "cap": 10, "threshold": 5}, "threshold"),
        ({"sponsor": "A", "cap": 10, "kind": "challenge", "ratio_percent": 100}, "ratio_percent"),
        ({"sponsor": "A", "cap": 10, "starts_at": "2020-01-01T00:00:00Z"}, "starts_at"),
        ({"sponsor": " ", "cap": 10}, "sponsor"),
    ]
    for body, field in cases:
        response = staff.post(base, json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["field"] == field, body
    plain = staff.post("/v1/campaigns", json={"name": "No currency"}).json()
    no_currency = staff.post(
        f"/v1/campaigns/{plain['id']}/matches", json={"sponsor": "A", "cap": 1}
    )
    assert no_currency.status_code == 409


def test_another_organisations_matches_are_not_found(
    api: str, staff: httpx.Client, other: dict[str, str]
) -> None:
    day = campaign(staff, name="Mine")
    match = staff.post(f"/v1/campaigns/{day['id']}/matches", json={"sponsor": "A", "cap": 1})
    with client(api, other["secret_key"]) as stranger:
        assert stranger.get(f"/v1/matches/{match.json()['id']}").status_code == 404
        assert stranger.delete(f"/v1/matches/{match.json()['id']}").status_code == 404
        assert stranger.get(f"/v1/campaigns/{day['id']}/matches").status_code == 404


def test_a_refund_comes_back_out_of_every_rollup_it_was_counted_in(
    api: str, staff: httpx.Client, public: httpx.Client, database_url: str
) -> None:
    day = campaign(staff, name="Refund day")
    page = staff.post(f"/v1/campaigns/{day['id']}/fundraisers", json={"name": "Fay"}).json()
    hour = staff.post(
        f"/v1/campaigns/{day['id']}/matches",
        json={
            "sponsor": "Hour",
            "cap": 10**6,
            "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    ).json()
    made = donated(public, day["id"], gift(amount=4000, fundraiser_id=page["id"]))
    final(staff, made["id"])
    eventually(lambda: totals(api, day["id"]), lambda t: t["raised"] == 4000)

    async def refund() -> None:  # what the refund path does in its transaction
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn, conn.transaction():
            await counting.uncount_donation(conn, made["id"], 1500, whole=False)

    asyncio.run(refund())
    after = eventually(lambda: totals(api, day["id"]), lambda t: t["raised"] == 2500)
    assert after["donations"] == 1 and after["donors"] == 1  # a partial refund
    [share] = [m for m in after["matches"] if m["id"] == hour["id"]]
    assert (share["raised"], share["share"]) == (2500, 2500)
    page_totals = eventually(
        lambda: httpx.get(f"{api}/v1/fundraisers/{page['id']}/totals").json(),
        lambda t: t["raised"] == 2500,
    )
    assert page_totals["donations"] == 1


def test_a_batch_counts_exactly_as_its_gifts_counted_one_by_one(
    staff: httpx.Client, org: dict[str, str], database_url: str
) -> None:
    """counting.count_many (a charge batch) and counting.count (one charge) agree, row by row."""
    days = [campaign(staff, name=f"Counting {i}") for i in range(2)]
    pages = []
    for day in days:
        team = staff.post(f"/v1/campaigns/{day['id']}/teams", json={"name": "T"}).json()
        fundraiser = staff.post(
            f"/v1/campaigns/{day['id']}/fundraisers", json={"name": "F", "team_id": team["id"]}
        ).json()
        staff.post(
            f"/v1/campaigns/{day['id']}/matches",
            json={
                "sponsor": "W",
                "cap": 10**9,
                "ends_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
        )
        pages.append((fundraiser["id"], team["id"]))
    later = datetime.now(UTC) + timedelta(seconds=5)  # after the matches' windows opened
    before = datetime.now(UTC) - timedelta(days=1)

    def gifts(campaign_id: int, fundraiser_id: int, team_id: int) -> list[counting.Gift]:
        return [
            counting.Gift(
                id=1_000_000 + i,
                organization_id=int(org["id"]),
                campaign_id=campaign_id,
                amount=100 * (i + 1),
                currency="USD",
                email=None if i == 7 else f"donor{i % 4}@example.org",
                created_at=before if i % 5 == 0 else later,
                fundraiser_id=fundraiser_id if i % 3 else None,
                team_id=team_id if i % 2 else None,
            )
            for i in range(14)
        ]

    one_by_one = gifts(days[0]["id"], *pages[0])
    batch = gifts(days[1]["id"], *pages[1])

    async def count_both() -> None:
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn:
            async with conn.transaction():
                for gift_one in one_by_one:
                    await counting.count(conn, gift_one)
            async with conn.transaction():
                await counting.count_many(conn, list(reversed(batch)))

    asyncio.run(count_both())

    def rows(sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(database_url) as conn:
            return [tuple(r) for r in conn.execute(sql, list(params)).fetchall()]

    # Shards are striped counters: what matters is each key's sum over its shards. The
    # batch writes all of its gifts to one shard per key (so that concurrent batches seldom
    # wait for each other's row locks); gift by gift they spread over several.
    shape = [
        (
            "select sum(raised_minor), sum(donations), sum(donors), count(*) from campaign_totals"
            " where campaign_id = %s",
            "campaign",
        ),
        (
            "select sum(raised_minor), sum(donations), count(*) from fundraiser_totals"
            " where fundraiser_id = %s",
            "fundraiser",
        ),
        (
            "select sum(raised_minor), sum(donations), count(*) from team_totals"
            " where team_id = %s",
            "team",
        ),
        (
            "select sum(t.raised_minor), sum(t.donations), sum(t.donors), count(*)"
            " from match_totals t join campaign_matches m on m.id = t.match_id"
            " where m.campaign_id = %s",
            "campaign",
        ),
    ]
    for query, key in shape:
        first = {"campaign": days[0]["id"], "fundraiser": pages[0][0], "team": pages[0][1]}[key]
        second = {"campaign": days[1]["id"], "fundraiser": pages[1][0], "team": pages[1][1]}[key]
        ((*one_by_one_sums, one_by_one_rows),) = rows(query, first)
        ((*batch_sums, batch_rows),) = rows(query, second)
        assert one_by_one_sums == batch_sums, query
        assert batch_sums[0] > 0, query
        assert (one_by_one_rows > 1, batch_rows) == (True, 1), query
    # A refund takes a batch-counted gift back out of the sums, whichever shard it lands in.
    refunded = batch[4]  # with a fundraiser, no team, inside the match's window
    checks = [
        (shape[0][0], days[1]["id"], [refunded.amount, 1, 0]),
        (shape[1][0], pages[1][0], [refunded.amount, 1]),
        (shape[3][0], days[1]["id"], [refunded.amount, 1, 0]),
    ]
    before_refund = [rows(query, key)[0][:-1] for query, key, _ in checks]

    async def refund() -> None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            await counting.uncount(conn, refunded, refunded.amount, whole=True)

    asyncio.run(refund())
    for (query, key, less), then in zip(checks, before_refund, strict=True):
        now = rows(query, key)[0][:-1]
        assert [a - b for a, b in zip(then, now, strict=True)] == less, query
