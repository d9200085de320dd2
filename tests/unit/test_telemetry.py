"""Logs and traces: what the on-call engineer and the tracing backend get, secrets kept out."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry import trace

from consumer.settings import Settings
from consumer.telemetry import FitProgress, configure_logging


def test_secrets_never_reach_a_log_line():
    stream = io.StringIO()
    settings = Settings.load({"DATABASE_URL": "postgresql://svc:hunter2-secret@db/platform", "DB_PASS": "p4ss-word"})
    configure_logging("info", "json", secrets=settings.secrets(), stream=stream)
    log = logging.getLogger("consumer.test")
    log.error("connect failed for %s", settings.database_url)
    log.warning("driver said: password p4ss-word rejected")
    text = stream.getvalue()
    assert "hunter2-secret" not in text and "p4ss-word" not in text and "postgresql://svc" not in text
    assert text.count("***") == 2
    configure_logging("info", "text")


def test_a_database_url_without_a_password_is_named_in_full():
    stream = io.StringIO()
    settings = Settings.load({"DATABASE_URL": "postgresql+pg8000://svc@db.internal/platform"})
    configure_logging("info", "json", secrets=settings.secrets(), stream=stream)
    logging.getLogger("consumer.test").error("cannot reach the database at %s", settings.database_url)
    assert "postgresql+pg8000://svc@db.internal/platform" in stream.getvalue() and "***" not in stream.getvalue()
    configure_logging("info", "text")


def test_json_log_lines_carry_the_trace(spans):
    stream = io.StringIO()
    configure_logging("info", "json", project="exam-prep", stream=stream)
    with trace.get_tracer("test").start_as_current_span("outer") as span:
        logging.getLogger("consumer.test").info("inside a span")
    entry = json.loads(stream.getvalue().splitlines()[-1])
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert entry["severity"] == "INFO" and entry["message"] == "inside a span"
    assert entry["logging.googleapis.com/trace"] == f"projects/exam-prep/traces/{trace_id}"
    configure_logging("info", "text")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_line_redrawn_in_a_terminal_and_a_periodic_log_line_elsewhere(caplog):
    terminal = _Terminal()
    progress = FitProgress(terminal)
    progress(1, -1234.5, 0.5)
    progress.close()
    assert terminal.getvalue().startswith("\r\033[K") and "EM iteration 1: log-likelihood -1234.500" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\033[K")  # the line is cleared when the fit ends

    pipe = io.StringIO()
    quiet = FitProgress(pipe, interval=0.0)
    with caplog.at_level(logging.INFO, logger="consumer.run"):
        quiet(7, -99.0, 1e-3)
    assert pipe.getvalue() == ""  # nothing drawn where nobody watches
    assert "EM iteration 7: log-likelihood -99.000, largest change 1.00e-03" in caplog.text
