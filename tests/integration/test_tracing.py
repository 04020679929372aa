"""Traces end to end: real `surge api` and `surge worker` processes export OTLP/HTTP to a
collector in this test process, which decodes every ExportTraceServiceRequest.

One request must make ONE trace: the API's server span, the job spans in the worker (each a
child of the span that enqueued it), and below them the gateway charge, the SMTP send and
the webhook call, whose receiver gets our traceparent. With tracing off nothing is exported
and no traceparent is stored.
"""

from __future__ import annotations

import gzip
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from surge.db.embedded import free_port
from tests.conftest import Process, create_org, fresh_database, start_api, surge_env
from tests.helpers import Receiver, Recorder, make_audience, recording_smtp, webhook_receiver


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    service: str
    attributes: dict[str, Any]
    events: list[str]
    error: bool


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver on loopback (what an OpenTelemetry Collector's
    ``otlphttp`` receiver is on port 4318), keeping every span it is sent."""

    base: str = ""
    spans: list[Span] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    found.append(
                        Span(
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                            s.kind,
                            str(resource.get("service.name")),
                            {a.key: _value(a.value) for a in s.attributes},
                            [e.name for e in s.events],
                            s.status.code == 2,  # STATUS_CODE_ERROR
                        )
                    )
        with self.lock:
            self.requests += 1
            self.spans += found

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, trace_id: str, *names: str, timeout: float = 60) -> dict[str, Span]:
        """The trace's spans by name once every one of ``names`` has arrived."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.trace(trace_id)
            by_name = {s.name: s for s in spans}
            if all(n in by_name for n in names):
                return by_name
            missing = [n for n in names if n not in by_name]
            assert time.monotonic() < deadline, f"missing {missing}; have {sorted(by_name)}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with otlp_collector() as running:
        yield running


@contextmanager
def otlp_collector() -> Iterator[Collector]:
    collected = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            assert self.path == "/v1/traces", self.path
            collected.receive(body)
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    collected.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collected
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def smtp() -> Iterator[Recorder]:
    with recording_smtp() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def hooks() -> Iterator[Receiver]:
    with webhook_receiver() as receiver:
        yield receiver


def _stack_env(database_url: str, smtp: Recorder, **otel: str) -> dict[str, str]:
    return surge_env(
        database_url,
        SURGE_SMTP_SENDERS=f"smtp://127.0.0.1:{smtp.port}?tls=none&rate=1000&name=recorder",
        SURGE_PAYMENT_GATEWAY="sandbox",
        SURGE_DISPATCH_CHUNK_SIZE="2",
        **otel,
    )


@pytest.fixture(scope="module")
def env(database_url: str, collector: Collector, smtp: Recorder) -> dict[str, str]:
    return _stack_env(
        database_url,
        smtp,
        # Only the endpoint: that is what turns tracing on (OTEL_TRACES_EXPORTER unset).
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.base,
        OTEL_TRACES_SAMPLER="parentbased_traceidratio",
        OTEL_TRACES_SAMPLER_ARG="1",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=test",
    )


@dataclass
class Stack:
    staff: httpx.Client
    donor: httpx.Client
    campaign_id: int


def _clients(api: str, org: dict[str, str]) -> tuple[httpx.Client, httpx.Client]:
    staff = httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['secret_key']}"}, timeout=10
    )
    donor = httpx.Client(
        base_url=api, headers={"Authorization": f"Bearer {org['publishable_key']}"}, timeout=10
    )
    return staff, donor


def _set_up(database_url: str, api: str, hooks: Receiver, name: str) -> Stack:
    """An organisation with a fundraising campaign and a webhook endpoint for donations."""
    staff, donor = _clients(api, create_org(database_url, name))
    body = {"name": "Giving Day", "kind": "fundraising", "goal": 100_000, "currency": "USD"}
    campaign = staff.post("/v1/campaigns", json=body)
    assert campaign.status_code == 201, campaign.text
    endpoint = {"url": f"{hooks.base}/{name}", "event_types": ["donation.succeeded"]}
    assert staff.post("/v1/webhook-endpoints", json=endpoint).status_code == 201
    return Stack(staff, donor, campaign.json()["id"])


@pytest.fixture(scope="module")
def stack(api: str, worker: Process, database_url: str, hooks: Receiver) -> Iterator[Stack]:
    made = _set_up(database_url, api, hooks, "traced")
    yield made
    made.staff.close()
    made.donor.close()


def donate(stack: Stack, headers: dict[str, str] | None = None) -> dict[str, Any]:
    body = {"amount": 2500, "currency": "USD", "email": "donor@example.org", "token": "tok_ok"}
    response = stack.donor.post(
        f"/v1/campaigns/{stack.campaign_id}/donations",
        json=body,
        headers={"Idempotency-Key": str(uuid.uuid4()), **(headers or {})},
    )
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted | {"request_id": response.headers["x-request-id"]}


