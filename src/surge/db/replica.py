"""Reporting reads on a streaming replica (``SURGE_DATABASE_REPLICA_URL``), read-your-writes.

``Replica.read(org, after, fn, *args)`` runs ``fn(conn, *args)`` on the replica when the
replica may serve it, else on the primary; with no replica configured it is simply the
primary. The rules (docs/scaling.md, "Read replicas"):

- **Usable.** The replica serves reads while the last probe reached it and its lag is at
  most ``max_lag`` seconds. A probe runs every ``PROBE_INTERVAL``: it notes the primary's
  WAL insert position, then asks the replica how far it has replayed. The lag is the age of
  the newest noted primary position the replica has replayed: unlike ``now() -
  pg_last_xact_replay_timestamp()`` it stays right on an idle primary and on a replica
  whose WAL receiver has stopped.
- **Read-your-writes.** After a write, the API calls ``note_write`` (one query on the
  primary: ``pg_current_wal_insert_lsn()``, past the write's commit record even with
  ``synchronous_commit = off``) and hands that position to the client in a signed token
  (``token``); this process also remembers it per organisation. A read passes the newest of
  the two as ``after``, and goes to the replica only once the replica has replayed that far
  (checked on the replica connection when the last probe is not enough), else to the
  primary. A token lasts ``max_lag`` (+ a probe's margin): past that any usable replica has
  replayed the write anyway.
- **Failure.** A probe (on a connection of its own) that cannot reach the replica within
  ``PROBE_TIMEOUT`` (connections are opened with ``CONNECT_TIMEOUT`` and TCP timeouts) marks
  it down and drops its pool: every read goes straight to the primary. The probe keeps
  trying each interval and opens a fresh pool as soon as the replica answers. A read whose
  replica connection breaks, or that the replica cancels (a recovery conflict), or that
  finds no free replica connection within ``READ_WAIT``, runs again on the primary: no read
  fails because of the replica.

Only reads that may be a moment stale go through here (the replica is never ahead of the
primary). A read that decides a write, and every write, uses the primary pool directly.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit

import psycopg
from prometheus_client import Gauge
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from surge.db.pool import RECONNECT_TIMEOUT, connect_kwargs
from surge.observability.metrics import REGISTRY

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
Conn = AsyncConnection[Any]

#: Seconds between probes of the replica (and of the primary's WAL position).
PROBE_INTERVAL = 1.0
#: Seconds between probes while starting, until the replica is up.
QUICK_PROBE_INTERVAL = 0.1
#: Seconds a probe may take before the replica counts as down.
PROBE_TIMEOUT = 2.0
#: Seconds to open a connection to the replica (libpq ``connect_timeout``; whole seconds).
CONNECT_TIMEOUT = 2
#: Milliseconds unacknowledged data may wait before the connection counts as dead (a
#: replica gone without a TCP reset, e.g. a lost network): ``tcp_user_timeout``.
TCP_USER_TIMEOUT_MS = 5000
#: Seconds a read waits for a free replica connection before it uses the primary.
READ_WAIT = 0.5
#: Organisations whose last write this process remembers (the oldest are forgotten).
MAX_MARKS = 10_000
#: Name the replica's connections carry in ``pg_stat_activity`` (unless the URL sets one).
APPLICATION_NAME = "surge-reads"

#: The primary's WAL insert position, as a number of bytes.
INSERT_LSN = "select (pg_current_wal_insert_lsn() - '0/0')::bigint"
#: How far the replica has replayed (null on a server that is not a standby).
REPLAY_LSN = "select (pg_last_wal_replay_lsn() - '0/0')::bigint"

_TOKEN_MAC_BYTES = 16

replica_lag = Gauge(
    "surge_db_replica_lag_seconds",
    "How far the read replica is behind the primary, as this process last probed it"
    " (+Inf: unreachable; past SURGE_DATABASE_REPLICA_MAX_LAG reads go to the primary).",
    ["replica"],
    registry=REGISTRY,
)
#: What ``_on_replica`` returns when the read must go to the primary instead.
_USE_PRIMARY = object()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def replica_kwargs(url: str) -> dict[str, Any]:
    """Connection options of the replica pool: bounded connects and a recognisable name."""
    given = conninfo_to_dict(url)
    kwargs = connect_kwargs()
    defaults = {
        "connect_timeout": CONNECT_TIMEOUT,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
        "application_name": APPLICATION_NAME,
    }
    kwargs.update({k: v for k, v in defaults.items() if k not in given})
    return kwargs


def _where(url: str) -> str:
    """host:port of a URL, for logs and the lag metric (never the password)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


