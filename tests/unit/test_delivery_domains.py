"""The rules of per-provider throttles: configuration, grouping, what counts as "slow down"."""

from __future__ import annotations

import pytest

from surge.delivery.bounces import SendOutcome, SendStatus, classify
from surge.delivery.domains import Limit, group_of, is_deferral, parse_throttles
from surge.errors import Invalid


def test_throttles_are_read_per_provider_group_with_their_unit_and_burst() -> None:
    limits = parse_throttles("gmail.com:3000/min  Yahoo.com:10/s:50 example.org:3600/h")
    assert limits == {
        "google": Limit(50.0, 500),
        "yahoo": Limit(10.0, 50),
        "example.org": Limit(1.0, 10),
    }
    assert parse_throttles("") == {}


@pytest.mark.parametrize("text", ["gmail.com", "gmail.com:fast", "gmail.com:0/s", "x:1/day"])
def test_a_malformed_throttle_is_refused_naming_the_setting(text: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_throttles(text)
    assert caught.value.field == "SURGE_DOMAIN_THROTTLES"


def test_domains_of_one_provider_share_a_group() -> None:
    assert group_of("GoogleMail.com") == group_of("gmail.com") == "google"
    assert group_of("hotmail.com") == group_of("outlook.com") == "microsoft"
    assert group_of("charity.example") == "charity.example"


@pytest.mark.parametrize(
    ("code", "reply", "deferral"),
    [
        (421, "4.7.0 Try again later", True),
        (450, "4.7.28 rate limited, try later", True),
        (451, "4.3.0 local error", False),
        (452, "4.2.2 mailbox full", False),
        (550, "5.7.1 blocked", False),
        (250, "2.0.0 OK", False),
    ],
)
def test_only_slow_down_replies_are_deferrals(code: int, reply: str, deferral: bool) -> None:
    assert is_deferral(classify(code, reply)) is deferral


def test_an_unreachable_sender_is_no_deferral_by_the_provider() -> None:
    down = SendOutcome(SendStatus.TEMPORARY, 421, "service closing", sender_unavailable=True)
    assert not is_deferral(down)


def test_the_setting_is_checked_when_settings_are_read() -> None:
    from surge.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="SURGE_DOMAIN_THROTTLES"):
        Settings(domain_throttles="gmail.com:0/s")
    assert Settings(domain_throttles="gmail.com:3000/min").domain_throttles
