"""Fixtures shared by integration tests: a throw-away CA and server cert for those that need
TLS, the development SMTP sink for those that send, and an organisation's staff and donor
clients, and a campaign, for those that define ``org`` (the modules' own organisation)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.conftest import Process
from tests.donations_support import campaign, client
from tests.helpers import sink_process


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[tuple[int, Path]]:
    """A real ``surge smtp-sink`` for the module: (its port, the directory mail lands in)."""
    with sink_process(tmp_path_factory.mktemp("sink"), database_url) as running:
        yield running


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The CA's certificate as a PEM file, as a sender's ``ca_file`` option takes it."""
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 and localhost signed by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def staff(api: str, org: dict[str, str], worker: Process) -> Iterator[httpx.Client]:
    """The module's organisation over its secret key, with a worker running its jobs."""
    with client(api, org["secret_key"]) as c:
        yield c


@pytest.fixture(scope="module")
def public(api: str, org: dict[str, str]) -> Iterator[httpx.Client]:
    """A donor's browser: the module's organisation's publishable key."""
    with client(api, org["publishable_key"]) as c:
        yield c


@pytest.fixture(scope="module")
def day(staff: httpx.Client) -> dict[str, Any]:
    """A fundraising campaign of the module's organisation."""
    return campaign(staff)
