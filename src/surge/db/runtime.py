"""Which database a process uses: ``SURGE_DATABASE_URL``, or the embedded server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from surge.config import Settings
from surge.db.embedded import EmbeddedPostgres
from surge.db.migrate import migrate_url


def embedded_server(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.data_dir / "pg", port=settings.embedded_pg_port)


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """Yield a database URL for this process.

    With ``SURGE_DATABASE_URL`` set, that is all: an external cluster is migrated by its
    operator (``surge migrate``), on their schedule. Otherwise the embedded server in the
    data dir is used and brought up to date, since Surge owns it and a first command on a
    fresh machine (``surge org create``) must just work; if this call had to start the
    server, it stops it again on the way out (``surge up`` starts it once and hands the URL
    to its children instead).
    """
    if settings.database_url:
        yield settings.database_url
        return
    server = embedded_server(settings)
    was_running = server.initialised() and server.running()
    server.start()
    try:
        # Under the migration lock and idempotent: racing processes take turns, and a
        # server left running by an older version is brought up to date too.
        asyncio.run(migrate_url(server.url))
        yield server.url
    finally:
        if not was_running:
            server.stop()
