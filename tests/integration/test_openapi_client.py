"""A client generated from /openapi.json (openapi-python-client) can page, donate and track.

The document is only useful if a generator turns it into a client that works; this builds
one from the running server's document and uses it against that server.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.conftest import create_org

GENERATOR = Path(sys.executable).parent / "openapi-python-client"


@pytest.fixture(scope="module")
def generated(api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The package name of a client generated from the server's document."""
    work = tmp_path_factory.mktemp("client")
    (work / "openapi.json").write_bytes(httpx.get(api + "/openapi.json").content)
    proc = subprocess.run(
        [str(GENERATOR), "generate", "--path", "openapi.json", "--meta", "none"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sys.path.insert(0, str(work))
    try:
        yield "surge_client"
    finally:
        sys.path.remove(str(work))
        for name in [m for m in sys.modules if m.startswith("surge_client")]:
            del sys.modules[name]
        shutil.rmtree(work, ignore_errors=True)


def module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Generated Client Org")


def client(package: str, api: str, key: str) -> Any:
    return module(package, "client").AuthenticatedClient(base_url=api, token=key)


def test_a_generated_client_pages_through_contacts(
    generated: str, api: str, org: dict[str, str]
) -> None:
    secret = client(generated, api, org["secret_key"])
    models = module(generated, "models")
    batch = models.ContactBatch.from_dict(
        {"contacts": [{"email": f"p{i}@example.org"} for i in range(5)]}
    )
    module(generated, "api.default.post_v1_contacts").sync(client=secret, body=batch)
    pages = module(generated, "api.default.get_v1_contacts")
    seen: list[str] = []
    after: Any = module(generated, "types").UNSET
    while True:
        page = pages.sync(client=secret, limit=2, after=after)
        seen += [c.email for c in page.data]
        if not page.next_:
            break
        after = page.next_
    assert sorted(seen) == sorted(f"p{i}@example.org" for i in range(5))


def test_a_generated_client_donates_with_an_idempotency_key(
    generated: str, api: str, org: dict[str, str]
) -> None:
    secret = client(generated, api, org["secret_key"])
    models = module(generated, "models")
    campaign = module(generated, "api.default.post_v1_campaigns").sync(
        client=secret,
        body=models.CampaignIn.from_dict(
            {"name": "Gen", "kind": "fundraising", "goal": 1000, "currency": "USD"}
        ),
    )
    public = client(generated, api, org["publishable_key"])
    donate = module(generated, "api.default.post_v1_campaigns_campaign_id_donations")
    body = models.DonationIn.from_dict(
        {"amount": 700, "currency": "USD", "email": "g@example.org", "token": "tok_ok"}
    )
    first = donate.sync(campaign.id, client=public, body=body, idempotency_key="gen-1")
    again = donate.sync(campaign.id, client=public, body=body, idempotency_key="gen-1")
    assert first.id == again.id


def test_a_generated_client_tracks_an_event(generated: str, api: str, org: dict[str, str]) -> None:
    public = client(generated, api, org["publishable_key"])
    models = module(generated, "models")
    events = module(generated, "api.default.post_v1_events")
    accepted = events.sync(
        client=public,
        body=models.EventsIn.from_dict({"type": "signup", "properties": {"plan": "pro"}}),
    )
    assert accepted.accepted == 1
