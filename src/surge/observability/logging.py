"""JSON logs with the request id of the request being served, if any."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from surge.config import Settings
from surge.observability import tracing

#: Set by the API's request middleware; every log line written while serving carries it.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        rid = request_id.get()
        if rid is not None:
            record.request_id = rid
        if tracing.active:
            # The trace a line belongs to, when it is sampled: logs and traces meet by id.
            span = tracing.current_span().get_span_context()
            if span.trace_flags.sampled:
                record.trace_id = f"{span.trace_id:032x}"
                record.span_id = f"{span.span_id:016x}"
        return True


def _json(log_format: str) -> bool:
    """Whether to log JSON: asked for, or ``auto`` with stderr not a terminal (a collector)."""
    if log_format == "auto":
        return not sys.stderr.isatty()
    return log_format == "json"


def configure_logging(settings: Settings, *, process: str = "surge") -> None:
    """Send every log record to stderr, as one JSON object a line (or text, for humans)."""
    handler = logging.StreamHandler(sys.stderr)
    if _json(settings.log_format):
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"process": process},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # uvicorn's own access log duplicates ours; its error log is kept.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.error").handlers[:] = []
    logging.getLogger("uvicorn.error").propagate = True
