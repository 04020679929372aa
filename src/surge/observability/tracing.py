"""OpenTelemetry traces: from the HTTP request through the job queue to the SMTP server, the
webhook receiver and the payment gateway (``docs/observability.md``, "Traces").

Off unless an exporter is configured with the standard ``OTEL_*`` variables
(``tracing_config.py``); ``configure(process)`` sets a process up once, at start.

Costs. Off, a hot path pays one test of the module global ``active``. On, the head decision
of a request or a job without a parent is taken here, with one ``random()``, before the SDK
is asked anything: its ``start_span`` costs ~7 µs even for a span it then drops, which at
1 % sampling would be most of tracing's cost on event intake. A root not sampled sets one
context variable (``_unsampled``, cheaper than OpenTelemetry's context by half a µs), so
that the jobs it enqueues are stored as unsampled too: a trace is kept whole or not at all.
A sampled root is started by a second tracer provider whose sampler is always on (the
decision is made already) and which shares the exporting processor; every span below it
uses the configured sampler as usual.

Context crosses processes as a W3C ``traceparent``: read from incoming requests, stored with
each job (``jobs.traceparent``, and ``webhook_events.traceparent`` for the outbox), sent
with outgoing webhooks. Nothing personal goes into spans: no addresses, no URL paths (they
carry signed tokens), no request or response bodies.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from surge import __version__
from surge.observability.tracing_config import providers, read_config

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from surge.jobs.registry import Job

log = logging.getLogger(__name__)

__all__ = [
    "CLIENT",
    "INTERNAL",
    "Span",
    "Status",
    "StatusCode",
    "active",
    "add_event",
    "begin_request",
    "configure",
    "current_span",
    "current_traceparent",
    "end_request",
    "enqueuing",
    "flush",
    "inject",
    "job_span",
    "message_spans",
    "shutdown",
    "span",
    "take_message_span",
]

CLIENT = SpanKind.CLIENT
INTERNAL = SpanKind.INTERNAL

#: Whether this process traces. Hot paths test it first and do nothing else when it is False.
active = False

#: Seconds the exporter gets at exit to send what is still queued.
SHUTDOWN_TIMEOUT = 10.0


@dataclass(slots=True)
class _Setup:
    provider: TracerProvider
    #: Every span except the roots sampled here.
    tracer: Tracer
    #: Roots this module decided to sample: its provider's sampler is always on.
    roots: Tracer
    rate: float
    parent_based: bool


_setup: _Setup | None = None
_global_provider_set = False
_random = random.random


def configure(process: str) -> bool:
    """Set tracing up for this process (``api``, ``worker``) from ``OTEL_*``; True when on.

    ConfigError for an ``OTEL_*`` value Surge refuses (``tracing_config.read_config``).
    Spans still queued are exported when the process exits (``shutdown``, run at exit).
    """
    global active, _setup, _global_provider_set
    config = read_config(os.environ)
    shutdown()
    if config is None:
        return False
    provider, roots = providers(config, process)
    scope = ("surge", __version__)
    _setup = _Setup(
        provider,
        provider.get_tracer(*scope),
        roots.get_tracer(*scope),
        config.rate,
        config.parent_based,
    )
    for name in _NOISY:
        logging.getLogger(name).addFilter(_sparse)
    if not _global_provider_set:  # for any instrumentation an operator adds
        trace.set_tracer_provider(provider)
        _global_provider_set = True
    atexit.register(shutdown)
    active = True
    log.info(
        "tracing on",
        extra={"exporters": list(config.exporters), "sampler": config.sampler, "rate": config.rate},
    )
    return True


def shutdown() -> None:
    """Export what is queued (at most ``SHUTDOWN_TIMEOUT`` seconds) and stop tracing."""
    global active, _setup
    setup, _setup = _setup, None
    active = False
    if setup is not None:
        atexit.unregister(shutdown)
        # The SDK waits up to 30 s for its exporter thread, and the exporter retries an
        # unreachable collector for its own timeout: bounded here, so that a collector that
        # is down cannot hold a stopping process.
        closing = threading.Thread(target=setup.provider.shutdown, daemon=True)
        closing.start()
        closing.join(SHUTDOWN_TIMEOUT)


class _Sparse(logging.Filter):
    """One record per message a minute: with the collector down, the SDK would log a
    warning for every span it drops (a hundred a second at 1 % of 10,000 requests)."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self.last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now, key = time.monotonic(), str(record.msg)
        if now - self.last.get(key, -self.every) < self.every:
            return False
        self.last[key] = now
        return True


_sparse = _Sparse()
#: The SDK's batch processor and the OTLP exporter: their warnings repeat per span or batch.
_NOISY = (
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)


def flush(timeout: float = SHUTDOWN_TIMEOUT) -> bool:
    """Export every ended span now (tests, benchmarks); False if it did not finish in time."""
    return _setup is None or _setup.provider.force_flush(int(timeout * 1000))


# -- contexts ------------------------------------------------------------------------------

