"""Migrations: idempotent, and safe when several processes run them at once."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from surge.db.migrate import available
from tests.conftest import SURGE, run_cli, surge_env


@pytest.fixture
def empty_database(pg_admin_url: str) -> str:
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute("drop database if exists migrate_test with (force)")
        conn.execute("create database migrate_test")
    return pg_admin_url.rsplit("/", 1)[0] + "/migrate_test"


def applied(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("select version from schema_migrations order by 1")]


def test_migrate_applies_every_migration_once(empty_database: str) -> None:
    first = run_cli(empty_database, "migrate")
    assert "applied 0001_organizations" in first.stdout
    second = run_cli(empty_database, "migrate")
    assert second.stdout.strip() == "database is up to date"
    assert applied(empty_database) == [m.version for m in available()]


def test_concurrent_migrations_take_turns(empty_database: str) -> None:
    procs = [
        subprocess.Popen(
            [SURGE, "migrate"],
            env=surge_env(empty_database),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    applied_lines = [line for out, _ in outputs for line in out.splitlines() if "applied" in line]
    # Each migration was applied by exactly one of the four processes.
    assert len(applied_lines) == len(available())
    assert applied(empty_database) == [m.version for m in available()]


def test_unreachable_database_is_one_line_and_nonzero() -> None:
    proc = run_cli("postgresql://nobody@127.0.0.1:1/none", "migrate", check=False)
    assert proc.returncode != 0
    assert proc.stderr.startswith("Error: cannot reach the database")
    assert "Traceback" not in proc.stderr
