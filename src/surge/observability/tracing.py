"""OpenTelemetry traces: from the HTTP request through the job queue to the SMTP server, the
webhook receiver and the payment gateway (``docs/observability.md``, "Traces").

Off unless an exporter is configured, with the standard variables only:
``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, both comma-separated, or ``none``) or, when
it is unset, ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``;
``OTEL_SDK_DISABLED=true`` turns everything off. The SDK itself reads the sampler
(``OTEL_TRACES_SAMPLER``/``_ARG``), the resource (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``), the exporter's endpoint, headers and timeout, and the batch
processor's ``OTEL_BSP_*``; ``read_config`` only refuses values the SDK would silently
replace (an unknown sampler, a ratio outside 0..1, a protocol we cannot speak).

Costs. Off, a hot path pays one test of the module global ``active``. On, the head decision
of a request or job without a parent is taken here, with one ``random()``, before the SDK is
asked anything: the SDK's ``start_span`` costs ~7 µs even for a span it then drops, which at
1 % sampling would be most of tracing's cost on event intake. An unsampled root attaches a
shared context whose span is valid but not sampled, so that the jobs it enqueues are stored
as unsampled too (one trace is all or nothing). A sampled root is started by a second tracer
provider whose sampler is always on (the decision is made already) and which shares the
exporting processor; everything below it uses the configured sampler as usual.

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
import sys
import uuid
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
from surge.config import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from surge.jobs.registry import Job

log = logging.getLogger(__name__)

__all__ = [
    "CLIENT",
    "INTERNAL",
    "Span",
    "Status",
    "StatusCode",
    "TracingConfig",
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
    "read_config",
    "shutdown",
    "span",
    "take_message_span",
]

CLIENT = SpanKind.CLIENT
INTERNAL = SpanKind.INTERNAL

#: Whether this process traces. Hot paths test it first and do nothing else when it is False.
active = False

SAMPLERS = {
    # name: (follows the parent's decision, probability of a root being sampled or None: ARG)
    "always_on": (False, 1.0),
    "always_off": (False, 0.0),
    "traceidratio": (False, None),
    "parentbased_always_on": (True, 1.0),
    "parentbased_always_off": (True, 0.0),
    "parentbased_traceidratio": (True, None),
}
EXPORTERS = ("otlp", "console")
#: Seconds the exporter gets at exit to send what is still queued.
SHUTDOWN_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """What ``read_config`` found in the environment: tracing is on."""

    exporters: tuple[str, ...]
    sampler: str
    #: Probability that a trace without a parent (a request, a job nobody traced) is sampled.
    rate: float
    #: Whether a span with a parent follows the parent's decision (the parentbased_* samplers).
    parent_based: bool


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() == "true"


def read_config(environ: Mapping[str, str]) -> TracingConfig | None:
    """Tracing's configuration from ``OTEL_*`` variables; None when tracing is off.

    On when ``OTEL_TRACES_EXPORTER`` names an exporter, or, with it unset, when an OTLP
    endpoint is given; off with ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``.
    ConfigError for values the SDK would replace with a default behind the operator's back.
    """
    if _flag(environ, "OTEL_SDK_DISABLED"):
        return None
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    exporters = tuple(dict.fromkeys(n.strip() for n in named.split(",") if n.strip()))
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not exporters:
        exporters = ("otlp",) if endpoint else ()
    if exporters == ("none",):
        return None
    unknown = [n for n in exporters if n not in EXPORTERS]
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)!s} is not one of otlp, console, none"
        )
    if not exporters:
        return None
    if "otlp" in exporters:
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol.strip().lower() != "http/protobuf":
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: Surge exports traces over"
                " http/protobuf only (a collector's port 4318)"
            )
    sampler = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if sampler not in SAMPLERS:
        raise ConfigError(f"OTEL_TRACES_SAMPLER: {sampler!r} is not one of {', '.join(SAMPLERS)}")
    parent_based, rate = SAMPLERS[sampler]
    if rate is None:
        rate = _ratio(environ.get("OTEL_TRACES_SAMPLER_ARG"))
    return TracingConfig(exporters, sampler, rate, parent_based)


def _ratio(arg: str | None) -> float:
    if arg is None or not arg.strip():
        return 1.0  # the specification's default
    try:
        rate = float(arg)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG: {arg!r} is not a probability from 0 to 1")
    return rate


# -- set-up --------------------------------------------------------------------------------


@dataclass(slots=True)
class _Setup:
    provider: TracerProvider
    #: Every span except the roots sampled here.
    tracer: Tracer
    #: Roots sampled by ``_sample_root``: the provider's sampler is always on.
    roots: Tracer
    rate: float
    parent_based: bool


_setup: _Setup | None = None
_global_provider_set = False


def configure(process: str) -> bool:
    """Set tracing up for this process (``api``, ``worker``) from ``OTEL_*``; True when on.

    Spans still queued are exported when the process exits (``shutdown``, run at exit).
    """
    global active, _setup, _global_provider_set
    config = read_config(os.environ)
    shutdown()
    if config is None:
        return False
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    resource = _resource(process)
    # The sampler of `provider` comes from OTEL_TRACES_SAMPLER, read by the SDK.
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    roots = TracerProvider(sampler=ALWAYS_ON, resource=resource, shutdown_on_exit=False)
    for name in config.exporters:
        processor = BatchSpanProcessor(_exporter(name))
        provider.add_span_processor(processor)
        roots.add_span_processor(processor)  # shut down with `provider`
    scope = ("surge", __version__)
    _setup = _Setup(
        provider,
        provider.get_tracer(*scope),
        roots.get_tracer(*scope),
        config.rate,
        config.parent_based,
    )
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


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # One span a line, like the JSON logs, rather than the SDK's indented blocks.
        return ConsoleSpanExporter(
            out=sys.stdout, formatter=lambda s: s.to_json(indent=None) + "\n"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_*


def _resource(process: str) -> Any:
    """The SDK's resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) with Surge's defaults
    where the operator named nothing: service ``surge-<process>``, its version, instance."""
    from opentelemetry.sdk.resources import Resource

    detected = Resource.create()
    attributes = dict(detected.attributes)
    if str(attributes.get("service.name", "")).startswith("unknown_service"):
        attributes["service.name"] = f"surge-{process}"
    attributes.setdefault("service.version", __version__)
    attributes.setdefault("service.instance.id", str(uuid.uuid4()))
    attributes["surge.process"] = process
    return Resource(attributes, detected.schema_url)


def shutdown() -> None:
    """Export what is queued (at most ``SHUTDOWN_TIMEOUT`` seconds) and stop tracing."""
    global active, _setup
    setup, _setup = _setup, None
    active = False
    if setup is not None:
        atexit.unregister(shutdown)
        setup.provider.shutdown()


def flush(timeout: float = SHUTDOWN_TIMEOUT) -> bool:
    """Export every ended span now (tests, benchmarks); False if it did not finish in time."""
    return _setup is None or _setup.provider.force_flush(int(timeout * 1000))


# -- contexts ------------------------------------------------------------------------------

_propagator = TraceContextTextMapPropagator()
_ROOT = Context()
# The span of every unsampled root: valid, so that what it enqueues is stored as unsampled,
# with ids that `current_traceparent` replaces by random ones before they leave the process.
_MARK_TRACE_ID = 0x5355524745_554E53414D504C4544  # "SURGE" "UNSAMPLED"
_MARK_SPAN_ID = 0x5355524745
_UNSAMPLED_SPAN = NonRecordingSpan(
    SpanContext(_MARK_TRACE_ID, _MARK_SPAN_ID, is_remote=False, trace_flags=TraceFlags(0))
)
_UNSAMPLED = trace.set_span_in_context(_UNSAMPLED_SPAN, _ROOT)
_SAMPLED = TraceFlags.SAMPLED


def _remote(traceparent: str | bytes, tracestate: str | bytes | None = None) -> Context | None:
    """The context a W3C ``traceparent`` (and ``tracestate``) describe; None if malformed."""
    carrier = {"traceparent": _text(traceparent)}
    if tracestate:
        carrier["tracestate"] = _text(tracestate)
    found = _propagator.extract(carrier, context=_ROOT)
    return found if trace.get_current_span(found).get_span_context().is_valid else None


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _sampled(parent: Context) -> bool:
    return trace.get_current_span(parent).get_span_context().trace_flags.sampled


def _format(ctx: SpanContext) -> str:
    if ctx.trace_id == _MARK_TRACE_ID:
        trace_id, span_id, flags = random.getrandbits(128) or 1, random.getrandbits(64) or 1, 0
    else:
        trace_id, span_id, flags = ctx.trace_id, ctx.span_id, ctx.trace_flags
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span, to be stored or sent on; None without one.

    An unsampled trace gets one too (flags 00), so that what happens downstream is not
    sampled on its own: a trace is kept whole or not at all.
    """
    if not active:
        return None
    ctx = trace.get_current_span().get_span_context()
    return _format(ctx) if ctx.is_valid else None