_propagator = TraceContextTextMapPropagator()
_ROOT = Context()
#: The trace the current request or job belongs to when it is not sampled (no span then):
#: what it enqueues or calls is stored or sent as not sampled.
_unsampled: ContextVar[SpanContext | None] = ContextVar("surge_unsampled_trace", default=None)
# The unsampled trace of a root we decided not to sample: its ids are drawn by `_format`
# only when something leaves the process with them, not for every request.
_PLACEHOLDER_TRACE_ID = 0x5355524745_554E53414D504C4544  # "SURGE" "UNSAMPLED"
_PLACEHOLDER = SpanContext(_PLACEHOLDER_TRACE_ID, 0x5355524745, False, TraceFlags(0))


def _remote(traceparent: str | bytes, tracestate: str | bytes | None = None) -> SpanContext | None:
    """The span a W3C ``traceparent`` (and ``tracestate``) describe; None if malformed."""
    carrier = {"traceparent": _text(traceparent)}
    if tracestate:
        carrier["tracestate"] = _text(tracestate)
    found = trace.get_current_span(_propagator.extract(carrier, context=_ROOT))
    ctx = found.get_span_context()
    return ctx if ctx.is_valid else None


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _as_parent(ctx: SpanContext) -> Context:
    return trace.set_span_in_context(NonRecordingSpan(ctx), _ROOT)


def _format(ctx: SpanContext) -> str:
    if ctx.trace_id == _PLACEHOLDER_TRACE_ID:
        trace_id, span_id, flags = random.getrandbits(128) or 1, random.getrandbits(64) or 1, 0
    else:
        trace_id, span_id, flags = ctx.trace_id, ctx.span_id, ctx.trace_flags
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def _current() -> SpanContext | None:
    """What work started now continues: the current span, else the unsampled trace, if any."""
    ctx = trace.get_current_span().get_span_context()
    return ctx if ctx.is_valid else _unsampled.get()


def current_traceparent() -> str | None:
    """The ``traceparent`` that work started now continues, to store or send; None without one.

    An unsampled trace gets one too (flags 00), so that what happens downstream is not
    sampled on its own: a trace is kept whole or not at all.
    """
    if not active:
        return None
    ctx = _current()
    return None if ctx is None else _format(ctx)


def inject(headers: dict[str, str]) -> None:
    """Add ``traceparent`` (and ``tracestate``) of the current span to outgoing ``headers``."""
    if not active or (ctx := _current()) is None:
        return
    headers["traceparent"] = _format(ctx)
    if ctx.trace_state:
        headers["tracestate"] = ctx.trace_state.to_header()


def current_span() -> Span:
    """The current span (one that records nothing when tracing is off or not sampled)."""
    return trace.get_current_span() if active else INVALID_SPAN


def add_event(name: str, attributes: Mapping[str, Any]) -> None:
    """An event on the current span, if it records."""
    current = trace.get_current_span()
    if current.is_recording():
        current.add_event(name, dict(attributes))


# -- spans ---------------------------------------------------------------------------------

_OFF: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)


def span(
    name: str, kind: SpanKind = INTERNAL, attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[Span]:
    """A child span of the current one, current inside the ``with``; records an exception
    that leaves it (status ERROR). When tracing is off or the current span is not sampled,
    nothing is made: the ``with`` gets a span that records nothing, so callers set
    attributes unconditionally."""
    if not active:
        return _OFF
    current = trace.get_current_span()
    if not current.is_recording():
        return nullcontext(current)
    assert _setup is not None
    return _setup.tracer.start_as_current_span(name, kind=kind, attributes=attributes)


# -- HTTP requests (api/middleware.py) -----------------------------------------------------

#: What ``begin_request`` hands to ``end_request``: the server span (None: not sampled) and
#: the token that restores the context the request started in.
Request = tuple[Span | None, Token[Any]]


def begin_request(scope: Mapping[str, Any], request_id: str) -> Request:
    """Start the server span of an HTTP request (a child of its ``traceparent``, if sent)."""
    assert _setup is not None
    setup = _setup
    parent = None
    for name, value in scope["headers"]:
        if name == b"traceparent":
            parent = _remote(value, _header(scope, b"tracestate"))
            break
    if parent is None:
        if _random() >= setup.rate:
            return None, _unsampled.set(_PLACEHOLDER)
        tracer, context = setup.roots, _ROOT
    elif setup.parent_based and not parent.trace_flags.sampled:
        return None, _unsampled.set(parent)
    else:
        tracer, context = setup.tracer, _as_parent(parent)
    method = scope["method"]
    server = tracer.start_span(
        method,  # named after its route template at the end, once routing has found it
        context=context,
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
            "surge.request_id": request_id,
        },
    )
    return server, otel_context.attach(trace.set_span_in_context(server, context))


