"""Logs and traces of real runs: a dropped connection closed quietly, a span per step, exporters by the standard variables."""

from __future__ import annotations

import contextlib
import io
import logging

import sqlalchemy as sa

from consumer.irt.simulate import simulate
from consumer.run import calibrate
from consumer.settings import Settings
from consumer.telemetry import configure_logging

from tests.support.cli import cli, log_entries
from tests.support.platform_data import AS_OF, load_simulation
from tests.support.runs import REQUEST, wait_until_gone


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

