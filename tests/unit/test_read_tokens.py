"""Read-your-writes tokens and the replica's lag, without a database (db/replica.py)."""

from __future__ import annotations

import math
import time
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st

from surge.db.replica import Replica, replica_kwargs


def replica(key: bytes = b"k" * 32, url: str | None = "postgresql://r/surge") -> Replica:
    # The primary pool is not touched by what these tests call.
    return Replica(cast(Any, None), url, key=key, max_lag=10)


def test_a_token_gives_back_its_position_to_its_organisation_only() -> None:
    r = replica()
    token = r.token(7, 0x3009DD8)
    assert r.token_position(token, 7) == 0x3009DD8
    assert r.token_position(token, 8) is None
    assert replica(key=b"x" * 32).token_position(token, 7) is None


def test_a_token_expires_with_the_lag_the_replica_may_have() -> None:
    r = replica()
    expired = f"ff.7.{int(time.time()) - 1}"
    assert r.token_position(f"{expired}.{r._mac(expired)}", 7) is None
    live = f"ff.7.{int(time.time()) + 5}"
    assert r.token_position(f"{live}.{r._mac(live)}", 7) == 255
    assert r.token_ttl >= r.max_lag


@given(st.text(max_size=120))
def test_any_other_text_is_no_token(text: str) -> None:
    assert replica().token_position(text, 7) is None


def test_the_last_write_of_an_organisation_in_this_process_is_remembered() -> None:
    r = replica()
    r._marks[7] = (100, time.monotonic() + 5)
    assert r.wanted(7, None) == 100
    assert r.wanted(7, 250) == 250
    assert r.wanted(8, None) is None
    r._marks[7] = (100, time.monotonic() - 1)
    assert r.wanted(7, None) is None and 7 not in r._marks


def test_lag_is_the_age_of_the_newest_primary_position_the_replica_has_replayed() -> None:
    r = replica()
    r._history.extend([(100.0, 10), (101.0, 20), (102.0, 30)])
    assert r._lag_at(30, 102.5) == 0.5
    assert r._lag_at(25, 102.5) == 1.5
    assert r._lag_at(5, 102.5) == math.inf  # behind everything noted: not known to be close
    assert r._lag_at(None, 102.5) == 0.0  # not a standby: always current


def test_replica_connections_time_out_and_say_who_they_are_unless_the_url_says() -> None:
    options = replica_kwargs("postgresql://u@r:5432/surge")
    assert options["connect_timeout"] == 2 and options["application_name"] == "surge-reads"
    assert options["prepare_threshold"] is None
    mine = replica_kwargs("postgresql://u@r/surge?connect_timeout=9&application_name=x")
    assert "connect_timeout" not in mine and "application_name" not in mine


def test_without_a_url_the_replica_is_off() -> None:
    assert not replica(url=None).enabled
