"""A new user's first commands: no warnings, no tracebacks, an embedded database that just works."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import SURGE, _with_db, surge_env


def _env_without_surge(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SURGE_")}
    env.pop("XDG_RUNTIME_DIR", None)  # as in a root shell, CI or a container
    env.update(extra)
    return env


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's 0700 tmp root: the embedded server may run as its own system user.
    base = Path(tempfile.mkdtemp(prefix="surge-first-use-"))
    yield base / "data"
    shutil.rmtree(base, ignore_errors=True)


def test_help_prints_no_warning_without_xdg_runtime_dir() -> None:
    proc = subprocess.run(
        [SURGE, "--help"], env=_env_without_surge(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stderr == ""


def test_org_create_on_a_fresh_data_dir_sets_up_the_embedded_database(data_dir: Path) -> None:
    env = _env_without_surge(SURGE_DATA_DIR=str(data_dir))
    created = subprocess.run(
        [SURGE, "org", "create", "First Charity"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    assert "secret key:" in created.stdout
    assert "Warning" not in created.stderr
    listed = subprocess.run(
        [SURGE, "org", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert "First Charity" in listed.stdout


def test_command_on_an_unmigrated_external_database_says_to_migrate(pg_admin_url: str) -> None:
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute("drop database if exists t_unmigrated with (force)")
        conn.execute("create database t_unmigrated")
    url = _with_db(pg_admin_url, "t_unmigrated")
    proc = subprocess.run(
        [SURGE, "org", "list"], env=surge_env(url), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "surge migrate" in proc.stderr
