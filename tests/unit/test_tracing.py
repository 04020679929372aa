"""Tracing's switch and its context rules, in process (the end-to-end trace through real
processes is tests/integration/test_tracing.py)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from surge.config import ConfigError
from surge.jobs.registry import Job
from surge.observability import tracing
from surge.observability.tracing_config import TracingConfig, read_config

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


def test_tracing_is_off_without_an_exporter_or_endpoint() -> None:
    assert read_config({}) is None
    assert read_config({"OTEL_SERVICE_NAME": "surge", "OTEL_TRACES_SAMPLER": "always_on"}) is None


@pytest.mark.parametrize(
    "environ",
    [
        ENDPOINT,
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"},
        {"OTEL_TRACES_EXPORTER": "otlp"},
    ],
)
def test_an_endpoint_or_the_otlp_exporter_turns_it_on(environ: dict[str, str]) -> None:
    assert read_config(environ) == TracingConfig(("otlp",), "parentbased_always_on", 1.0, True)


@pytest.mark.parametrize(
    "environ",
    [
        {**ENDPOINT, "OTEL_SDK_DISABLED": "true"},
        {**ENDPOINT, "OTEL_SDK_DISABLED": " TRUE "},
        {**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_the_standard_switches_turn_it_off_whatever_else_is_set(environ: dict[str, str]) -> None:
    assert read_config(environ) is None


def test_sampler_and_ratio_are_read_as_the_sdk_reads_them() -> None:
    config = read_config(
        {
            **ENDPOINT,
            "OTEL_TRACES_SAMPLER": "ParentBased_TraceIdRatio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
            "OTEL_TRACES_EXPORTER": "console, otlp",
        }
    )
    assert config == TracingConfig(("console", "otlp"), "parentbased_traceidratio", 0.01, True)
    plain = read_config({**ENDPOINT, "OTEL_TRACES_SAMPLER": "traceidratio"})
    assert plain is not None and (plain.rate, plain.parent_based) == (1.0, False)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"OTEL_TRACES_SAMPLER_ARG": "1.5", "OTEL_TRACES_SAMPLER": "traceidratio"}, "SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER_ARG": "1 %", "OTEL_TRACES_SAMPLER": "traceidratio"}, "SAMPLER_ARG"),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ],
)
def test_values_the_sdk_would_silently_replace_are_refused(
    extra: dict[str, str], named: str
) -> None:
    # The SDK would sample everything at a ratio of 1.5 or "1 %", or fall back to another
    # sampler: at giving-day rates that is a surprise nobody wants.
    with pytest.raises(ConfigError, match=named):
        read_config({**ENDPOINT, **extra})


def test_with_tracing_off_nothing_is_made_or_stored() -> None:
    assert not tracing.active
    assert tracing.current_traceparent() is None
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}
    with tracing.enqueuing("x", "default") as (traceparent, span):
        assert traceparent is None and not span.is_recording()
    with tracing.span("anything") as span:
        assert not span.is_recording()


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Tracing on in this process with the console exporter, at a ratio set by the test."""

    def start(ratio: str) -> None:
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", ratio)
        assert tracing.configure("test")

    def spans() -> list[dict[str, Any]]:
        assert tracing.flush()
        return [json.loads(line) for line in capfd.readouterr().out.splitlines() if line]

    start.spans = spans  # type: ignore[attr-defined]
    try:
        yield start
    finally:
        tracing.shutdown()


SCOPE = {"type": "http", "method": "POST", "path": "/v1/x", "headers": [(b"host", b"x")]}


def test_an_unsampled_request_enqueues_unsampled_jobs_with_ids_of_their_own(console: Any) -> None:
    console("0")
    request = tracing.begin_request(SCOPE, "rid")
    first, second = tracing.current_traceparent(), tracing.current_traceparent()
    with tracing.enqueuing("x", "default") as (stored, span):
        assert not span.is_recording()
    tracing.end_request(request, SCOPE, 202)
    assert first is not None and second is not None and stored is not None
    assert {first[-2:], second[-2:], stored[-2:]} == {"00"}  # carried on, not sampled
    assert len({first, second, stored}) == 3  # never the shared placeholder's ids
    assert tracing.current_traceparent() is None  # the request's context is gone
    assert console.spans() == []