class Replica:
    """The replica pool beside the primary one, its health, and which read goes where.

    Made by ``Resources`` without I/O; ``start()`` opens it (the API at start-up, a worker on
    first use) and ``aclose()`` closes it. Without a URL it is off: every read goes to the
    primary and nothing else happens.
    """

    def __init__(
        self,
        primary: AsyncConnectionPool,
        url: str | None,
        *,
        key: bytes,
        max_lag: float = 10.0,
        pool_size: int = 10,
    ) -> None:
        self.primary = primary
        self.url = url
        self.max_lag = max_lag
        self.pool_size = pool_size
        #: How long a write's token and this process's mark last.
        self.token_ttl = max_lag + 2 * PROBE_INTERVAL
        self._key = key
        self._pool: AsyncConnectionPool | None = None
        self._probe_conn: Conn | None = None
        self._closing: list[AsyncConnectionPool] = []
        #: Replay position at the last probe or check (None: not a standby: always current).
        self._replayed: int | None = None
        self._lag = math.inf
        #: (monotonic time, primary insert position) of recent probes, oldest first.
        self._history: collections.deque[tuple[float, int]] = collections.deque(
            maxlen=int(max_lag / PROBE_INTERVAL) + 5
        )
        self._marks: dict[int, tuple[int, float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._metric = replica_lag.labels(_where(url)) if url else None

    # -- state -------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """A replica URL is configured."""
        return self.url is not None

    @property
    def up(self) -> bool:
        """The replica answered the last probe and lags at most ``max_lag`` seconds."""
        return self._pool is not None and self._lag <= self.max_lag

    @property
    def lag(self) -> float:
        """Seconds the replica is behind (``inf``: down or not known yet)."""
        return self._lag

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, wait: float = CONNECT_TIMEOUT + PROBE_TIMEOUT) -> None:
        """Start probing (idempotent); wait up to ``wait`` seconds for the replica to be up
        (probing quickly meanwhile) so that a healthy replica serves from the first read. A
        replica that is down or behind delays nothing more than that: reads use the primary
        until it is up."""
        if self.url is None or self._task is not None:
            return
        self._task = asyncio.create_task(self._probe_loop(wait), name="replica-probe")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait + 1):
                await self._started.wait()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool, self._pool = self._pool, None
        if pool is not None:
            self._closing.append(pool)
        await self._close_dropped()
        await self._close_probe_conn()

    # -- reads -------------------------------------------------------------------------

    async def read(
        self,
        org: int | None,
        after: int | None,
        fn: Callable[Concatenate[Conn, P], Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``fn(conn, *args, **kwargs)`` on the replica if it may serve this read, else on
        the primary. ``after``: the newest write position the caller must see (a token's);
        ``org``'s last write in this process counts too."""
        if self.url is not None:
            if self._task is None:
                await self.start()
            pool = self._pool
            if pool is not None and self.up:
                wanted = self.wanted(org, after)
                result = await self._on_replica(pool, wanted, fn, args, kwargs)
                if result is not _USE_PRIMARY:
                    return cast(T, result)
        async with self.primary.connection() as conn:
            return await fn(conn, *args, **kwargs)

    async def _on_replica(
        self,
        pool: AsyncConnectionPool,
        after: int | None,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T | object:
        """The read's result from the replica, or ``_USE_PRIMARY``."""
        taken: Conn | None = None
        try:
            async with pool.connection(timeout=READ_WAIT) as conn:
                taken = conn
                if not await self._reached(conn, after):
                    return _USE_PRIMARY
                return await fn(conn, *args, **kwargs)
        except psycopg.OperationalError as exc:
            # No free connection in time (PoolTimeout), a pool dropped meanwhile (PoolClosed),
            # a lost connection, a recovery conflict, a replica shutting down: the primary
            # answers instead. A broken connection means the replica is gone.
            if taken is not None and (taken.broken or taken.closed):
                self._drop(f"a read lost its connection: {exc}")
            elif taken is not None:
                log.warning("replica read failed; using the primary", extra={"error": str(exc)})
            return _USE_PRIMARY

    async def _reached(self, conn: Conn, after: int | None) -> bool:
        if after is None or self._replayed is None or after <= self._replayed:
            return True
        cur = await conn.execute(REPLAY_LSN)
        row = await cur.fetchone()
        replayed = None if row is None else row[0]
        if replayed is None:
            return True  # not a standby
        self._replayed = max(self._replayed, int(replayed))
        return int(replayed) >= after

    async def conninfo_after(self, after: int) -> str | None:
        """Connection string of the replica if it may serve a long read that must see
        ``after`` (an export's COPY, on a connection of its own), else None: the primary."""
        pool = self._pool
        if self.url is None or pool is None or not self.up:
            return None
        try:
            async with pool.connection(timeout=READ_WAIT) as conn:
                if not await self._reached(conn, after):
                    return None
        except psycopg.OperationalError:  # PoolTimeout and PoolClosed too
            return None
        options = replica_kwargs(self.url)
        del options["autocommit"], options["prepare_threshold"]
        return make_conninfo(self.url, **options)

    # -- read-your-writes ----------------------------------------------------------------

    async def note_write(self, org: int) -> int | None:
        """Remember that ``org`` just wrote; its position, for a token (None: no replica)."""
        if self.url is None:
            return None
        position = await self.primary_position()
        self._marks.pop(org, None)
        self._marks[org] = (position, time.monotonic() + self.token_ttl)
        if len(self._marks) > MAX_MARKS:
            now = time.monotonic()
            for old in [o for o, (_, until) in self._marks.items() if until < now]:
                del self._marks[old]
            while len(self._marks) > MAX_MARKS:
                del self._marks[next(iter(self._marks))]
        return position

    async def primary_position(self) -> int:
        """The primary's WAL insert position now: past every commit that has returned."""
        async with self.primary.connection() as conn:
            cur = await conn.execute(INSERT_LSN)
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    def wanted(self, org: int | None, after: int | None) -> int | None:
        """The position a read by ``org`` must see: its token's or this process's mark."""
        if org is None:
            return after
        mark = self._marks.get(org)
        if mark is None:
            return after
        position, until = mark
        if until < time.monotonic():
            del self._marks[org]
            return after
        return position if after is None else max(position, after)

    def token(self, org: int, position: int) -> str:
        """A signed, short-lived token: "``org`` wrote up to ``position``"."""
        body = f"{position:x}.{org}.{int(time.time() + self.token_ttl)}"
        return f"{body}.{self._mac(body)}"

    def token_position(self, token: str | None, org: int) -> int | None:
        """The position a token carries, if it is genuine, ``org``'s and not expired."""
        if not token or len(token) > 100:
            return None
        body, _, mac = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            position, owner, expires = int(parts[0], 16), int(parts[1]), int(parts[2])
        except ValueError:
            return None
        if owner != org or expires < time.time():
            return None
        return position

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._key, b"read-after:" + body.encode(), hashlib.sha256).digest()
        return _b64(digest[:_TOKEN_MAC_BYTES])

    # -- probing -----------------------------------------------------------------------

    async def _probe_loop(self, quick_for: float) -> None:
        # Probes come quickly at first, until the replica is up or quick_for has passed.
        quick_until = time.monotonic() + quick_for
        while True:
            try:
                await self._probe()
            except Exception:  # the loop must outlive any surprise
                log.exception("replica probe failed")
                self._drop("probe error")
            await self._close_dropped()
            if self.up or time.monotonic() >= quick_until:
                self._started.set()
                await asyncio.sleep(PROBE_INTERVAL)
            else:
                await asyncio.sleep(QUICK_PROBE_INTERVAL)

    async def _probe(self) -> None:
        assert self.url is not None
        try:
            position = await asyncio.wait_for(self.primary_position(), PROBE_TIMEOUT)
            self._history.append((time.monotonic(), position))
        except (TimeoutError, psycopg.OperationalError):  # PoolTimeout too
            pass  # the primary is unreachable: every request fails anyway; keep the old lag
        try:
            row = await self._ask_replica()
        except (TimeoutError, psycopg.OperationalError) as exc:
            await self._close_probe_conn()
            self._drop(f"probe: {exc!r}")
            return
        if self._pool is None:
            self._pool = await self._open()
            if self._pool is None:
                self._set_lag(math.inf)
                return
            log.info("replica up", extra={"replica": _where(self.url)})
        replayed = None if row is None or row[0] is None else int(row[0])
        self._replayed = replayed
        self._set_lag(self._lag_at(replayed, time.monotonic()))

    async def _ask_replica(self) -> tuple[Any, ...] | None:
        """The replica's replay position, on a connection of the probe's own: a pool busy
        with long reports must not make a healthy replica look dead."""
        assert self.url is not None
        if self._probe_conn is None or self._probe_conn.closed:
            async with asyncio.timeout(CONNECT_TIMEOUT + 1):
                self._probe_conn = await AsyncConnection.connect(
                    self.url, **replica_kwargs(self.url)
                )
        async with asyncio.timeout(PROBE_TIMEOUT):
            cur = await self._probe_conn.execute(REPLAY_LSN)
            return await cur.fetchone()

    async def _close_probe_conn(self) -> None:
        conn, self._probe_conn = self._probe_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await conn.close()

    def _lag_at(self, replayed: int | None, now: float) -> float:
        if replayed is None:
            return 0.0  # not a standby (the primary itself, or a PgBouncer in front of it)
        for at, position in reversed(self._history):
            if position <= replayed:
                return max(0.0, now - at)
        return math.inf

    def _set_lag(self, lag: float) -> None:
        was_up = self.up
        self._lag = lag
        if self._metric is not None:
            self._metric.set(lag)
        if was_up and not self.up and self._pool is not None:
            log.warning("replica lags: reads go to the primary", extra={"lag": round(lag, 1)})

    async def _open(self) -> AsyncConnectionPool | None:
        assert self.url is not None
        pool: AsyncConnectionPool = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            kwargs=replica_kwargs(self.url),
            open=False,
            timeout=READ_WAIT,
            reconnect_timeout=RECONNECT_TIMEOUT,
            name="replica",
        )
        try:
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT + 1)
        except (PoolTimeout, psycopg.OperationalError):
            await pool.close(timeout=0)
            return None
        return pool

    def _drop(self, reason: str) -> None:
        """Stop reading from the replica until a probe reaches it again."""
        pool, self._pool = self._pool, None
        self._set_lag(math.inf)
        if pool is not None:
            log.warning("replica down: reads go to the primary", extra={"reason": reason})
            self._closing.append(pool)

    async def _close_dropped(self) -> None:
        while self._closing:
            pool = self._closing.pop()
            with contextlib.suppress(Exception):
                await pool.close(timeout=1)