def inject(headers: dict[str, str]) -> None:
    """Add ``traceparent`` (and ``tracestate``) of the current span to outgoing ``headers``."""
    if not active:
        return
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        headers["traceparent"] = _format(ctx)
        if ctx.trace_state:
            headers["tracestate"] = ctx.trace_state.to_header()


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
Request = tuple[Span | None, Token[Context]]


def begin_request(scope: Mapping[str, Any], request_id: str) -> Request:
    """Start the server span of an HTTP request (a child of its ``traceparent``, if sent)."""
    assert _setup is not None
    setup = _setup
    traceparent = tracestate = None
    for name, value in scope["headers"]:
        if name == b"traceparent":
            traceparent = value
        elif name == b"tracestate":
            tracestate = value
    parent = _remote(traceparent, tracestate) if traceparent is not None else None
    if parent is None:
        if random.random() >= setup.rate:
            return None, otel_context.attach(_UNSAMPLED)
        tracer, parent = setup.roots, _ROOT
    elif setup.parent_based and not _sampled(parent):
        return None, otel_context.attach(parent)
    else:
        tracer = setup.tracer
    method = scope["method"]
    server = tracer.start_span(
        method,  # named after its route template at the end, once routing has found it
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
            "surge.request_id": request_id,
        },
    )
    return server, otel_context.attach(trace.set_span_in_context(server, parent))


