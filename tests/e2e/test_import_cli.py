"""``surge import contacts FILE --org ID [--list ID]``: the real CLI, a real worker, a real DB."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.conftest import Process, create_org, run_cli


@pytest.fixture(scope="module")
def org_id(database_url: str, worker: Process) -> str:
    return str(create_org(database_url, "CLI Org")["id"])


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "contacts.csv"
    path.write_text(text)
    return str(path)


def test_import_follows_progress_and_prints_a_summary(
    database_url: str, org_id: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "insert into lists (organization_id, name) values (%s, 'cli') returning id", [org_id]
        ).fetchone()
    assert row is not None
    rows = "".join(f"cli{i}@x.io,N{i}\n" for i in range(2000))
    path = write(tmp_path, "email,first_name\n" + rows + "broken,row\n")
    result = run_cli(
        database_url, "import", "contacts", path, "--org", org_id, "--list", str(row[0])
    )
    out = result.stdout
    assert "queued" in out.splitlines()[0]
    assert "completed: 2001 rows, 2000 imported, 1 failed" in out
    assert "row 2002: invalid email address: 'broken'" in out
    with psycopg.connect(database_url) as conn:
        members = conn.execute(
            "select count(*) from list_members where list_id = %s", [row[0]]
        ).fetchone()
    assert members == (2000,)


def test_no_wait_only_queues(database_url: str, org_id: str, tmp_path: Path) -> None:
    path = write(tmp_path, "email\nnowait@x.io\n")
    result = run_cli(database_url, "import", "contacts", path, "--org", org_id, "--no-wait")
    assert result.stdout.startswith("import ")
    assert "queued" in result.stdout
    assert "completed" not in result.stdout


def test_a_failed_import_exits_non_zero(database_url: str, org_id: str, tmp_path: Path) -> None:
    path = write(tmp_path, "name\nx\n")
    result = run_cli(database_url, "import", "contacts", path, "--org", org_id, check=False)
    assert result.returncode != 0
    assert "failed: the header row has no 'email' column" in result.stderr


def test_unknown_org_is_one_line_on_stderr(database_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "email\na@x.io\n")
    result = run_cli(database_url, "import", "contacts", path, "--org", "424242", check=False)
    assert result.returncode != 0
    assert result.stderr.strip() == "Error: organization 424242 not found"


def test_missing_file_is_a_clear_error(database_url: str, org_id: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.csv")
    result = run_cli(database_url, "import", "contacts", missing, "--org", org_id, check=False)
    assert result.returncode != 0
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
