"""What an import keeps of the rows it refuses (the bad-row report) and of its progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from surge.console.import_pages import progress_view
from surge.contacts import imports
from surge.contacts.imports import Progress, parse_batches, staged_record
from surge.contacts.schemas import Import


def test_refused_rows_keep_their_record_reason_and_row_number() -> None:
    data = b'Email,Name,City\nok@x.io,A,Paris\nbad,B,\xffRome\nshort@x.io\n"open,q\n'
    [batch] = list(parse_batches(iter([data[:20], data[20:]])))
    assert batch.header == ["Email", "Name", "City"]
    assert batch.bytes_read == len(data)
    assert [(r.row, r.record) for r in batch.rejects] == [
        (3, ["bad", "B", "\ufffdRome"]),  # undecodable bytes become U+FFFD, storable
        (4, ["short@x.io"]),
        (5, ["open,q\n"]),
    ]
    assert batch.rejects[1].reason == "expected 3 columns, found 1"


def test_only_the_first_refused_rows_keep_their_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "MAX_REJECTS", 3)
    data = b"email\n" + b"".join(b"nope%d\n" % i for i in range(10))
    batches = list(parse_batches(iter([data]), batch_rows=4))
    assert sum(b.bad for b in batches) == 10  # all counted
    assert [r.row for b in batches for r in b.rejects] == [2, 3, 4]
    progress = Progress()
    for batch in batches:
        progress.add(batch)
    assert progress.rejects_kept == 3 and progress.failed == 10


def test_a_blocked_rows_record_is_rebuilt_in_the_files_column_order() -> None:
    staged = {"email": "a@x.io", "first_name": "Ann", "last_name": None, "status": "subscribed"}
    staged["attributes"] = {"city": "Paris"}
    header = ["\ufeffCity", "EMAIL", "last_name", "First_Name", "Status", "unused"]
    assert staged_record(header, staged) == ["Paris", "a@x.io", "", "Ann", "subscribed", ""]


def _import(**changes: object) -> Import:
    started = datetime(2026, 1, 1, tzinfo=UTC)
    fields: dict[str, object] = {
        "id": 1,
        "status": "running",
        "list_id": None,
        "filename": "f.csv",
        "bytes_total": 1000,
        "rows_total": None,
        "rows_processed": 100,
        "rows_imported": 90,
        "rows_failed": 10,
        "errors": [],
        "error": None,
        "created_at": started,
        "started_at": started,
        "finished_at": None,
        "bytes_processed": 250,
    }
    fields.update(changes)
    return Import(**fields)  # type: ignore[arg-type]


def test_progress_is_the_share_of_the_file_read_with_an_estimate_and_time_left() -> None:
    imp = _import()
    view = progress_view(imp, now=imp.created_at + timedelta(seconds=10))
    assert view["percent"] == 25.0 and view["rows_estimate"] == 400
    assert view["rate"] == 10.0 and view["seconds_left"] == 30.0
    done = progress_view(_import(status="completed", rows_total=400, bytes_processed=1000))
    assert done["percent"] == 100.0 and done["finished"] and done["rows_estimate"] is None
    assert progress_view(_import(status="queued", bytes_processed=0))["percent"] == 0.0
