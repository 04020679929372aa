"""``surge export KIND``: the real CLI, as a subprocess, against the module's database."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import psycopg
import pytest

from tests.conftest import create_org, run_cli


@pytest.fixture(scope="module")
def org(database_url: str) -> int:
    org_id = int(create_org(database_url, "CLI Exports")["id"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into contacts (organization_id, email, first_name, status, attributes)"
            " select %s, 'cli' || i || '@x.io', case when i = 3 then '=1+1' else 'N' || i end,"
            " case when i %% 2 = 0 then 'unsubscribed' else 'subscribed' end,"
            " jsonb_build_object('city', 'C' || i)"
            " from generate_series(1, 10) as i",
            [org_id],
        )
        other = int(create_org(database_url, "CLI Other")["id"])
        conn.execute(
            "insert into contacts (organization_id, email) values (%s, 'theirs@x.io')", [other]
        )
    return org_id


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_contacts_go_to_stdout_with_formulas_neutralised(database_url: str, org: int) -> None:
    done = run_cli(database_url, "export", "contacts", "--org", str(org))
    rows = parse(done.stdout)
    assert len(rows) == 10 and "theirs@x.io" not in done.stdout
    assert rows[2]["first_name"] == "'=1+1"
    assert "exported 10 contacts rows to stdout" in done.stderr
    raw = parse(run_cli(database_url, "export", "contacts", "--org", str(org), "--raw").stdout)
    assert raw[2]["first_name"] == "=1+1"


def test_a_gz_file_is_written_whole_with_filters_and_columns(
    database_url: str, org: int, tmp_path: Path
) -> None:
    target = tmp_path / "subscribed.csv.gz"
    run_cli(
        database_url,
        "export",
        "contacts",
        "--org",
        str(org),
        "--status",
        "subscribed",
        "--attribute",
        "city",
        "-o",
        str(target),
    )
    rows = parse(gzip.decompress(target.read_bytes()).decode())
    assert [r["city"] for r in rows] == ["C1", "C3", "C5", "C7", "C9"]
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left beside it
    assert target.stat().st_mode & 0o077 == 0  # personal data: readable by its owner only


def test_mistakes_exit_non_zero_naming_the_option_and_leave_no_file(
    database_url: str, org: int, tmp_path: Path
) -> None:
    target = tmp_path / "out.csv"
    bad = run_cli(
        database_url, "export", "contacts", "--org", str(org), "--status", "sent", check=False
    )
    assert bad.returncode == 2 and "--status" in bad.stderr
    need = run_cli(database_url, "export", "deliveries", "--org", str(org), check=False)
    assert need.returncode == 2 and "--message" in need.stderr
    when = run_cli(
        database_url, "export", "events", "--org", str(org), "--since", "yesterday", check=False
    )
    assert when.returncode == 2 and "ISO 8601" in when.stderr
    nobody = run_cli(database_url, "export", "contacts", "--org", "987654", check=False)
    assert nobody.returncode == 1 and "organization 987654 not found" in nobody.stderr
    no_list = run_cli(
        database_url,
        "export",
        "contacts",
        "--org",
        str(org),
        "--list",
        "987654",
        "-o",
        str(target),
        check=False,
    )
    assert no_list.returncode == 1 and "--list" in no_list.stderr
    assert "Traceback" not in no_list.stderr + nobody.stderr
    assert list(tmp_path.iterdir()) == []


def test_events_and_donations_export_with_time_ranges(database_url: str, org: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into events (organization_id, type, payload, occurred_at)"
            " values (%s, 'Signed Up', '{\"plan\": \"pro\"}', now()),"
            " (%s, 'Page Viewed', '{}', now())",
            [org, org],
        )
    done = run_cli(
        database_url,
        "export",
        "events",
        "--org",
        str(org),
        "--type",
        "Signed Up",
        "--since",
        "2000-01-01",
    )
    rows = parse(done.stdout)
    assert [r["type"] for r in rows] == ["Signed Up"] and rows[0]["payload"] == '{"plan": "pro"}'
    empty = run_cli(
        database_url, "export", "donations", "--org", str(org), "--until", "2000-01-01T00:00Z"
    )
    assert empty.stdout.splitlines()[0].startswith("id,campaign_id,amount_minor")
    assert len(empty.stdout.splitlines()) == 1
