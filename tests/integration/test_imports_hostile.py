"""Hostile header names and cells through the real import path: API → worker → database.

Extra columns become contact attributes, so their names end up as JSON keys inside COPY
text: a quote, a backslash or a control character in a name once failed every row (and the
import, after 5 attempts), and a NUL was stored corrupted.
"""

from __future__ import annotations

import csv
import io
import itertools
import time
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Process, create_org

KNOWN = ("email", "first_name", "last_name", "status")
_ids = itertools.count()


@pytest.fixture(scope="module")
def org(database_url: str) -> dict[str, str]:
    return create_org(database_url, "Hostile Imports Org")


@pytest.fixture(scope="module")
def client(api: str, org: dict[str, str], worker: Process) -> httpx.Client:
    return httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=30
    )


def to_csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out).writerows(rows)  # "\r\n" line ends: a lone "\r" in a cell gets quoted
    return out.getvalue().encode()


def run_import(client: httpx.Client, data: bytes, timeout: float = 30) -> dict[str, Any]:
    accepted = client.post("/v1/imports", content=data, headers={"Content-Type": "text/csv"})
    assert accepted.status_code == 202, accepted.text
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(f"/v1/imports/{accepted.json()['id']}").json()
        if body["status"] in ("completed", "failed"):
            return body
        assert time.monotonic() < deadline, f"import did not finish: {body}"
        time.sleep(0.05)


def attempts(database_url: str, import_id: int) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select attempts from imports where id = %s", [import_id]).fetchone()
    assert row is not None
    return int(row[0])


def stored(database_url: str, org_id: str, emails: list[str]) -> dict[str, tuple[Any, Any]]:
    """email → (first_name, attributes) of these contacts, read back from the database."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select email, first_name, attributes from contacts"
            " where organization_id = %s and email = any(%s)",
            [int(org_id), emails],
        ).fetchall()
    return {email: (first, attributes) for email, first, attributes in rows}


@pytest.mark.parametrize(
    "name",
    ['say "hi"', "back\\slash", "tab\there", "new\nline", "cr\rname", "\\N", "ünï✓ 名前"],
)
def test_an_extra_column_named_with_quotes_backslashes_or_control_characters_imports(
    client: httpx.Client, database_url: str, org: dict[str, str], name: str
) -> None:
    email = f"named{next(_ids)}@hostile.io"
    done = run_import(client, to_csv([["email", name], [email, "value"]]))
    assert (done["status"], done["rows_imported"], done["rows_failed"]) == ("completed", 1, 0)
    assert attempts(database_url, done["id"]) == 1, "imported on the first attempt"
    assert stored(database_url, org["id"], [email]) == {email: (None, {normalised(name): "value"})}


def test_a_nul_in_a_column_name_fails_the_import_at_once_with_a_reason(
    client: httpx.Client, database_url: str
) -> None:
    done = run_import(client, b"email,plan\x00x\nnul@hostile.io,gold\n")
    assert done["status"] == "failed"
    assert done["error"] == "the name of column 2 contains a NUL character"
    assert attempts(database_url, done["id"]) == 1, "a bad file is not retried"


def test_a_nul_in_a_cell_fails_only_its_row(
    client: httpx.Client, database_url: str, org: dict[str, str]
) -> None:
    done = run_import(client, b"email,plan\ncell0@hostile.io,go\x00ld\ncell1@hostile.io,gold\n")
    assert (done["status"], done["rows_imported"], done["rows_failed"]) == ("completed", 1, 1)
    assert done["errors"] == [{"row": 2, "reason": "contains a NUL character"}]
    got = stored(database_url, org["id"], ["cell0@hostile.io", "cell1@hostile.io"])
    assert got == {"cell1@hostile.io": (None, {"plan": "gold"})}


# Characters that COPY, JSON or CSV treat specially, plus NUL and some non-ASCII.
HOSTILE = st.text(
    st.sampled_from(list("\"\\\t\n\r\x00\x01\x1f,; '{}[]:Nn\\u") + ["é", "ß", "İ", "名", "😀"])
    | st.characters(codec="utf-8", exclude_categories=["Cs"]),
    max_size=12,
)


def normalised(name: str) -> str:
    """The attribute key a header name becomes (as the importer reads the header)."""
    return name.strip().lstrip("\ufeff").strip().lower()


@st.composite
def files(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """(extra column names, [(first_name, extra cells)]) with usable, distinct names."""
    names = draw(
        st.lists(
            HOSTILE.filter(lambda n: normalised(n) not in ("", *KNOWN)),
            min_size=1,
            max_size=4,
            unique_by=normalised,
        )
    )
    rows = draw(
        st.lists(
            st.tuples(HOSTILE, st.lists(HOSTILE, min_size=len(names), max_size=len(names))),
            min_size=1,
            max_size=5,
        )
    )
    return names, rows


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(files())
def test_hostile_header_names_and_cells_are_imported_exactly_or_refused_clearly(
    client: httpx.Client,
    database_url: str,
    org: dict[str, str],
    file: tuple[list[str], list[tuple[str, list[str]]]],
) -> None:
    names, rows = file
    batch = next(_ids)
    emails = [f"h{batch}x{i}@hostile.io" for i in range(len(rows))]
    data = to_csv(
        [["email", "first_name", *names]]
        + [[email, first, *cells] for email, (first, cells) in zip(emails, rows, strict=True)]
    )
    done = run_import(client, data)
    assert attempts(database_url, done["id"]) == 1, "never retried: no attempt may fail"

    if any("\x00" in name for name in names):
        column = next(i for i, n in enumerate(names) if "\x00" in n) + 3
        assert done["status"] == "failed"
        assert done["error"] == f"the name of column {column} contains a NUL character"
        assert stored(database_url, org["id"], emails) == {}
        return

    expected: dict[str, tuple[Any, Any]] = {}
    refused: list[dict[str, Any]] = []
    for row, (email, (first, cells)) in enumerate(zip(emails, rows, strict=True), start=2):
        if any("\x00" in value for value in (first, *cells)):
            refused.append({"row": row, "reason": "contains a NUL character"})
            continue
        attributes = {normalised(n): v for n, v in zip(names, cells, strict=True) if v}
        expected[email] = (first.strip() or None, attributes)
    assert done["status"] == "completed", done
    assert done["errors"] == refused
    assert (done["rows_imported"], done["rows_failed"]) == (len(expected), len(refused))
    assert stored(database_url, org["id"], emails) == expected
