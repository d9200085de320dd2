"""Logs, traces and metrics: what the on-call engineer and the tracing backend get."""

from __future__ import annotations

import contextlib
import io
import json
import logging

import pytest
import sqlalchemy as sa
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumer.irt.simulate import simulate
from consumer.run import calibrate
from consumer.settings import Settings
from consumer.telemetry import FitProgress, configure_logging

from tests.support.cli import cli, log_entries
from tests.support.platform_data import AS_OF, load_simulation
from tests.support.runs import REQUEST, wait_until_gone


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


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


def test_closing_a_connection_the_server_dropped_puts_no_traceback_in_the_log(engine):
    import sqlalchemy as sa
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    victim = engine.connect()
    pid = victim.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with engine.connect() as admin:
        admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        admin.commit()
    wait_until_gone(engine, pid)  # so that closing it really meets a dropped connection
    with contextlib.suppress(Exception):  # as the run lock's connection is let go
        victim.close()
    engine.dispose()
    assert "Traceback" not in stream.getvalue() and "Exception terminating" not in stream.getvalue()
    logging.getLogger("consumer.test").error("a real error still shows")
    assert "a real error still shows" in stream.getvalue()
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


def test_every_run_step_is_a_span_with_its_counts(engine, spans):
    with engine.begin() as conn:
        load_simulation(conn, simulate(800, 40, 15, seed=9), anchors=range(0, 40, 4))
    spans.clear()
    summary = calibrate(engine, Settings.load({}), REQUEST)
    by_name = {s.name: s for s in spans.get_finished_spans()}
    for step in ("load", "anchors", "fit", "link", "score", "write"):
        assert f"calibration.{step}" in by_name, step
        assert by_name[f"calibration.{step}"].attributes["run_id"] == summary.run_id
    assert by_name["calibration.load"].attributes["observations"] == 12000
    assert by_name["calibration.anchors"].attributes["anchors"] == 10
    assert by_name["calibration.fit"].attributes["converged"] is True
    assert by_name["calibration.write"].attributes["abilities"] == 800


def test_exporters_are_chosen_by_the_standard_variables(database_url):
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        load_simulation(conn, simulate(500, 30, 10, seed=1))
    engine.dispose()
    result = cli("calibrate", "--as-of", AS_OF.isoformat(),
                 env={"DATABASE_URL": database_url, "OTEL_TRACES_EXPORTER": "console"})
    assert result.returncode == 0, result.stderr
    assert '"name": "calibration.fit"' in result.stderr and '"name": "calibration.write"' in result.stderr

    quiet = cli("calibrate", "--as-of", AS_OF.isoformat(), env={"DATABASE_URL": database_url})
    assert '"name": "calibration.fit"' not in quiet.stderr

    wrong = cli("calibrate", env={"DATABASE_URL": database_url, "OTEL_TRACES_EXPORTER": "zipkin"})
    assert wrong.returncode == 2
    assert [e["message"] for e in log_entries(wrong) if e["severity"] == "ERROR"] == [
        "OTEL_TRACES_EXPORTER must be console, otlp or none, got 'zipkin'"]


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
