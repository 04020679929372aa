"""Which tracking requests are machines' (Apple's privacy proxy, scanners) and which people's."""

from __future__ import annotations

import pytest

from surge.tracking.machines import is_machine

SAFARI = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)


@pytest.mark.parametrize(
    ("method", "agent", "ip", "machine"),
    [
        ("GET", SAFARI, "203.0.113.5", False),
        ("GET", GMAIL_PROXY, "66.249.84.1", False),  # Gmail fetches images when opened
        ("GET", "Mozilla/5.0", "203.0.113.5", True),  # Apple MPP proxy's agent
        ("GET", SAFARI, "17.58.101.2", True),  # from Apple's network
        ("HEAD", SAFARI, "203.0.113.5", True),  # no client shows an image with HEAD
        ("GET", "", "203.0.113.5", True),
        ("GET", None, None, True),
        ("GET", "python-requests/2.32", "198.51.100.1", True),
        ("GET", "Mozilla/5.0 (compatible; Barracuda Sentinel)", "198.51.100.1", True),
        ("GET", "Mozilla/5.0 (compatible; bingbot/2.0)", "198.51.100.1", True),
        ("GET", SAFARI, "not an ip", False),
    ],
)
def test_machines_are_told_from_people(
    method: str, agent: str | None, ip: str | None, machine: bool
) -> None:
    assert is_machine(method, agent, ip) is machine
