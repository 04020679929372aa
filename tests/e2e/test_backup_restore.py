"""``surge backup`` and ``surge restore`` as an operator runs them, against real databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import _with_db, run_cli


def org_names(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("select name from organizations order by id")]


@pytest.fixture
def empty_database(pg_admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "t_restore_" + request.node.name[:30].lower()
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    yield _with_db(pg_admin_url, name)


@pytest.fixture(scope="module")
def backup_file(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_cli(database_url, "org", "create", "Before the backup")
    path = tmp_path_factory.mktemp("backup") / "surge.dump"
    out = run_cli(database_url, "backup", str(path)).stdout
    assert "backed up schema" in out and path.is_file()
    assert not path.with_name("surge.dump.partial").exists()
    return path


def test_a_backup_restores_into_an_empty_database(backup_file: Path, empty_database: str) -> None:
    out = run_cli(empty_database, "restore", str(backup_file)).stdout
    assert "restored" in out
    assert org_names(empty_database) == ["Before the backup"]
    # The restored database is a working Surge database: keys, migrations and all.
    org = json.loads(run_cli(empty_database, "org", "create", "After", "--json").stdout)
    assert org["id"] == 2
    assert "up to date" in run_cli(empty_database, "migrate").stdout


def test_restore_refuses_a_database_with_data_unless_told_to_replace(
    backup_file: Path, database_url: str
) -> None:
    run_cli(database_url, "org", "create", "After the backup")
    refused = run_cli(database_url, "restore", str(backup_file), check=False)
    assert refused.returncode == 1
    assert "--replace" in refused.stderr and "Traceback" not in refused.stderr
    assert org_names(database_url)[-1] == "After the backup"

    run_cli(database_url, "restore", str(backup_file), "--replace")
    assert org_names(database_url) == ["Before the backup"]


def test_a_truncated_backup_changes_nothing(
    backup_file: Path, database_url: str, tmp_path: Path
) -> None:
    run_cli(database_url, "org", "create", "Still here")
    before = org_names(database_url)
    truncated = tmp_path / "truncated.dump"
    data = backup_file.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    failed = run_cli(database_url, "restore", str(truncated), "--replace", check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert org_names(database_url) == before


@pytest.mark.parametrize("content", [b"", b"not a backup at all\n", b"PGDMP" + b"\0" * 64])
def test_a_file_that_is_not_a_backup_is_refused_clearly(
    content: bytes, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "x.dump"
    path.write_bytes(content)
    failed = run_cli(database_url, "restore", str(path), "--replace", check=False)
    assert failed.returncode == 1
    assert "not a Surge backup" in failed.stderr and "Traceback" not in failed.stderr


def test_a_backup_from_a_newer_surge_is_refused(
    database_url: str, empty_database: str, tmp_path: Path
) -> None:
    newer = tmp_path / "newer.dump"
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("create table schema_migrations (version int primary key, name text)")
        conn.execute("insert into schema_migrations values (9999, '9999_future')")
    run_cli(empty_database, "backup", str(newer))
    failed = run_cli(database_url, "restore", str(newer), "--replace", check=False)
    assert failed.returncode == 1 and "newer Surge" in failed.stderr
