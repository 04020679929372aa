"""A pool of persistent SMTP connections to one sender, shared by a process's asyncio tasks.

Opening an SMTP connection (TCP, greeting, EHLO, STARTTLS, AUTH) costs several round trips,
so connections stay open and carry many messages each: a task borrows one, runs one
MAIL/RCPT/DATA transaction on it and hands it back. At most ``max_connections`` exist at
once. A connection idle for a while is checked with NOOP before reuse, because servers drop
idle clients; one that died while idle is replaced without failing the message. The
connections are our own ``smtp_client.SMTPConnection``, which pipelines each transaction's
commands (RFC 2920) when the server allows. Then a task gives its connection back as soon as
its body is written, so the next task's envelope leaves in the same packet, and waits for its
own result outside the pool: one round trip per message on a busy connection.

Outcomes follow the reply: 2xx sent, 4xx temporary, 5xx permanent (with ``hard_bounce`` for a
bad address, see ``bounces``). Connection failures are temporary and feed a circuit breaker:
while a sender is down, ``send`` answers "sender unavailable" at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time

from surge.delivery.bounces import SendOutcome, SendStatus, classify, unavailable
from surge.delivery.circuit import Circuit
from surge.delivery.senders import SenderConfig
from surge.delivery.smtp_client import (
    InFlight,
    SMTPConnection,
    SMTPError,
    Stage,
    TransactionLost,
    mailbox,
)
from surge.observability import tracing
from surge.observability.metrics import SenderMetrics

log = logging.getLogger(__name__)

UNAVAILABLE = "sender unavailable"
# Errors that mean the connection, not the recipient, is the problem.
_CONNECTION_ERRORS = (SMTPError, OSError, TimeoutError, ssl.SSLError)


class SenderRefused(Exception):
    """MAIL FROM was refused: a problem with the sender's setup, not with the recipient."""


