"""The CSV import pipeline: stored chunks -> parsed, checked rows -> COPY -> one merge per batch.

Parsing is pure Python and the merge is PostgreSQL's work, so they overlap: a thread parses
the next batch while the event loop COPYs and merges the current one. Memory is bounded by
the batch size (a couple of batches in flight), never by the file's size.

An import uses exactly one pool connection, for reading its chunks and for writing: an
import that held one connection while waiting for another could, with others doing the
same, take the whole pool and wait forever (100 imports at once on a pool of 10 did).

Row numbers count the header as row 1, as a spreadsheet does.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import io
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from psycopg_pool import AsyncConnectionPool

from surge.contacts import service, store
from surge.contacts.schemas import MAX_NAME, STATUSES, RowError
from surge.fields import valid_email
from surge.threads import in_thread
from surge.webhooks.service import emit

T = TypeVar("T")

BATCH_ROWS = 50_000
#: Stored chunks (1 MiB each) read ahead of the parser, so that it keeps parsing while the
#: one connection merges a batch.
READ_AHEAD = 4
#: How many failed rows an import shows with their reasons (all are counted).
MAX_ERRORS = 100
#: How many failed rows an import keeps with their records, for the bad-row report
#: (``import_rejects``); of each record, at most ``MAX_REJECT_FIELDS`` fields of at most
#: ``MAX_REJECT_FIELD`` characters.
MAX_REJECTS = 10_000
MAX_REJECT_FIELDS = 200
MAX_REJECT_FIELD = 2_000
KNOWN = ("email", "first_name", "last_name", "status")
#: How an import is told that consent was collected again (API query and CLI flag).
RESUBSCRIBE = "resubscribe=true (surge import contacts --resubscribe)"
#: Seconds an import waits for its connection. It holds nothing while it waits, so waiting
#: is safe; the pool's default (30 s) would fail attempts of imports queued behind long ones
#: when a worker runs more imports than its pool has connections.
FIRST_CONNECTION_WAIT = 300.0

# Decoding with surrogateescape keeps undecodable bytes as lone surrogates, so one bad
# byte sequence fails its own row, not the file. NUL cannot be stored in PostgreSQL text.
_UNSTORABLE = re.compile("[\x00\udc80-\udcff]")
# A row without any of these needs no check for the above and no COPY escaping of its
# fields: the common case. (The attributes' JSON is escaped on its own: its keys come from
# the header, whose quotes and control characters become backslash escapes.)
_SUSPECT = re.compile('[\x00-\x1f\\\\"\udc80-\udcff]')
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"

Complete = Callable[[store.Conn], Awaitable[None]]


class ImportFailed(Exception):
    """The file as a whole cannot be imported (no header, no email column...)."""


@dataclass(frozen=True, slots=True)
class Reject:
    """A refused row for the bad-row report: its number, why, and its fields (None when
    the CSV could not be split into fields)."""

    row: int
    reason: str
    record: list[str] | None


@dataclass(slots=True)
class Batch:
    """Up to BATCH_ROWS checked rows, as COPY text, and the rows that failed."""

    #: COPY text of the good rows, set when the batch is full.
    payload: bytes = b""
    lines: list[str] = field(default_factory=list)
    #: Whether the file has a status column (the merge then reads stored statuses).
    with_status: bool = False
    good: int = 0
    bad: int = 0
    errors: list[RowError] = field(default_factory=list)
    #: The failed rows with their records (the parser keeps the first MAX_REJECTS).
    rejects: list[Reject] = field(default_factory=list)
    #: The header row's names, as written (every batch carries it).
    header: list[str] = field(default_factory=list)
    #: Bytes of the file read when the batch was sealed (the progress bar's figure).
    bytes_read: int = 0


# -- parsing (runs in a thread) -------------------------------------------------------------


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Lines with their endings, whatever the chunk boundaries (mid-line, mid-character)."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    carry = ""
    for chunk in chunks:
        text = carry + decoder.decode(chunk)
        lines = io.StringIO(text, newline="").readlines()
        # A last line without "\n" may go on in the next chunk (even after a "\r").
        carry = lines.pop() if lines and not lines[-1].endswith("\n") else ""
        yield from lines
    tail = carry + decoder.decode(b"", final=True)
    if tail:
        yield tail


def _copy_escape(value: str | None) -> str:
    return NULL if value is None else value.translate(_COPY_ESCAPES)


class RowChecker:
    """Turns one CSV record into a COPY line or a reason it cannot be imported."""

    def __init__(self, header: list[str]) -> None:
        names = [h.strip().lstrip("\ufeff").strip().lower() for h in header]
        named = [n for n in names if n]
        if len(set(named)) != len(named):
            dupes = sorted({n for n in named if named.count(n) > 1})
            raise ImportFailed(f"the header names a column twice: {', '.join(dupes)}")
        if "email" not in names:
            raise ImportFailed("the header row has no 'email' column")
        self.width = len(names)
        self.email = names.index("email")
        self.first = names.index("first_name") if "first_name" in names else None
        self.last = names.index("last_name") if "last_name" in names else None
        self.status = names.index("status") if "status" in names else None
        self.extra = [(n, i) for i, n in enumerate(names) if n and n not in KNOWN]
        for name, i in self.extra:
            if (bad := _UNSTORABLE.search(name)) is not None:
                what = "a NUL character" if bad[0] == "\x00" else "invalid UTF-8"
                raise ImportFailed(f"the name of column {i + 1} contains {what}")
        # A name that JSON or COPY must escape (a quote, a backslash, a control character)
        # makes every row's attributes need COPY escaping, whatever the row's cells hold.
        self.escape_names = any(_SUSPECT.search(name) for name, _ in self.extra)
        self.json = msgspec.json.Encoder()

    def check(self, row: int, fields: list[str]) -> str:
        """The COPY line of a good record; raises ValueError(reason) for a bad one."""
        if len(fields) != self.width:
            raise ValueError(f"expected {self.width} columns, found {len(fields)}")
        joined = "".join(fields)
        suspect = _SUSPECT.search(joined) is not None
        if suspect and (bad := _UNSTORABLE.search(joined)) is not None:
            raise ValueError("contains a NUL character" if bad[0] == "\x00" else "invalid UTF-8")
        email = fields[self.email].strip()
        if not email:
            raise ValueError("email is empty")
        if not valid_email(email):
            raise ValueError(f"invalid email address: {email[:100]!r}")
        first, last = self._name(fields, self.first), self._name(fields, self.last)
        status, attributes = self._status(fields), self._attributes(fields)
        if suspect or (attributes is not None and self.escape_names):
            values = (str(row), email, first, last, status, attributes)
            return "\t".join(map(_copy_escape, values)) + "\n"
        return (
            f"{row}\t{email}\t{first or NULL}\t{last or NULL}\t{status or NULL}"
            f"\t{attributes or NULL}\n"
        )

    def _name(self, fields: list[str], index: int | None) -> str | None:
        if index is None:
            return None
        value = fields[index].strip()
        if len(value) > MAX_NAME:
            raise ValueError(f"name longer than {MAX_NAME} characters")
        return value or None

    def _status(self, fields: list[str]) -> str | None:
        if self.status is None:
            return None
        value = fields[self.status].strip().lower()
        if value and value not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(sorted(STATUSES))}")
        return value or None

    def _attributes(self, fields: list[str]) -> str | None:
        attributes = {name: value for name, i in self.extra if (value := fields[i])}
        return self.json.encode(attributes).decode() if attributes else None


class _Counted:
    """The chunks, counting the bytes handed out (a chunk is counted once it is read)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.bytes += len(chunk)
            yield chunk