def wait_receipt(stack: Stack, donation_id: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while stack.staff.get(f"/v1/donations/{donation_id}").json()["receipt_sent_at"] is None:
        assert time.monotonic() < deadline, "no receipt"
        time.sleep(0.1)


def traceparent() -> tuple[str, str, str]:
    """A client's own (trace id, span id, traceparent header), sampled."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def scheduled_message(stack: Stack, list_id: int, headers: dict[str, str], **extra: Any) -> int:
    campaign = stack.staff.post("/v1/campaigns", json={"name": "Appeal"}).json()
    body = {
        "subject": "Hello {{ first_name }}",
        "text": "Dear {{ first_name }}, thank you.",
        "from_email": "appeals@charity.example",
        "list_ids": [list_id],
        **extra,
    }
    response = stack.staff.post(
        f"/v1/campaigns/{campaign['id']}/messages", json=body, headers=headers
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def plan_traceparent(database_url: str, message_id: int) -> str | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select traceparent from jobs where kind = 'dispatch.plan'"
            " and (args->>'message_id')::bigint = %s",
            [message_id],
        ).fetchone()
    assert row is not None, "the plan job is not waiting in the jobs table"
    return None if row[0] is None else str(row[0])


def parsed(header: str) -> tuple[str, str, bool]:
    """(trace id, parent span id, sampled) of a W3C traceparent (flags may say more than
    sampled: the SDK also sets level 2's "random trace id" bit)."""
    version, trace_id, span_id, flags = header.split("-")
    assert version == "00" and len(trace_id) == 32 and len(span_id) == 16
    return trace_id, span_id, bool(int(flags, 16) & 1)


SERVER, PRODUCER, CONSUMER, CLIENT = 2, 4, 5, 3  # Span.SpanKind in the OTLP protobuf


def assert_one_tree(spans: list[Span], root: Span) -> None:
    """Every span of the trace reaches ``root`` through its parents: one connected trace."""
    by_id = {s.span_id: s for s in spans}
    for s in spans:
        seen, node = set(), s
        while node.span_id != root.span_id:
            assert node.parent_id in by_id, f"{node.name} hangs off a span not in the trace"
            assert node.span_id not in seen
            seen.add(node.span_id)
            node = by_id[node.parent_id]


def test_a_donation_is_one_trace_from_the_request_to_charge_receipt_and_webhook(
    stack: Stack, collector: Collector, hooks: Receiver
) -> None:
    accepted = donate(stack)
    deadline = time.monotonic() + 60
    while not (
        found := [
            s
            for s in collector.spans
            if s.attributes.get("surge.request_id") == accepted["request_id"]
        ]
    ):
        assert time.monotonic() < deadline, "the request's span was not exported"
        time.sleep(0.1)
    [server] = found
    assert server.name == "POST /v1/campaigns/{campaign_id}/donations"
    assert (server.kind, server.parent_id, server.service) == (SERVER, "", "surge-api")
    assert server.attributes["http.route"] == "/v1/campaigns/{campaign_id}/donations"
    assert server.attributes["http.response.status_code"] == 202

    spans = collector.wait_for(
        server.trace_id,
        "enqueue donations.charge",
        "run donations.charge",
        "payment.charge",
        "enqueue donations.receipt",
        "run donations.receipt",
        "smtp.send",
        "run webhooks.deliver",
        "POST",
    )
    enqueue_charge, run_charge = spans["enqueue donations.charge"], spans["run donations.charge"]
    assert (enqueue_charge.parent_id, enqueue_charge.kind) == (server.span_id, PRODUCER)
    assert (run_charge.parent_id, run_charge.kind) == (enqueue_charge.span_id, CONSUMER)
    assert run_charge.service == "surge-worker"
    assert run_charge.attributes["messaging.destination.name"] == "critical"

    charge = spans["payment.charge"]
    assert (charge.parent_id, charge.kind) == (run_charge.span_id, CLIENT)
    assert charge.attributes["payment.gateway"] == "sandbox"
    assert charge.attributes["payment.outcome"] == "succeeded"
    assert charge.attributes["payment.amount_minor"] == 2500

    enqueue_receipt, run_receipt = (
        spans["enqueue donations.receipt"],
        spans["run donations.receipt"],
    )
    assert enqueue_receipt.parent_id == run_charge.span_id
    assert run_receipt.parent_id == enqueue_receipt.span_id
    send = spans["smtp.send"]
    assert (send.parent_id, send.kind) == (run_receipt.span_id, CLIENT)
    assert send.attributes["smtp.outcome"] == "sent"
    assert send.attributes["smtp.reply_code"] == 250
    assert send.attributes["smtp.recipient_domain"] == "example.org"

    # The webhook continues the trace of the charge that emitted its event.
    deliver, post = spans["run webhooks.deliver"], spans["POST"]
    assert deliver.parent_id == run_charge.span_id
    assert (post.parent_id, post.kind) == (deliver.span_id, CLIENT)
    assert post.attributes["http.response.status_code"] == 204
    [received] = hooks.at("/traced")  # the module's one donation
    assert f'"id": {accepted["id"]},'.encode() in received.body
    assert parsed(received.headers["traceparent"]) == (server.trace_id, post.span_id, True)

    everything = collector.trace(server.trace_id)
    assert_one_tree(everything, server)
    # Nothing personal in any span: no address, no token, no path with a token in it.
    assert not [s for s in everything if "donor@" in repr(s.attributes) + repr(s.events)]


def test_a_clients_traceparent_is_continued_through_plan_and_send_chunks(
    stack: Stack, collector: Collector, smtp: Recorder
) -> None:
    list_id, _ = make_audience(stack.staff, "traced", 3)
    trace_id, client_span, header = traceparent()
    scheduled_message(stack, list_id, {"traceparent": header})
    deadline = time.monotonic() + 60
    while True:
        spans = collector.trace(trace_id)
        chunks = [s for s in spans if s.name == "run dispatch.send_chunk"]
        sends = [s for s in spans if s.name == "smtp.send"]
        if len(chunks) == 2 and len(sends) == 3:
            break
        assert time.monotonic() < deadline, sorted(s.name for s in spans)
        time.sleep(0.1)
    by_name = {s.name: s for s in spans}
    server = by_name["POST /v1/campaigns/{campaign_id}/messages"]
    assert server.parent_id == client_span  # the client's span, not in our trace
    plan = by_name["run dispatch.plan"]
    assert plan.parent_id == by_name["enqueue dispatch.plan"].span_id
    fan_out = by_name["enqueue dispatch.send_chunk"]
    assert fan_out.parent_id == plan.span_id
    assert fan_out.attributes["messaging.batch.message_count"] == 2
    assert {c.parent_id for c in chunks} == {fan_out.span_id}
    sending = [s for s in spans if s.name == "smtp.send_chunk"]
    assert {s.parent_id for s in sending} == {c.span_id for c in chunks}
    assert sum(s.attributes["surge.sent"] for s in sending) == 3
    assert {s.parent_id for s in sends} <= {s.span_id for s in sending}
    assert_one_tree(spans, server)


def test_a_job_row_stores_the_traceparent_of_its_enqueue_span(
    stack: Stack, collector: Collector, database_url: str
) -> None:
    list_id, _ = make_audience(stack.staff, "later", 1)
    trace_id, _, header = traceparent()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    message_id = scheduled_message(stack, list_id, {"traceparent": header}, send_at=later)
    enqueue = collector.wait_for(trace_id, "enqueue dispatch.plan")["enqueue dispatch.plan"]
    stored = plan_traceparent(database_url, message_id)
    assert stored is not None and parsed(stored) == (trace_id, enqueue.span_id, True)
    assert stack.staff.post(f"/v1/messages/{message_id}/cancel").status_code == 200


def test_with_tracing_off_nothing_is_exported_and_no_traceparent_is_stored(
    pg_admin_url: str, template_url: str, smtp: Recorder, hooks: Receiver
) -> None:
    database_url = fresh_database(pg_admin_url, template_url, "t_tracing_off")
    with otlp_collector() as idle:
        # An endpoint is set, but each process is told not to trace, both standard ways.
        api_env = _stack_env(
            database_url, smtp, OTEL_EXPORTER_OTLP_ENDPOINT=idle.base, OTEL_SDK_DISABLED="true"
        )
        worker_env = _stack_env(
            database_url, smtp, OTEL_EXPORTER_OTLP_ENDPOINT=idle.base, OTEL_TRACES_EXPORTER="none"
        )
        port = free_port()
        api = start_api(api_env, port)
        worker = Process(["worker", "--queues", "critical,default,bulk"], worker_env)
        try:
            stack = _set_up(database_url, f"http://127.0.0.1:{port}", hooks, "untraced")
            _, _, header = traceparent()
            accepted = donate(stack, {"traceparent": header})
            wait_receipt(stack, accepted["id"])
            list_id, _ = make_audience(stack.staff, "untraced", 1)
            later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            message_id = scheduled_message(stack, list_id, {"traceparent": header}, send_at=later)
            assert plan_traceparent(database_url, message_id) is None
            deadline = time.monotonic() + 60
            while not hooks.at("/untraced"):
                assert time.monotonic() < deadline, "no webhook"
                time.sleep(0.1)
            assert "traceparent" not in hooks.at("/untraced")[0].headers
            with psycopg.connect(database_url) as conn:
                stored = conn.execute(
                    "select (select count(*) from jobs where traceparent is not null)"
                    " + (select count(*) from webhook_events where traceparent is not null)"
                ).fetchone()
            assert stored == (0,)
            stack.staff.close()
            stack.donor.close()
        finally:
            api.stop()
            worker.stop()
        # Both processes have exited: whatever they had queued would have been sent by now.
        assert idle.requests == 0
