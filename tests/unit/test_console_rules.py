"""The console's small rules: where a login may send the browser, and TOTP codes."""

from __future__ import annotations

import pyotp
from hypothesis import given
from hypothesis import strategies as st

from surge.console.auth import safe_next
from surge.users.passwords import totp_step

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_800_000_015.0  # 15 s into a 30 s step


@given(st.text(max_size=200))
def test_after_login_the_browser_only_ever_goes_to_a_console_path(target: str) -> None:
    where = safe_next(target)
    assert where.startswith("/console/") and "\\" not in where and not where.startswith("//")


def test_login_keeps_console_paths_and_drops_other_sites() -> None:
    assert safe_next("/console/keys?x=1") == "/console/keys?x=1"
    for bad in ("https://evil.example/console/", "//evil.example/console/", "/console\\..", ""):
        assert safe_next(bad) == "/console/"


def test_a_totp_code_is_accepted_within_one_step_of_drift_and_only_once() -> None:
    totp = pyotp.TOTP(SECRET)
    step = int(NOW) // 30
    assert totp_step(SECRET, totp.at(NOW), None, NOW) == step
    assert totp_step(SECRET, totp.at(NOW - 30), None, NOW) == step - 1
    assert totp_step(SECRET, totp.at(NOW + 30), None, NOW) == step + 1
    assert totp_step(SECRET, totp.at(NOW - 60), None, NOW) is None
    assert totp_step(SECRET, totp.at(NOW), step, NOW) is None  # spent
    assert totp_step(SECRET, totp.at(NOW)[:3] + " " + totp.at(NOW)[3:], None, NOW) == step


@given(st.text(max_size=20))
def test_any_typed_code_is_refused_or_matched_never_an_error(code: str) -> None:
    result = totp_step(SECRET, code, None, NOW)
    assert result is None or result in range(int(NOW) // 30 - 1, int(NOW) // 30 + 2)