def parse_batches(chunks: Iterator[bytes], batch_rows: int = BATCH_ROWS) -> Iterator[Batch]:
    """Parse a CSV file given as byte chunks into batches of checked rows."""
    counted = _Counted(chunks)
    reader = csv.reader(_lines(iter(counted)), strict=False)
    checker: RowChecker | None = None
    header: list[str] = []
    batch, row, rejected = Batch(), 0, 0
    while True:
        row += 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if checker is None:  # skipping it would take the first record for the header
                raise ImportFailed(f"malformed CSV in the header row: {exc}") from None
            rejected += _fail(batch, row, f"malformed CSV: {exc}", None, rejected)
            continue
        if not fields:
            continue  # a blank line: counted as a row number, not as a record
        if checker is None:
            checker = RowChecker(fields)
            header = batch.header = [storable(name) for name in fields]
            batch.with_status = checker.status is not None
            continue
        try:
            batch.lines.append(checker.check(row, fields))
            batch.good += 1
        except ValueError as exc:
            rejected += _fail(batch, row, str(exc), fields, rejected)
        if batch.good + batch.bad >= batch_rows:
            yield _sealed(batch, counted.bytes)
            batch = Batch(with_status=checker.status is not None, header=header)
    if checker is None:
        raise ImportFailed("the file is empty: a header row with an 'email' column is needed")
    yield _sealed(batch, counted.bytes)