def test_a_sampled_request_is_the_parent_of_its_enqueue_and_job_spans(console: Any) -> None:
    console("1")
    scope = {**SCOPE, "route": type("Route", (), {"path": "/v1/things/{thing_id:int}"})()}
    request = tracing.begin_request(scope, "rid-1")
    with tracing.enqueuing("things.make", "default") as (stored, _):
        pass
    tracing.end_request(request, scope, 503)
    assert stored is not None
    job = Job(7, "things.make", "default", {}, 1, 3, 42, stored)
    charge = {"payment.gateway": "sandbox"}
    with tracing.job_span(job), tracing.span("payment.charge", tracing.CLIENT, charge):
        pass
    spans = {s["name"]: s for s in console.spans()}
    server = spans["POST /v1/things/{thing_id}"]
    assert server["attributes"]["http.route"] == "/v1/things/{thing_id}"
    assert server["status"]["status_code"] == "ERROR"  # a 5xx
    enqueue, run = spans["enqueue things.make"], spans["run things.make"]
    assert enqueue["parent_id"] == server["context"]["span_id"]
    assert run["parent_id"] == enqueue["context"]["span_id"]
    assert spans["payment.charge"]["parent_id"] == run["context"]["span_id"]
    assert run["attributes"]["surge.organization_id"] == 42
    assert len({s["context"]["trace_id"] for s in spans.values()}) == 1


def test_an_incoming_traceparent_decides_and_names_the_trace(console: Any) -> None:
    console("0")  # the client's decision wins over our ratio (parent-based)
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    header = f"00-{trace_id}-{parent}-01".encode()
    scope = {**SCOPE, "headers": [(b"traceparent", header), (b"tracestate", b"vendor=x")]}
    request = tracing.begin_request(scope, "rid-2")
    headers: dict[str, str] = {}
    tracing.inject(headers)
    tracing.end_request(request, scope, 202)
    [server] = console.spans()
    assert server["context"]["trace_id"] == "0x" + trace_id
    assert server["parent_id"] == "0x" + parent
    assert headers["traceparent"].startswith(f"00-{trace_id}-")
    assert headers["tracestate"] == "vendor=x"


def test_a_malformed_traceparent_is_ignored_like_none_was_sent(console: Any) -> None:
    console("1")
    scope = {**SCOPE, "headers": [(b"traceparent", b"00-nonsense-01")]}
    request = tracing.begin_request(scope, "rid-3")
    tracing.end_request(request, scope, 400)
    [server] = console.spans()
    assert server["parent_id"] is None  # a root of ours
    assert server["status"]["status_code"] == "UNSET"  # a 4xx is not the server's error


def test_only_the_first_messages_of_a_chunk_get_a_span_each() -> None:
    assert tracing.take_message_span()  # outside a chunk: every message
    with tracing.message_spans(2):
        taken = [tracing.take_message_span() for _ in range(5)]
    assert taken == [True, True, False, False, False]
    assert tracing.take_message_span()


def test_a_collector_that_is_down_holds_neither_requests_nor_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # discard: refused
    monkeypatch.setattr(tracing, "SHUTDOWN_TIMEOUT", 0.5)
    assert tracing.configure("test")
    started = time.monotonic()
    for _ in range(100):
        tracing.end_request(tracing.begin_request(SCOPE, "rid"), SCOPE, 202)
    tracing.shutdown()  # the exporter would retry for 10 s
    assert time.monotonic() - started < 5
    assert not tracing.active


def test_the_sdks_repeated_warnings_are_let_through_once_a_minute() -> None:
    sparse = tracing._Sparse(every=60)
    record = logging.LogRecord(
        "x", logging.WARNING, "f", 1, "Queue full, dropping %s.", ("Span",), None
    )
    other = logging.LogRecord("x", logging.WARNING, "f", 1, "Exporter failed", None, None)
    assert [sparse.filter(record), sparse.filter(record), sparse.filter(other)] == [
        True,
        False,
        True,
    ]
