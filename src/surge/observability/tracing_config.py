"""Tracing's switch and its OpenTelemetry SDK pipeline, from the standard ``OTEL_*`` variables.

On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``, or both,
comma-separated) or, with it unset, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set; off otherwise, and off whatever else is set
with ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``.

The SDK reads everything else itself: the sampler (``OTEL_TRACES_SAMPLER``/``_ARG``), the
resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``), the exporter's endpoint,
headers, timeout and compression (``OTEL_EXPORTER_OTLP_*``), the batch processor
(``OTEL_BSP_*``) and span limits (``OTEL_SPAN_*``). ``read_config`` only refuses what the SDK
would quietly replace by a default: an unknown sampler (it would sample everything), a ratio
that is not a probability (the same), a protocol other than http/protobuf (no exporter for
it is installed).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from surge import __version__
from surge.config import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

SAMPLERS = {
    # name: (follows the parent's decision, probability of a root being sampled; None: _ARG)
    "always_on": (False, 1.0),
    "always_off": (False, 0.0),
    "traceidratio": (False, None),
    "parentbased_always_on": (True, 1.0),
    "parentbased_always_off": (True, 0.0),
    "parentbased_traceidratio": (True, None),
}
EXPORTERS = ("otlp", "console")


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """What ``read_config`` found: tracing is on, with these exporters and this sampler."""

    exporters: tuple[str, ...]
    sampler: str
    #: Probability that a trace without a parent (a request, a job nobody traced) is sampled.
    rate: float
    #: Whether a span with a parent follows the parent's decision (the parentbased_* samplers).
    parent_based: bool


def read_config(environ: Mapping[str, str]) -> TracingConfig | None:
    """Tracing's configuration from ``OTEL_*`` variables; None when tracing is off.

    ConfigError for a value the SDK would replace with a default behind the operator's back.
    """
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    exporters = tuple(dict.fromkeys(n.strip() for n in named.split(",") if n.strip()))
    if not exporters and (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        exporters = ("otlp",)
    if not exporters or exporters == ("none",):
        return None
    unknown = [n for n in exporters if n not in EXPORTERS]
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not one of otlp, console, none"
        )
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


def providers(config: TracingConfig, process: str) -> tuple[TracerProvider, TracerProvider]:
    """(the provider of every span, the provider of roots sampled by Surge's head decision).

    Both share the resource and the exporting batch processors; the first one's sampler is
    the configured one (read by the SDK), the second's is always on, since its spans were
    sampled already. Shut the first down to flush and stop both.
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    resource = _resource(process)
    main = TracerProvider(resource=resource, shutdown_on_exit=False)
    roots = TracerProvider(sampler=ALWAYS_ON, resource=resource, shutdown_on_exit=False)
    for name in config.exporters:
        processor = BatchSpanProcessor(_exporter(name))  # OTEL_BSP_* read by the SDK
        main.add_span_processor(processor)
        roots.add_span_processor(processor)
    return main, roots


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # One span a line, like the JSON logs, rather than the SDK's indented blocks.
        return ConsoleSpanExporter(
            out=sys.stdout, formatter=lambda s: s.to_json(indent=None) + "\n"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout, compression: OTEL_EXPORTER_OTLP_*


def _resource(process: str) -> Resource:
    """The SDK's resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) with Surge's defaults
    where the operator named nothing: service ``surge-<process>``, its version, an instance."""
    from opentelemetry.sdk.resources import Resource

    detected = Resource.create()
    attributes = dict(detected.attributes)
    if str(attributes.get("service.name", "")).startswith("unknown_service"):
        attributes["service.name"] = f"surge-{process}"
    attributes.setdefault("service.version", __version__)
    attributes.setdefault("service.instance.id", str(uuid.uuid4()))
    attributes["surge.process"] = process
    return Resource(attributes, detected.schema_url)