def _sealed(batch: Batch, bytes_read: int) -> Batch:
    batch.payload = "".join(batch.lines).encode()
    batch.lines = []
    batch.bytes_read = bytes_read
    return batch


def storable(value: str) -> str:
    """``value`` as PostgreSQL text can hold it: NULs and undecodable bytes become U+FFFD."""
    value = value[:MAX_REJECT_FIELD]
    return _UNSTORABLE.sub("\ufffd", value) if _SUSPECT.search(value) else value


def _fail(batch: Batch, row: int, reason: str, fields: list[str] | None, rejected: int) -> int:
    """Count a failed row; keep its record if fewer than MAX_REJECTS were; 1 if kept."""
    batch.bad += 1
    batch.errors.append(RowError(row=row, reason=reason))
    if rejected >= MAX_REJECTS:
        return 0
    record = None if fields is None else [storable(f) for f in fields[:MAX_REJECT_FIELDS]]
    batch.rejects.append(Reject(row, reason, record))
    return 1


# -- running one import ---------------------------------------------------------------------


@dataclass(slots=True)
class Progress:
    processed: int = 0
    imported: int = 0
    failed: int = 0
    status_kept: int = 0
    bytes_read: int = 0
    errors: list[RowError] = field(default_factory=list)
    #: Rejects kept so far, and those of the last batch, still to be stored.
    rejects_kept: int = 0
    new_rejects: list[Reject] = field(default_factory=list)

    def add(
        self,
        batch: Batch,
        merged: store.StagedMerge | None = None,
        blocked_records: dict[int, list[str]] | None = None,
    ) -> None:
        """Count a merged batch; its blocked rows (addresses deleted, merged away or erased
        before) fail with the reason (``blocked_records``: their records, by row)."""
        blocked = merged.blocked if merged is not None else []
        self.processed += batch.good + batch.bad
        self.imported += batch.good - len(blocked)
        self.failed += batch.bad + len(blocked)
        self.status_kept += merged.kept if merged is not None else 0
        self.bytes_read = batch.bytes_read
        errors, rejects = batch.errors, batch.rejects
        if blocked:
            records = blocked_records or {}
            refused = [RowError(b.ord, service.blocked_reason(b, RESUBSCRIBE)) for b in blocked]
            errors = sorted([*errors, *refused], key=lambda e: e.row)
            more = [Reject(e.row, e.reason, records.get(e.row)) for e in refused]
            rejects = sorted([*rejects, *more], key=lambda r: r.row)
        self.errors.extend(errors[: MAX_ERRORS - len(self.errors)])
        self.new_rejects = rejects[: max(MAX_REJECTS - self.rejects_kept, 0)]
        self.rejects_kept += len(self.new_rejects)

    def errors_json(self) -> str:
        return msgspec.json.encode(self.errors).decode()


def staged_record(header: list[str], staged: dict[str, Any]) -> list[str]:
    """A merged row's fields in the file's column order, from what was staged (trimmed,
    status lower-cased: as imported)."""
    attributes = staged.get("attributes") or {}
    fields = []
    for name in header:
        key = name.strip().lstrip("\ufeff").strip().lower()
        if key in ("email", "first_name", "last_name", "status"):
            value = staged.get(key)
        else:
            value = attributes.get(key)
        fields.append("" if value is None else str(value))
    return fields