def _header(scope: Mapping[str, Any], wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


def end_request(
    request: Request, scope: Mapping[str, Any], status: int, error: BaseException | None = None
) -> None:
    """End the span ``begin_request`` started: route, status, the exception if one escaped."""
    server, token = request
    if server is None:
        _unsampled.reset(token)
        return
    otel_context.detach(token)
    route = _template(getattr(scope.get("route"), "path", None))
    if route is not None:
        server.update_name(f"{scope['method']} {route}")
        server.set_attributes({"http.route": route, "http.response.status_code": status})
    else:
        server.set_attribute("http.response.status_code", status)
    if isinstance(error, Exception):
        server.record_exception(error)
    if status >= 500:  # a 4xx is the client's mistake, not the server span's error
        server.set_attribute("error.type", type(error).__name__ if error else str(status))
        server.set_status(Status(StatusCode.ERROR))
    server.end()


_templates: dict[str, str] = {}


def _template(path: str | None) -> str | None:
    """A route's path as OpenTelemetry's ``http.route``: ``/v1/messages/{message_id}``,
    without Starlette's ``:int`` convertors."""
    if path is None:
        return None
    found = _templates.get(path)
    if found is None:
        found = _templates[path] = re.sub(r"\{(\w+):\w+\}", r"{\1}", path)
    return found


# -- jobs ----------------------------------------------------------------------------------

_NO_JOB_SPAN: AbstractContextManager[None] = nullcontext()


def job_span(job: Job) -> AbstractContextManager[None]:
    """The span of one run of ``job``: a child of the span that enqueued it, if it was
    traced, else a root sampled like a request."""
    return _job_span(job) if active else _NO_JOB_SPAN


@contextmanager
def _job_span(job: Job) -> Iterator[None]:
    assert _setup is not None
    setup = _setup
    parent = _remote(job.traceparent) if job.traceparent else None
    if parent is None:
        if _random() >= setup.rate:
            with _unsampled_as(_PLACEHOLDER):
                yield
            return
        tracer, context = setup.roots, _ROOT
    elif setup.parent_based and not parent.trace_flags.sampled:
        with _unsampled_as(parent):
            yield
        return
    else:
        tracer, context = setup.tracer, _as_parent(parent)
    attributes: dict[str, Any] = {
        "messaging.system": "surge",
        "messaging.operation.type": "process",
        "messaging.operation.name": "run",
        "messaging.destination.name": job.queue,
        "messaging.message.id": str(job.id),
        "surge.job.kind": job.kind,
        "surge.job.attempt": job.attempt,
        "surge.job.max_attempts": job.max_attempts,
    }
    if job.organization_id is not None:
        attributes["surge.organization_id"] = job.organization_id
    with tracer.start_as_current_span(
        f"run {job.kind}", context=context, kind=SpanKind.CONSUMER, attributes=attributes
    ):
        yield


@contextmanager
def _unsampled_as(ctx: SpanContext) -> Iterator[None]:
    token = _unsampled.set(ctx)
    try:
        yield
    finally:
        _unsampled.reset(token)


#: What ``enqueuing`` gives: the traceparent to store with the job(s), and the enqueue span.
Enqueuing = tuple[str | None, Span]
_NOT_TRACED: AbstractContextManager[Enqueuing] = nullcontext((None, INVALID_SPAN))


def enqueuing(kind: str, queue: str | None) -> AbstractContextManager[Enqueuing]:
    """Around an enqueue: a producer span when the current span is sampled, and the
    ``traceparent`` the new job(s) store (None when there is no trace to continue)."""
    if not active:
        return _NOT_TRACED
    if trace.get_current_span().is_recording():
        return _enqueue_span(kind, queue)
    ctx = _current()
    return _NOT_TRACED if ctx is None else nullcontext((_format(ctx), INVALID_SPAN))


@contextmanager
def _enqueue_span(kind: str, queue: str | None) -> Iterator[Enqueuing]:
    assert _setup is not None
    attributes: dict[str, Any] = {
        "messaging.system": "surge",
        "messaging.operation.type": "send",
        "messaging.operation.name": "enqueue",
        "surge.job.kind": kind,
    }
    if queue is not None:
        attributes["messaging.destination.name"] = queue
    with _setup.tracer.start_as_current_span(
        f"enqueue {kind}", kind=SpanKind.PRODUCER, attributes=attributes
    ) as producer:
        yield _format(producer.get_span_context()), producer


# -- SMTP: a few messages of a chunk get a span each ----------------------------------------

#: Per-message spans the current chunk may still start (a one-item list, shared by the
#: chunk's concurrent lanes); None outside a chunk: every message gets one.
_message_budget: ContextVar[list[int] | None] = ContextVar("message_span_budget", default=None)


@contextmanager
def message_spans(limit: int) -> Iterator[None]:
    """Within the ``with``, only the first ``limit`` messages get a span of their own (see
    ``take_message_span``): a thousand spans a chunk would cost more than the chunk's other
    work and overflow the exporter's queue."""
    token = _message_budget.set([limit])
    try:
        yield
    finally:
        _message_budget.reset(token)


def take_message_span() -> bool:
    """Whether the message about to be sent gets a span of its own (see ``message_spans``)."""
    budget = _message_budget.get()
    if budget is None:
        return True
    if budget[0] <= 0:
        return False
    budget[0] -= 1
    return True
