"""Which database a process uses: ``SURGE_DATABASE_URL``, or the embedded server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from surge.config import Settings
from surge.db.embedded import EmbeddedPostgres


def embedded_server(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(settings.data_dir / "pg", port=settings.embedded_pg_port)


@contextmanager
def database(settings: Settings) -> Iterator[str]:
    """Yield a database URL for this process.

    With ``SURGE_DATABASE_URL`` set, that is all. Otherwise the embedded server in the
    data dir is used; if this call had to start it, it stops it again on the way out
    (``surge up`` starts it once and hands the URL to its children instead).
    """
    if settings.database_url:
        yield settings.database_url
        return
    server = embedded_server(settings)
    was_running = server.initialised() and server.running()
    server.start()
    try:
        yield server.url
    finally:
        if not was_running:
            server.stop()