async def process_import(
    pool: AsyncConnectionPool, org: int, import_id: int, *, complete: Complete | None = None
) -> str | None:
    """Run one import to the end; returns its final status (None: nothing left to run).

    A re-run (after a crash) starts again from the first row: every write is an upsert or
    an "on conflict do nothing", so nothing is doubled, and progress and errors are reset.
    Errors other than a bad file propagate so that the job is retried.

    The import takes one connection, waited for while holding none, and does everything on
    it: reading the chunks, the merges, the progress, the final status with its webhook and
    the job's completion (``complete``). So imports filling a small pool queue for it; they
    never wait on each other.
    """
    async with pool.connection(timeout=FIRST_CONNECTION_WAIT) as conn:
        started = await store.start_import(conn, org, import_id)
        if started is None:
            return None  # finished, or not this organisation's: a duplicate job
        # Chunk reads, merges and progress updates take turns on the connection: a chunk
        # read must not land inside a merge's transaction.
        turn = asyncio.Lock()
        progress = Progress()
        try:
            async with (
                _read_ahead(conn, turn, org, import_id, started.chunks_total) as source,
                aclosing(in_thread(parse_batches(source))) as batches,
            ):
                async for batch in batches:
                    async with turn:
                        if progress.processed == 0:
                            await store.set_header(conn, org, import_id, batch.header)
                        merged, records = await _merge(conn, org, started, batch)
                        progress.add(batch, merged, records)
                        await _record(conn, org, import_id, progress)
        except ImportFailed as exc:
            await _finish(conn, org, import_id, "failed", None, str(exc), complete)
            return "failed"
        await _finish(conn, org, import_id, "completed", progress.processed, None, complete)
        return "completed"


async def mark_failed(pool: AsyncConnectionPool, org: int, import_id: int, reason: str) -> None:
    """Give up on an import (its job ran out of attempts); announces ``import.failed``."""
    async with pool.connection(timeout=FIRST_CONNECTION_WAIT) as conn:
        await _finish(conn, org, import_id, "failed", None, reason, None)


async def _record(conn: store.Conn, org: int, import_id: int, progress: Progress) -> None:
    """The progress after a batch and the rows it refused: one transaction."""
    async with conn.transaction():
        await store.record_progress(
            conn,
            org,
            import_id,
            progress.processed,
            progress.imported,
            progress.failed,
            progress.errors_json(),
            progress.status_kept,
            progress.bytes_read,
        )
        if progress.new_rejects:
            await store.insert_rejects(
                conn, org, import_id, [(r.row, r.reason, r.record) for r in progress.new_rejects]
            )


async def _merge(
    conn: store.Conn, org: int, started: store.ImportToRun, batch: Batch
) -> tuple[store.StagedMerge | None, dict[int, list[str]]]:
    """Merge a batch; with the records of its rows blocked by a tombstone (rare)."""
    if not batch.payload:
        return None, {}
    async with conn.transaction():
        # A temporary table per transaction, not per session: safe behind PgBouncer.
        await conn.execute(store.STAGING_TABLE)
        async with conn.cursor().copy(store.STAGING_COPY) as copy:
            await copy.write(batch.payload)
        merged = await store.merge_staged(
            conn, org, started.list_id, batch.with_status, started.resubscribe
        )
        records = {}
        if merged.blocked:
            staged = await store.staged_rows(conn, [b.ord for b in merged.blocked])
            records = {row: staged_record(batch.header, s) for row, s in staged.items()}
        return merged, records


async def _finish(
    conn: store.Conn,
    org: int,
    import_id: int,
    status: str,
    rows_total: int | None,
    error: str | None,
    complete: Complete | None,
) -> None:
    """The final status, its webhook (into the outbox) and the job's completion: one
    transaction, so subscribers hear of every finished import, and only of those."""
    async with conn.transaction():
        await store.finish_import(conn, org, import_id, status, rows_total, error)
        final = await service.get_import(conn, org, import_id)
        await emit(conn, org, f"import.{status}", msgspec.to_builtins(final))
        if complete is not None:
            await complete(conn)


@asynccontextmanager
async def _read_ahead(
    conn: store.Conn, turn: asyncio.Lock, org: int, import_id: int, count: int
) -> AsyncIterator[Iterator[bytes]]:
    """The stored chunks in order, as an iterator for the parser thread.

    A task reads them on the event loop, up to ``READ_AHEAD`` ahead of the parser and only
    on its ``turn``, so the parser keeps going while the connection merges a batch.
    """
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[bytes | Exception] = asyncio.Queue(READ_AHEAD)

    async def read() -> None:
        try:
            for seq in range(count):
                async with turn:
                    data = await store.read_chunk(conn, org, import_id, seq)
                await ready.put(data)
        except Exception as exc:  # raised in the parser, which hands it to the import
            await ready.put(exc)

    def chunks() -> Iterator[bytes]:
        for _ in range(count):
            item = asyncio.run_coroutine_threadsafe(ready.get(), loop).result()
            if isinstance(item, Exception):
                raise item
            yield item

    reader = asyncio.create_task(read())
    try:
        yield chunks()
    finally:
        # Cancelled on its turn, so never in the middle of a query on the connection.
        async with turn:
            reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
