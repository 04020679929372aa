"""Giving-day pages over real HTTP: a real `surge api` and `surge worker` on the module's DB.

Pages are cached per process for a second, so a test that changes a page waits for the
change with ``wait_for`` rather than expecting it on the next request.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from surge.config import Settings
from surge.donations.links import links
from tests.conftest import create_org, surge_env

#: The signing key of the module's processes: the test signs a recurring gift's link with it.
SECRET = "giving-day-pages-test-key"

STORY = """# Why we give

Every **gift** feeds a family for a week. [Read the report](https://charity.example/report).

- Meals
- Shelter
"""

#: Story payloads that must not survive as markup: script, event handlers, bad URL schemes.
XSS = [
    "<div onmouseover=\"alert('s11')\">hover</div>",
    "<script>alert('s1')</script>",
    "<img src=x onerror=alert('s2')>",
    "<a href=\"javascript:alert('s3')\">click</a>",
    "[md link](javascript:alert('s4'))",
    "<svg onload=alert('s5')></svg>",
    '<iframe src="https://evil.example"></iframe>',
    '<p style="background:url(javascript:alert(1))" onclick="alert(\'s6\')">styled</p>',
    "<a href=\"data:text/html,<script>alert('s7')</script>\">data</a>",
    '<form action="https://evil.example"><input name=x></form>',
    "<scr<script>ipt>alert('s8')</script>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('s9')>",
    "<a href=\"  JaVaScRiPt:alert('s10')\">mixed</a>",
    "![img](x\" onerror=\"alert('s12'))",
]


@pytest.fixture(scope="module")
def env(database_url: str) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_PAYMENT_GATEWAY="sandbox",
        SURGE_DONATIONS_CHARGE_ATTEMPTS="3",
        SURGE_DONATIONS_CHARGE_BACKOFF="0.1",
        # A loaded test machine must not shed the walls on its own; the test of the switch
        # forces it per campaign, which wins over this.
        SURGE_GIVING_DAY_SHED="off",
        SURGE_SECRET_KEY=SECRET,
    )


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Harbour Food Bank")


@pytest.fixture(scope="module")
def public(api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, timeout=20) as client:
        yield client


def new_campaign(staff: httpx.Client, **extra: Any) -> dict[str, Any]:
    body = {"name": "Giving Tuesday", "kind": "fundraising", "goal": 1_000_000, "currency": "USD"}
    response = staff.post("/v1/campaigns", json=body | extra)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.fixture(scope="module")
def campaign(staff: httpx.Client) -> dict[str, Any]:
    return new_campaign(staff, story=STORY, page={"published": True})


def page_url(org: dict[str, str], campaign: dict[str, Any], tail: str = "") -> str:
    return f"/g/{org['slug']}/{campaign['slug']}{tail}"


def wait_for(check: Any, timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(interval)


def donate(api: str, org: dict[str, str], campaign_id: int, amount: int = 2500) -> int:
    headers = {
        "Authorization": f"Bearer {org['publishable_key']}",
        "Idempotency-Key": str(uuid.uuid4()),
    }
    body = {"amount": amount, "currency": "USD", "email": "ada@example.org", "token": "tok_ok"}
    response = httpx.post(
        f"{api}/v1/campaigns/{campaign_id}/donations", json=body, headers=headers, timeout=20
    )
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def succeeded(staff: httpx.Client, donation_id: int) -> bool:
    return bool(staff.get(f"/v1/donations/{donation_id}").json()["status"] == "succeeded")


def patch(staff: httpx.Client, campaign_id: int, body: dict[str, Any]) -> dict[str, Any]:
    response = staff.patch(f"/v1/campaigns/{campaign_id}", json=body)
    assert response.status_code == 200, response.text
    changed: dict[str, Any] = response.json()
    return changed


# -- addresses and the campaign API ----------------------------------------------------------


def test_organisation_and_campaign_get_slugs_from_their_names(
    org: dict[str, str], staff: httpx.Client, campaign: dict[str, Any]
) -> None:
    assert org["slug"] == "harbour-food-bank"
    assert campaign["slug"] == "giving-tuesday"
    assert campaign["story"] == STORY
    assert campaign["page"]["published"] is True
    assert campaign["page"]["shed"] == "auto"
    again = new_campaign(staff)  # same name: the next free slug
    assert again["slug"] == "giving-tuesday-2"
    assert again["page"]["published"] is False


def test_campaign_slug_rules_name_the_field(staff: httpx.Client, campaign: dict[str, Any]) -> None:
    taken = staff.post("/v1/campaigns", json={"name": "X", "slug": campaign["slug"]})
    assert taken.status_code == 409
    assert taken.json()["error"]["field"] == "slug"
    for bad in ("Upper", "-dash", "dash-", "a b", "x" * 65, ""):
        response = staff.post("/v1/campaigns", json={"name": "X", "slug": bad})
        assert response.status_code == 400, bad
        assert response.json()["error"]["field"] == "slug"
    other = new_campaign(staff, name="Spring appeal")
    response = staff.patch(f"/v1/campaigns/{other['id']}", json={"slug": campaign["slug"]})
    assert response.status_code == 409
    assert response.json()["error"]["field"] == "slug"
    bad_page = staff.patch(f"/v1/campaigns/{other['id']}", json={"page": {"shed": "maybe"}})
    assert bad_page.status_code == 400
    assert bad_page.json()["error"]["field"] == "page.shed"


def test_patch_changes_only_the_page_settings_given(staff: httpx.Client) -> None:
    made = new_campaign(staff, name="Patchy", page={"presets": [1000, 2000], "monthly": False})
    changed = patch(staff, made["id"], {"page": {"published": True}, "story": "Hello"})
    assert changed["page"]["published"] is True
    assert changed["page"]["presets"] == [1000, 2000]
    assert changed["page"]["monthly"] is False
    assert changed["story"] == "Hello"
    assert staff.get(f"/v1/campaigns/{made['id']}").json() == changed
    cleared = patch(staff, made["id"], {"story": None})
    assert cleared["story"] is None and cleared["page"]["published"] is True
    assert patch(staff, made["id"], {}) == cleared  # nothing to change is not an error


# -- the campaign page ------------------------------------------------------------------------


def test_campaign_page_shows_story_goal_meter_totals_and_form(
    public: httpx.Client, org: dict[str, str], campaign: dict[str, Any]
) -> None:
    response = public.get(page_url(org, campaign))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    assert "<h1>Giving Tuesday</h1>" in html
    assert "<h2>Why we give</h2>" in html  # the story's own headings start below the page's
    assert "<strong>gift</strong>" in html
    assert 'href="https://charity.example/report" rel="noopener nofollow"' in html
    assert '<progress id="goal-meter"' in html and 'max="100"' in html
    assert "10,000 USD" in html  # the goal
    assert 'data-key="pk_' in html  # the organisation's publishable key
    assert f'data-endpoint="/v1/campaigns/{campaign["id"]}/donations"' in html
    assert 'id="donate"' in html and 'id="email"' in html
    assert "content-security-policy" in response.headers


def test_unknown_unpublished_and_malformed_addresses_are_404_pages(
    public: httpx.Client, staff: httpx.Client, org: dict[str, str], campaign: dict[str, Any]
) -> None:
    draft = new_campaign(staff, name="Draft appeal")
    for path in (
        f"/g/nobody/{campaign['slug']}",
        f"/g/{org['slug']}/no-such-campaign",
        page_url(org, draft),
        f"/g/{org['slug']}/Not_A_Slug",
        f"/g/{org['slug']}/{campaign['slug']}-",
        page_url(org, draft, "/thanks"),
    ):
        response = public.get(path)
        assert response.status_code == 404, path
        assert "text/html" in response.headers["content-type"]
        assert "Page not found" in response.text
    assert public.get(page_url(org, draft, "/live")).status_code == 404


def test_another_organisations_campaign_is_not_found_under_this_one(
    database_url: str, api: str, public: httpx.Client, org: dict[str, str]
) -> None:
    other = create_org(database_url, "Other Org")
    headers = {"Authorization": f"Bearer {other['secret_key']}"}
    body = {"name": "Their Day", "page": {"published": True}}
    made = httpx.post(f"{api}/v1/campaigns", json=body, headers=headers).json()
    assert public.get(f"/g/{other['slug']}/{made['slug']}").status_code == 200
    assert public.get(f"/g/{org['slug']}/{made['slug']}").status_code == 404


def test_story_is_sanitised_against_script_and_event_handlers(
    public: httpx.Client, staff: httpx.Client, org: dict[str, str]
) -> None:
    story = "\n\n".join(XSS)
    made = new_campaign(staff, name="Hostile story", story=story, page={"published": True})
    html = public.get(page_url(org, made)).text
    story_html = html.split('<div class="story">', 1)[1].split("</div>", 1)[0]
    lowered = story_html.lower()
    assert "<script" not in lowered
    assert "<iframe" not in lowered and "<svg" not in lowered and "<form" not in lowered
    assert "<style" not in lowered and "style=" not in lowered
    assert re.search(r"<[^>]*\son\w+\s*=", lowered) is None
    assert re.search(r"(href|src)\s*=\s*\"\s*(javascript|data):", lowered) is None
    for anchor in re.findall(r"<a\s[^>]*>", story_html):
        assert 'rel="noopener nofollow"' in anchor
    assert "hover" in story_html  # the text stays, the handler goes


def test_page_answers_304_to_its_etag_and_is_publicly_cacheable(
    public: httpx.Client, org: dict[str, str], campaign: dict[str, Any]
) -> None:
    first = public.get(page_url(org, campaign))
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{24}"', etag)
    cache_control = first.headers["cache-control"]
    assert "public" in cache_control and "max-age=1" in cache_control
    assert "stale-while-revalidate=" in cache_control
    again = public.get(page_url(org, campaign), headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    weak_list = public.get(page_url(org, campaign), headers={"If-None-Match": f'"nope", W/{etag}'})
    assert weak_list.status_code == 304
    stale = public.get(page_url(org, campaign), headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.content == first.content


def test_page_total_and_live_stream_follow_a_donation_within_a_second_or_so(
    api: str,
    public: httpx.Client,
    staff: httpx.Client,
    org: dict[str, str],
) -> None:
    made = new_campaign(staff, name="Live day", page={"published": True}, goal=100_000)
    events: list[str] = []
    stop = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(30, read=30)) as client,
            client.stream("GET", f"{api}{page_url(org, made, '/live')}") as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                if stop.is_set() or len(events) >= 2:
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    wait_for(lambda: events)  # the current figures come at once
    assert '"raised":0' in events[0] and '"donations":0' in events[0]
    before = public.get(page_url(org, made))
    assert "0 USD" in before.text
    donation = donate(api, org, made["id"], amount=4200)
    wait_for(lambda: succeeded(staff, donation))
    settled = time.monotonic()
    wait_for(lambda: "42 USD" in public.get(page_url(org, made)).text)
    # The page caches for a second: generous bounds for a loaded machine, never tight.
    assert time.monotonic() - settled < 5
    wait_for(lambda: len(events) >= 2)
    stop.set()
    assert '"raised":4200' in events[1] and '"donations":1' in events[1]
    assert '"raised_text":"42 USD"' in events[1]
    after = public.get(page_url(org, made))
    assert after.headers["etag"] != before.headers["etag"]


def test_degrade_switch_sheds_walls_and_leaderboards_but_keeps_form_and_total(
    public: httpx.Client, staff: httpx.Client, org: dict[str, str]
) -> None:
    made = new_campaign(staff, name="Busy day", page={"published": True})
    normal = public.get(page_url(org, made)).text
    assert 'data-shed="false"' in normal
    patch(staff, made["id"], {"page": {"shed": "on"}})

    def shed_page() -> str | None:
        html = public.get(page_url(org, made)).text
        return html if 'data-shed="true"' in html else None

    shed = wait_for(shed_page)
    assert 'class="shed-note"' in shed
    assert 'id="donate"' in shed and 'id="goal-meter"' in shed
    assert 'data-live="raised_text"' in shed
    assert 'class="leaderboards"' not in shed and 'class="recent-donors"' not in shed
    patch(staff, made["id"], {"page": {"shed": "off"}})
    wait_for(lambda: 'data-shed="false"' in public.get(page_url(org, made)).text)


def test_thanks_page_and_static_assets(
    public: httpx.Client, org: dict[str, str], campaign: dict[str, Any]
) -> None:
    thanks = public.get(page_url(org, campaign, "/thanks"))
    assert thanks.status_code == 200 and "Thank you" in thanks.text
    script = re.search(r'src="(/g-static/giving\.js\?v=[0-9a-f]{12})"', thanks.text)
    assert script is not None
    asset = public.get(script[1])
    assert asset.status_code == 200
    assert asset.headers["content-type"].startswith("text/javascript")
    assert "immutable" in asset.headers["cache-control"]
    assert "Idempotency-Key" in asset.text and "sessionStorage" in asset.text
    assert public.get("/g-static/giving.css").headers["content-type"].startswith("text/css")


# -- peer-to-peer pages -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def p2p(staff: httpx.Client) -> dict[str, Any]:
    """A published campaign with a team and a fundraiser in it."""
    made = new_campaign(staff, name="Harbour Run", page={"published": True}, goal=500_000)
    cid = made["id"]
    team = staff.post(
        f"/v1/campaigns/{cid}/teams",
        json={"name": "Dock Rowers", "goal": 50_000, "story": "We **row** <script>x</script>"},
    )
    assert team.status_code == 201, team.text
    runner = staff.post(
        f"/v1/campaigns/{cid}/fundraisers",
        json={
            "name": "Ada Runs",
            "goal": 20_000,
            "story": "Ten miles for the pantry.",
            "team_id": team.json()["id"],
        },
    )
    assert runner.status_code == 201, runner.text
    return {"campaign": made, "team": team.json(), "fundraiser": runner.json()}


def test_fundraiser_page_shows_its_own_goal_story_team_and_form(
    api: str, public: httpx.Client, staff: httpx.Client, org: dict[str, str], p2p: dict[str, Any]
) -> None:
    campaign, runner = p2p["campaign"], p2p["fundraiser"]
    url = page_url(org, campaign, f"/f/{runner['slug']}")
    first = public.get(url)
    assert first.status_code == 200
    assert "<h1>Ada Runs</h1>" in first.text
    assert "200 USD goal" in first.text and "Ten miles for the pantry." in first.text
    assert f'href="{page_url(org, campaign, "/t/dock-rowers")}"' in first.text
    assert f'data-target-kind="fundraiser" data-target-id="{runner["id"]}"' in first.text
    assert first.headers["etag"] and "max-age=1" in first.headers["cache-control"]
    headers = {
        "Authorization": f"Bearer {org['publishable_key']}",
        "Idempotency-Key": str(uuid.uuid4()),
    }
    body = {
        "amount": 5000,
        "currency": "USD",
        "email": "fan@example.org",
        "token": "tok_ok",
        "fundraiser_id": runner["id"],
    }
    response = httpx.post(
        f"{api}/v1/campaigns/{campaign['id']}/donations", json=body, headers=headers, timeout=20
    )
    assert response.status_code == 202, response.text
    wait_for(lambda: succeeded(staff, int(response.json()["id"])))
    raised = 'data-live="raised_text">50 USD<'
    moved = wait_for(lambda: (r := public.get(url).text) and raised in r and r)
    assert "25% of the goal" in moved
    team = wait_for(
        lambda: (
            (r := public.get(page_url(org, campaign, "/t/dock-rowers")).text)
            and "50 USD" in r
            and r
        )
    )
    assert "<strong>row</strong>" in team and "<script" not in team.split('class="story"')[1]
    assert 'class="leaderboards"' in team and ">Ada Runs</a>" in team
    board = public.get(page_url(org, campaign)).text
    assert 'class="leaderboards"' in board
    assert f'href="{page_url(org, campaign, "/f/ada-runs")}"' in board
    assert f'href="{page_url(org, campaign, "/t/dock-rowers")}"' in board


def test_unknown_fundraiser_and_team_pages_are_404(
    public: httpx.Client, org: dict[str, str], p2p: dict[str, Any]
) -> None:
    campaign = p2p["campaign"]
    for tail in ("/f/nobody", "/t/nobody", "/f/Bad_Slug", "/f/dock-rowers", "/t/ada-runs"):
        response = public.get(page_url(org, campaign, tail))
        assert response.status_code == 404, tail
        assert "Page not found" in response.text
    assert public.get(page_url(org, campaign, "/f/nobody/live")).status_code == 404


def test_fundraiser_live_stream_sends_its_figures(
    api: str, org: dict[str, str], p2p: dict[str, Any]
) -> None:
    url = f"{api}{page_url(org, p2p['campaign'], '/f/ada-runs/live')}"
    with httpx.Client(timeout=20) as client, client.stream("GET", url) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data: "):
                assert '"raised":' in line and '"percent_text":' in line
                break


def test_wall_names_only_donors_who_agreed_and_matches_add_to_the_total(
    api: str, public: httpx.Client, staff: httpx.Client, org: dict[str, str]
) -> None:
    made = new_campaign(staff, name="Matched day", page={"published": True}, goal=100_000)
    match = staff.post(
        f"/v1/campaigns/{made['id']}/matches",
        json={"sponsor": "Acme Shipping", "cap": 100_000, "ratio_percent": 100},
    )
    assert match.status_code == 201, match.text
    headers = {"Authorization": f"Bearer {org['publishable_key']}"}
    gifts = [
        {"name": "Grace Hopper", "public_name": True, "amount": 3000},
        {"name": "Private Person", "public_name": False, "amount": 2000},
    ]
    for gift in gifts:
        body = {"currency": "USD", "email": "g@example.org", "token": "tok_ok", **gift}
        response = httpx.post(
            f"{api}/v1/campaigns/{made['id']}/donations",
            json=body,
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            timeout=20,
        )
        assert response.status_code == 202, response.text
        wait_for(lambda r=response: succeeded(staff, int(r.json()["id"])))
    html = wait_for(
        lambda: (
            (r := public.get(page_url(org, made)).text)
            and 'data-live="raised_text">100 USD<' in r
            and r
        )
    )
    assert 'including <span data-live="matched_text">50 USD</span> matched' in html
    assert "Acme Shipping" in html and 'class="matches"' in html
    wall = html.split('class="recent-donors"', 1)[1]
    assert "Grace Hopper" in wall and "Anonymous" in wall
    assert "Private Person" not in html


def test_donor_sees_and_cancels_a_recurring_gift_by_its_signed_link(
    api: str, public: httpx.Client, staff: httpx.Client, org: dict[str, str]
) -> None:
    made = new_campaign(staff, name="Monthly friends", page={"published": True})
    headers = {
        "Authorization": f"Bearer {org['publishable_key']}",
        "Idempotency-Key": str(uuid.uuid4()),
    }
    body = {
        "amount": 1500,
        "currency": "USD",
        "email": "ada@example.org",
        "token": "tok_ok",
        "recurring": "monthly",
    }
    response = httpx.post(
        f"{api}/v1/campaigns/{made['id']}/donations", json=body, headers=headers, timeout=20
    )
    assert response.status_code == 202, response.text
    gifts = wait_for(lambda: staff.get("/v1/recurring-gifts").json()["data"])
    gift = next(g for g in gifts if g["campaign_id"] == made["id"])
    signer = links(Settings(secret_key=SECRET, public_url=api))
    url = signer.manage_url(gift["id"])
    page = public.get(url)
    assert page.status_code == 200, page.text
    assert "Your monthly gift" in page.text and "Monthly friends" in page.text
    assert "15 USD" in page.text and "a**@example.org" in page.text
    assert "ada@example.org" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    cancelled = public.post(url + "/cancel", follow_redirects=True)
    assert cancelled.status_code == 200
    assert "Your gift is cancelled" in cancelled.text and "cancelled since" in cancelled.text
    assert 'action="' not in cancelled.text.split("<main", 1)[1]  # no Cancel button left
    assert staff.get(f"/v1/recurring-gifts/{gift['id']}").json()["status"] == "cancelled"
    token = url.rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert public.get(f"/recurring/{forged}").status_code == 404
    assert public.post(f"/recurring/{forged}/cancel").status_code == 404