def end_request(
    request: Request, scope: Mapping[str, Any], status: int, error: BaseException | None = None
) -> None:
    """End the span ``begin_request`` started: route, status, the exception if one escaped."""
    server, token = request
    otel_context.detach(token)
    if server is None:
        return
    route = _template(getattr(scope.get("route"), "path", None))
    if route is not None:
        server.update_name(f"{scope['method']} {route}")
        server.set_attribute("http.route", route)
    server.set_attribute("http.response.status_code", status)
    if error is not None and isinstance(error, Exception):
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
        if random.random() >= setup.rate:
            with _attached(_UNSAMPLED):
                yield
            return
        tracer, parent = setup.roots, _ROOT
    elif setup.parent_based and not _sampled(parent):
        with _attached(parent):
            yield
        return
    else:
        tracer = setup.tracer
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
        f"run {job.kind}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ):
        yield


@contextmanager
def _attached(ctx: Context) -> Iterator[None]:
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


#: What ``enqueuing`` gives: the traceparent to store with the job(s), and the enqueue span.
Enqueuing = tuple[str | None, Span]
_NOT_TRACED: AbstractContextManager[Enqueuing] = nullcontext((None, INVALID_SPAN))


def enqueuing(kind: str, queue: str | None) -> AbstractContextManager[Enqueuing]:
    """Around an enqueue: a producer span when the current span is sampled, and the
    ``traceparent`` the new job(s) store (None when there is no trace to continue)."""
    if not active:
        return _NOT_TRACED
    current = trace.get_current_span()
    if not current.is_recording():
        ctx = current.get_span_context()
        return nullcontext((_format(ctx), INVALID_SPAN)) if ctx.is_valid else _NOT_TRACED
    return _enqueue_span(kind, queue)


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


def add_event(name: str, attributes: Mapping[str, Any]) -> None:
    """An event on the current span, if it records."""
    current = trace.get_current_span()
    if current.is_recording():
        current.add_event(name, dict(attributes))


def current_span() -> Span:
    """The current span (one that records nothing when tracing is off)."""
    return trace.get_current_span() if active else INVALID_SPAN
