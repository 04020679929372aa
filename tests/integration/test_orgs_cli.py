"""``surge org create`` as a user runs it."""

from __future__ import annotations

import json

import psycopg

from tests.conftest import run_cli


def test_org_create_prints_both_keys_once_and_stores_only_hashes(database_url: str) -> None:
    out = json.loads(run_cli(database_url, "org", "create", "Giving Tree", "--json").stdout)
    assert out["name"] == "Giving Tree"
    assert out["secret_key"].startswith("sk_")
    assert out["publishable_key"].startswith("pk_")
    with psycopg.connect(database_url) as conn:
        hashes = [bytes(r[0]) for r in conn.execute("select secret_hash from api_keys")]
    secret = out["secret_key"].split("_", 2)[2]
    assert all(secret.encode() not in h for h in hashes)
    assert all(len(h) == 32 for h in hashes)


def test_org_create_human_output_warns_to_store_keys(database_url: str) -> None:
    out = run_cli(database_url, "org", "create", "Human").stdout
    assert "secret key:" in out
    assert "cannot be shown again" in out


def test_org_create_with_blank_name_is_one_line_error(database_url: str) -> None:
    proc = run_cli(database_url, "org", "create", "   ", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: name must be 1 to 200 characters"


def test_org_list_shows_created_orgs(database_url: str) -> None:
    run_cli(database_url, "org", "create", "Listed")
    assert "Listed" in run_cli(database_url, "org", "list").stdout