def tls_context(config: SenderConfig) -> ssl.SSLContext | None:
    """The client TLS context for ``config`` (None for plain SMTP), built once per pool."""
    if config.tls == "none":
        return None
    context = ssl.create_default_context(cafile=config.ca_file)
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SenderPool:
    """Persistent connections to one SMTP sender; ``send`` is safe from many tasks at once."""

    def __init__(
        self,
        config: SenderConfig,
        *,
        circuit: Circuit | None = None,
        noop_after: float = 5.0,
        max_idle: float | None = None,
    ) -> None:
        self.config = config
        self.circuit = circuit or Circuit()
        self.metrics = SenderMetrics(config.name, self.circuit)
        #: Seconds idle after which a connection is checked with NOOP before reuse.
        self.noop_after = noop_after
        #: Seconds idle after which a connection is closed with QUIT rather than reused.
        self.max_idle = max_idle or config.idle_timeout or 30.0
        #: Connections opened so far (metrics, and tests that count reuse).
        self.connections_opened = 0
        self._slots = asyncio.Semaphore(config.max_connections)
        self._idle: list[tuple[SMTPConnection, float]] = []
        self._tls = tls_context(config)
        self._local_hostname: str | None = config.helo
        self._closed = False
        self._reaper: asyncio.Task[None] | None = None
        #: QUITs under way (a task must be referenced until it ends).
        self._quitting: set[asyncio.Task[None]] = set()

    def sender_available(self) -> bool:
        """False while the circuit is open: the dispatcher should defer the whole chunk."""
        return not self.circuit.is_open

    def retry_after(self) -> float:
        """Seconds until the sender may be tried again (0 when available)."""
        return self.circuit.retry_after()

    async def send(self, mail_from: str, rcpt: str, data: bytes) -> SendOutcome:
        """Offer ``data`` (a whole message, CRLF lines) from ``mail_from`` to ``rcpt``."""
        if tracing.active and tracing.current_span().is_recording():
            return await self._send_traced(mail_from, rcpt, data)
        return await self._send(mail_from, rcpt, data)

    async def _send_traced(self, mail_from: str, rcpt: str, data: bytes) -> SendOutcome:
        """``send`` inside a traced job: an ``smtp.send`` span for the message, or, past a
        chunk's few sampled messages, an event on the current span when it was not sent."""
        domain = rcpt.rpartition("@")[2]  # never the address: spans hold no personal data
        if not tracing.take_message_span():
            outcome = await self._send(mail_from, rcpt, data)
            if not outcome.sent:
                tracing.add_event("smtp.not_sent", _outcome_attributes(outcome, domain))
            return outcome
        attributes = {
            "smtp.sender": self.config.name,
            "server.address": self.config.host,
            "server.port": self.config.port,
        }
        with tracing.span("smtp.send", tracing.CLIENT, attributes) as span:
            outcome = await self._send(mail_from, rcpt, data)
            span.set_attributes(_outcome_attributes(outcome, domain))
            if not outcome.sent:
                span.set_status(tracing.Status(tracing.StatusCode.ERROR, outcome.status.value))
        return outcome

    async def _send(self, mail_from: str, rcpt: str, data: bytes) -> SendOutcome:
        started = time.perf_counter()
        outcome = await self._offer(mail_from, rcpt, data)
        self.metrics.record(outcome, time.perf_counter() - started)
        return outcome

    async def _offer(self, mail_from: str, rcpt: str, data: bytes) -> SendOutcome:
        if self._closed:
            raise RuntimeError("send on a closed SenderPool")
        if self.circuit.is_open:
            return unavailable(UNAVAILABLE, self.circuit.retry_after())
        try:
            mailbox(rcpt)
        except ValueError as exc:
            # SMTPUTF8 is not supported, and CR/LF would smuggle in commands: no server may
            # ever see this address.
            return SendOutcome(SendStatus.PERMANENT, None, str(exc))
        async with self._slots:
            # The circuit may have opened while this task waited for a slot.
            started = self.circuit.clock()
            wait = self.circuit.admit()
            if wait is not None:
                return unavailable(UNAVAILABLE, wait)
            step = await self._send_in_slot(mail_from, rcpt, data, started)
        if isinstance(step, SendOutcome):
            return step
        # Pipelined: the body is written and the connection already carries the next
        # sender's envelope; our result comes first.
        conn, in_flight = step
        return await self._finish(conn, in_flight, started)

    async def _send_in_slot(
        self, mail_from: str, rcpt: str, data: bytes, started: float
    ) -> SendOutcome | tuple[SMTPConnection, InFlight]:
        # Two tries at most: a reused connection may have died while idle, which is only
        # known when the next command fails; nothing was delivered, so retrying is safe.
        for _ in range(2):
            try:
                conn, reused = await self._checkout()
            except _CONNECTION_ERRORS as exc:
                self.circuit.record_failure(started)
                log.warning("smtp connect failed", extra={"sender": self.config.name})
                return unavailable(f"{UNAVAILABLE}: {_describe(exc)}", self.circuit.retry_after())
            try:
                step = await _start(conn, mail_from, rcpt, data)
            except TransactionLost as lost:
                _discard(conn)
                if reused and lost.before_data:
                    # Its idle siblings probably died the same way (server restart): retry
                    # on a new connection, not on another stale one.
                    self._drop_idle()
                    continue
                self.circuit.record_failure(started)
                return unavailable(lost.reason, self.circuit.retry_after() or None)
            except SenderRefused as refused:
                # Every recipient would get the same answer: treat it as the sender being down.
                self._checkin(conn)
                self.circuit.record_failure(started)
                return unavailable(f"{UNAVAILABLE}: {refused}", self.circuit.retry_after() or None)
            except BaseException:
                # Cancelled mid-transaction: the connection's state is unknown, so drop it.
                _discard(conn)
                raise
            if isinstance(step, SendOutcome):  # refused before the body
                self.circuit.record_success()
                self._checkin(conn)
                return step
            if conn.pipelining:
                # RFC 2920 lets the next envelope follow our body before its reply: hand the
                # connection (and the slot) to the next sender now.
                self._checkin(conn)
                return conn, step
            return await self._finish(conn, step, started, checkin=True)
        return unavailable("connection lost twice")

    async def _finish(
        self, conn: SMTPConnection, in_flight: InFlight, started: float, *, checkin: bool = False
    ) -> SendOutcome:
        """The outcome of a transaction whose body was sent (it may have been delivered)."""
        try:
            result = await conn.finish(in_flight)
        except TransactionLost as lost:
            _discard(conn)
            self.circuit.record_failure(started)
            return unavailable(lost.reason, self.circuit.retry_after() or None)
        except BaseException:
            _discard(conn)
            raise
        if checkin:
            self._checkin(conn)
        code, text = result.reply.code, result.reply.message
        if result.stage is Stage.MAIL:
            # With BDAT the envelope's refusal arrives here: MAIL refused is the sender's
            # problem, as in _start.
            self.circuit.record_failure(started)
            reason = f"{UNAVAILABLE}: {code} {text}"
            return unavailable(reason, self.circuit.retry_after() or None)
        self.circuit.record_success()
        # After the reply to the end of data the server has closed the transaction either
        # way (RFC 5321 4.1.1.4): no RSET, which could not follow a pipelined envelope anyway.
        return (
            SendOutcome(SendStatus.SENT, code, text) if code // 100 == 2 else _refusal(code, text)
        )

    async def _checkout(self) -> tuple[SMTPConnection, bool]:
        """An idle connection that still works, else a new one; True when reused."""
        while self._idle:
            conn, since = self._idle.pop()  # most recent first: the rest may age out
            idle = time.monotonic() - since
            if not conn.is_connected:
                _discard(conn)
                continue
            if idle > self.max_idle:
                self._quit_later(conn)
                continue
            if idle > self.noop_after:
                try:
                    await conn.noop()
                except _CONNECTION_ERRORS:
                    _discard(conn)
                    continue
            return conn, True
        return await self._connect(), False

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            _discard(conn)

    def _checkin(self, conn: SMTPConnection) -> None:
        if not conn.is_connected:
            _discard(conn)
        elif self._closed:
            self._quit_later(conn)
        else:
            self._idle.append((conn, time.monotonic()))
            if self._reaper is None:
                self._reaper = asyncio.create_task(self._reap(), name="smtp-idle-reaper")

    async def _reap(self) -> None:
        """Say QUIT to connections idle past ``max_idle``, rather than leave them for the
        server to time out: a polite client frees the server's slot and keeps its standing."""
        while not self._closed:
            await asyncio.sleep(self.max_idle / 2)
            deadline = time.monotonic() - self.max_idle
            stale = [conn for conn, since in self._idle if since < deadline]
            self._idle = [(conn, since) for conn, since in self._idle if since >= deadline]
            for conn in stale:
                self._quit_later(conn)

    def _quit_later(self, conn: SMTPConnection) -> None:
        task = asyncio.create_task(_quit(conn))
        self._quitting.add(task)
        task.add_done_callback(self._quitting.discard)

    async def _connect(self) -> SMTPConnection:
        if self._local_hostname is None:
            # Looked up once per pool, not once per connection: it may be a DNS query.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        cfg = self.config
        conn = await SMTPConnection.open(
            cfg.host,
            cfg.port,
            tls=cfg.tls,
            context=self._tls,
            local_hostname=self._local_hostname,
            reply_timeout=cfg.timeout,
            username=cfg.username,
            password=cfg.password,
        )
        self.connections_opened += 1
        return conn

    async def aclose(self) -> None:
        """Say QUIT on every idle connection and close it; borrowed ones QUIT on return."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(conn) for conn, _ in idle), *self._quitting)


async def _start(
    conn: SMTPConnection, mail_from: str, rcpt: str, data: bytes
) -> SendOutcome | InFlight:
    """Envelope and body; a refusal before the body becomes an outcome, a lost link raises."""
    started = await conn.start(mail_from, rcpt, data)
    if isinstance(started, InFlight):
        return started
    code, text = started.reply.code, started.reply.message
    # RSET clears the envelope so the connection can carry the next message.
    await _reset(conn)
    if started.stage is Stage.MAIL:
        raise SenderRefused(f"{code} {text}")
    return _refusal(code, text)


def _refusal(code: int, text: str) -> SendOutcome:
    if code < 400:
        # A success-class code where success was not given makes no sense: try again later.
        return SendOutcome(SendStatus.TEMPORARY, code, text)
    return classify(code, text)


async def _reset(conn: SMTPConnection) -> None:
    # RSET clears the envelope so the connection can carry the next message.
    try:
        await conn.rset()
    except _CONNECTION_ERRORS:
        _discard(conn)


async def _quit(conn: SMTPConnection) -> None:
    try:
        await asyncio.wait_for(conn.quit(), timeout=5)
    except _CONNECTION_ERRORS:
        pass
    finally:
        conn.close()


def _discard(conn: SMTPConnection) -> None:
    conn.close()


def _outcome_attributes(outcome: SendOutcome, domain: str) -> dict[str, str | int | bool]:
    found: dict[str, str | int | bool] = {
        "smtp.outcome": outcome.status.value,
        "smtp.recipient_domain": domain,
    }
    if outcome.code is not None:
        found["smtp.reply_code"] = outcome.code
    if outcome.hard_bounce:
        found["smtp.hard_bounce"] = True
    if outcome.sender_unavailable:
        found["smtp.sender_unavailable"] = True
    return found


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
