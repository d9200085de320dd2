"""The command line as an operator meets it: exit codes, one clear line per problem, no tracebacks."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from consumer.irt.simulate import simulate

from tests.support.cli import cli, error_lines, log_entries
from tests.support.platform_data import AS_OF, load_simulation


def test_help_lists_every_command_and_each_has_help():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("calibrate", "migrate", "serve", "publish", "demo"):
        assert command in result.stdout
        assert cli(command, "--help").returncode == 0


def test_help_shows_the_allowed_values():
    calibrate = " ".join(cli("calibrate", "--help").stdout.split())
    assert "stocking-lord|haebara|mean-mean|mean-sigma|fipc" in calibrate and "1PL|2PL|3PL" in calibrate
    assert "--demo" in calibrate and "--standard-errors exact|approximate" in calibrate
    publish = " ".join(cli("publish", "--help").stdout.split())
    for allowed in ("1PL|2PL|3PL", "stocking-lord|haebara|mean-mean|mean-sigma|fipc",
                    "a whole number of days > 0", "a whole number > 0"):
        assert allowed in publish, allowed


@pytest.mark.parametrize("args, expected", [
    (["--bogus"], "python -m consumer: unknown flag --bogus; see python -m consumer --help"),
    ([], "python -m consumer: a COMMAND is needed: one of calibrate, migrate"),
    (["calibrat"], "python -m consumer: argument COMMAND: invalid choice: 'calibrat'"),
    (["calibrate", "--bogus"], "python -m consumer calibrate: unknown flag --bogus; "
                               "see python -m consumer calibrate --help"),
    (["calibrate", "--as-of", "yesterday"], "python -m consumer calibrate: argument --as-of: not an ISO 8601 time: "
                                            "'yesterday'"),
    (["tag-anchors", "--min-a", "3", "--max-a", "1"], "--max-a must be at least --min-a (3), got 1"),
    (["tag-anchors", "--max-candidates", "0"], "--max-candidates must be at least 1, got 0"),
    (["demo", "--students", "0"], "--students must be at least 1, got 0"),
    (["demo", "--students", "-5"], "--students must be at least 1, got -5"),
    (["demo", "--items", "5", "--answers", "40"], "--items must be at least 60"),
    (["demo", "--answers", "500"], "--answers must lie between 1 and --items (400)"),
    (["demo", "--students", "100"], "--students x --answers (100 x 40) must be at least MIRT_MIN_RESPONSES x "
                                    "--items (20 x 400)"),
    (["demo", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["demo", "--students", "many"], "python -m consumer demo: argument --students: invalid int value: 'many'"),
    (["report", "some-run", "-o", "/nonexistent/dir/r.html"], "--output /nonexistent/dir/r.html: directory "
                                                              "/nonexistent/dir does not exist"),
])
def test_a_command_line_mistake_is_one_line_naming_the_flag_and_exit_status_2(args, expected):
    # The database would not answer: each mistake is found before anything is tried.
    result = cli(*args, env={"DATABASE_URL": "postgresql://svc@127.0.0.1:1/platform", "MIRT_DATA_DIR": "/nonexistent"})
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result)
    assert expected in line
    assert [entry["severity"] for entry in log_entries(result)] == ["ERROR"]
    assert "usage:" not in result.stderr and "Traceback" not in result.stderr and result.stdout == ""


def test_publish_checks_its_timeout():
    result = cli("publish", "--timeout", "0", env={"GOOGLE_CLOUD_PROJECT": "demo-project",
                                                   "PUBSUB_EMULATOR_HOST": "127.0.0.1:1"})
    assert result.returncode == 2 and error_lines(result) == ["--timeout must be a number of seconds > 0, got 0"]


def unexpected_failure(database_url: str, **env) -> subprocess.CompletedProcess:
    """A report of a database whose run table is not the service's: an error the command does not expect."""
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE mirt_fit_meta (something int)")
    engine.dispose()
    return cli("report", "some-run", "-o", os.devnull, env={"DATABASE_URL": database_url, **env})


def test_an_unexpected_failure_offers_the_traceback_and_gives_it_at_debug_level(database_url):
    plain = unexpected_failure(database_url)
    assert plain.returncode == 1
    (line,) = error_lines(plain)
    assert line.startswith("unexpected failure: ProgrammingError") and "set LOG_LEVEL=debug" in line
    assert not any("stack_trace" in entry for entry in log_entries(plain))

    debug = cli("report", "some-run", "-o", os.devnull, env={"DATABASE_URL": database_url, "LOG_LEVEL": "debug"})
    assert debug.returncode == 1
    (line,) = error_lines(debug)
    assert "set LOG_LEVEL=debug" not in line and "the traceback follows" in line
    assert any("Traceback" in entry.get("stack_trace", "") for entry in log_entries(debug))


@pytest.mark.parametrize("env, flags, expected", [
    ({"MIRT_LOOKBACK_DAYS": "-3"}, [], "MIRT_LOOKBACK_DAYS must be a whole number of days > 0, got '-3'"),
    ({"MIRT_MODEL": "4PL"}, [], "MIRT_MODEL must be one of 1PL, 2PL, 3PL"),
    ({"MIRT_MAX_OBS": "lots"}, [], "MIRT_MAX_OBS must be a whole number > 0, got 'lots'"),
    ({}, ["--max-obs", "1e3x"], "--max-obs must be a whole number > 0, got '1e3x'"),
    ({}, ["--model", "4PL"], "--model must be one of"),
    ({"DATABASE_URL": "mysql://u@h/db"}, [], "DATABASE_URL must name a PostgreSQL database"),
    ({"INSTANCE_CONNECTION_NAME": "proj:region:inst"}, [], "DB_USER or DB_NAME is not"),
])
def test_a_bad_setting_is_one_line_and_exit_status_2(env, flags, expected):
    result = cli("calibrate", *flags, env=env)
    assert result.returncode == 2, result.stderr
    assert len(error_lines(result)) == 1 and expected in error_lines(result)[0]
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_is_one_line_without_the_password():
    result = cli("calibrate", env={"DATABASE_URL": "postgresql://svc:s3cret-pw@127.0.0.1:1/platform"})
    assert result.returncode == 3
    (line,) = error_lines(result)
    assert "cannot reach the database at postgresql+pg8000://svc@127.0.0.1:1/platform" in line
    assert "check DATABASE_URL" in line
    assert "s3cret-pw" not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_a_missing_database_on_a_live_server_is_a_setting_error_that_says_so(server_url):
    url = server_url.set(database="no_such_database_here").render_as_string(hide_password=False)
    result = cli("calibrate", env={"DATABASE_URL": url})
    assert result.returncode == 2  # a setting to fix, not an outage to wait out
    (line,) = error_lines(result)
    assert 'answers, but has no such database: database "no_such_database_here" does not exist' in line


def test_a_closed_port_says_nothing_listens_there_not_the_drivers_text():
    result = cli("calibrate", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/platform"})
    assert result.returncode == 3
    (line,) = error_lines(result)
    assert "connection refused: nothing listens on that host and port" in line and "source_address" not in line


def test_a_missing_database_over_a_unix_socket_says_so_every_time():
    # Over a Unix socket the server's refusal used to come out as pg8000's "network error" most times:
    # its goodbye on the closed socket failed and hid the server's message.
    from consumer.db.engine import check_connection, describe
    from consumer.errors import DatabaseMissing
    from tests.support.database import embedded_server_url
    url = embedded_server_url().set(database="no_such_database_here")
    engine = sa.create_engine(url)
    assert "unix_sock" in url.query
    assert describe(engine).startswith("postgresql+pg8000://postgres@/no_such_database_here (Unix socket ")
    for _ in range(20):
        with pytest.raises(DatabaseMissing) as failure:
            check_connection(engine)
        assert 'database "no_such_database_here" does not exist (SQLSTATE 3D000)' in str(failure.value)
    engine.dispose()


def test_the_report_reads_and_creates_nothing_in_a_database_without_runs(database_url):
    result = cli("report", "some-run", "-o", os.devnull, env={"DATABASE_URL": as_typed(database_url)})
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert "no calibration run some-run in postgresql+pg8000://" in line and sa.make_url(database_url).database in line
    assert "it has no mirt_fit_meta table" in line
    assert "a run of the demo is read with --demo" in line
    assert public_tables(database_url) == set()


def public_tables(database_url: str) -> set[str]:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        tables = {r[0] for r in conn.exec_driver_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    engine.dispose()
    return tables


def as_typed(database_url: str) -> str:
    """The URL as a person writes it (a DATABASE_URL is masked in the log wherever it appears verbatim)."""
    return database_url.replace("postgresql+pg8000://", "postgresql://", 1)


def test_a_database_without_the_platforms_tables_is_left_untouched(database_url):
    # A wrong DATABASE_URL: calibrate says so before creating anything there.
    result = cli("calibrate", "--json", env={"DATABASE_URL": as_typed(database_url)})
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result)
    assert "table (or view) attempt is missing" in line and "table (or view) question is missing" in line
    assert sa.make_url(database_url).database in line and "nothing was created there" in line
    assert "check that DATABASE_URL points at the platform's database" in line
    assert result.stdout == "" and public_tables(database_url) == set()
    tagging = cli("tag-anchors", env={"DATABASE_URL": as_typed(database_url)})
    assert tagging.returncode == 2 and "table (or view) question is missing" in error_lines(tagging)[0]
    assert public_tables(database_url) == set()


def test_missing_platform_tables_fail_the_run_with_a_clear_line(database_url):
    # The service's own tables are there (earlier runs): the run is recorded as failed, for the record.
    assert cli("migrate", env={"DATABASE_URL": database_url}).returncode == 0
    result = cli("calibrate", "--json", env={"DATABASE_URL": database_url})
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert "table (or view) attempt is missing" in line and "table (or view) question is missing" in line
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed" and "attempt is missing" in summary["error"]
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT status FROM mirt_fit_meta").scalar() == "failed"
    engine.dispose()


def test_a_missing_column_is_named(database_url):
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE question (id bigint, meta jsonb)")
        conn.exec_driver_sql("CREATE TABLE attempt (student_id text, question_id bigint, correct boolean)")
    engine.dispose()
    first = cli("calibrate", env={"DATABASE_URL": database_url})  # nothing of the service's there yet
    assert first.returncode == 2 and "attempt lacks column completed_at" in error_lines(first)[0]
    assert public_tables(database_url) == {"question", "attempt"}
    assert cli("migrate", env={"DATABASE_URL": database_url}).returncode == 0
    result = cli("calibrate", env={"DATABASE_URL": database_url})
    assert result.returncode == 1
    assert "attempt lacks column completed_at" in error_lines(result)[0]


def test_calibrate_prints_its_summary_as_json_and_exits_0(database_url):
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        load_simulation(conn, simulate(1500, 60, 20, seed=3), anchors=range(0, 60, 5), old_scale=(1.1, 0.2))
    engine.dispose()
    result = cli("calibrate", "--json", "--as-of", AS_OF.isoformat(), "--request-id", "weekly-48",
                 "--model", "2PL", env={"DATABASE_URL": database_url})
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "succeeded" and summary["request_id"] == "weekly-48"
    assert summary["counts"]["observations"] == 30000 and summary["counts"]["anchors"] == 12
    assert summary["linking_constants"]["method"] == "stocking-lord"
    assert set(summary["durations"]) >= {"load", "anchors", "fit", "link", "score", "write", "total"}
    # The log tells the story, one step per line.
    assert all(set(entry) >= {"severity", "message", "time"} for entry in log_entries(result))
    log = "\n".join(entry["message"] for entry in log_entries(result))
    for fragment in ("settings: model=2PL", "loaded 30000 observations from 1500 users on 60 items",
                     "loaded 12 anchors", "fitted 2PL", "linking constants (stocking-lord, 12 anchors)",
                     "upserted 60 item parameters and 1500 abilities", f"run {summary['run_id']} succeeded"):
        assert fragment in log, fragment


def test_migrate_is_idempotent_and_never_creates_platform_tables(database_url):
    env = {"DATABASE_URL": database_url}
    first, second = cli("migrate", env=env), cli("migrate", env=env)
    assert first.returncode == 0 and "applied migration 0001_service_tables" in first.stderr
    assert "applied migration 0002_consumer" in first.stderr
    assert second.returncode == 0 and "applied migration" not in second.stderr
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        tables = {r[0] for r in conn.exec_driver_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    engine.dispose()
    assert {"mirt_fit_meta", "mirt_item_params", "mirt_ability", "mirt_item_params_history",
            "mirt_ability_history", "mirt_schema_migrations"} <= tables
    assert not {"attempt", "question"} & tables


def test_demo_runs_on_the_embedded_database_and_shows_recovery(tmp_path):
    result = cli("demo", "--students", "1500", "--items", "80", "--answers", "25",
                 env={"MIRT_DATA_DIR": str(tmp_path)}, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "linking slope" in out and "linking intercept" in out
    slope_found, slope_true = [float(x) for x in out.split("linking slope")[1].split()[:2]]
    assert slope_true == 1.2 and abs(slope_found - slope_true) < 0.15
    assert "anchor question" in result.stderr and "skipped" in result.stderr  # the planted broken anchor
    assert "Rows written: 80 item parameters, 1500 abilities" in out
    # The whole loop: a request through Pub/Sub, and the completed event subscribers get.
    event = json.loads(out.split("as subscribers receive it:")[1].split("\n\n")[0])
    assert event["status"] == "succeeded" and event["request_id"] == "demo-2026-week-1"
    assert event["linking_constants"]["slope"] == pytest.approx(slope_found, abs=1e-3)
    # The event names the command that exports the bank, and that command works on the demo's database.
    assert event["export"]["command"] == "python -m consumer export --format json"
    exported = cli("export", "--demo", "--format", "csv", env={"MIRT_DATA_DIR": str(tmp_path)})
    assert exported.returncode == 0, exported.stderr
    from consumer.export import read_csv
    bank = read_csv(exported.stdout)
    assert bank.meta["source"] == "mirt_item_params" and len(bank.items) == bank.meta["n_items"] == 80
    assert all(item["a"] > 0 and item["b_se"] > 0 for item in bank.items)


def _printed_report_command(stdout: str) -> str:
    return stdout.split("The run's review page")[1].splitlines()[1].strip()


def test_the_demo_keeps_its_history_and_starts_over_only_when_asked(tmp_path):
    """A second demo is the next week (new students, answers after the first week's) and its run is the scope's
    second; the command the first demo printed still writes the first run's page; --fresh starts over."""
    # (run outside the checkout, the commands must still import this checkout's package)
    env = {"MIRT_DATA_DIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    small = ("--students", "1500", "--items", "80", "--answers", "25")
    somewhere = tmp_path / "elsewhere"  # where the user stood: the printed paths must not depend on it
    somewhere.mkdir()
    first = cli("demo", *small, env=env, timeout=300, cwd=somewhere)
    assert first.returncode == 0, first.stderr
    printed = _printed_report_command(first.stdout)
    output = Path(shlex.split(printed)[-1])
    assert output.is_absolute() and output.parent == somewhere and f"MIRT_DATA_DIR={tmp_path} " in printed

    second = cli("demo", *small, env=env, timeout=300, cwd=somewhere)
    assert second.returncode == 0, second.stderr
    event = json.loads(second.stdout.split("as subscribers receive it:")[1].split("\n\n")[0])
    assert event["request_id"] == "demo-2026-week-2"
    # Both weeks' answers are in its window: twice the students and observations, the same items.
    assert "Rows written: 80 item parameters, 3000 abilities" in second.stdout
    # Its scale is set on both weeks' students, N(0, 1) and N(0.1, 1): mean 0.05, SD sqrt(1 + 0.05^2); the true
    # constants onto the anchors' old scale (slope 1.2, intercept 0.35) follow, and the run finds them.
    for name, true in (("slope", 1.2 * (1 + 0.05**2) ** 0.5), ("intercept", 0.35 + 1.2 * 0.05)):
        found, printed_true = (float(x) for x in second.stdout.split(f"linking {name}")[1].split()[:2])
        assert printed_true == pytest.approx(true, abs=5e-4) and abs(found - true) < 0.15
    listed = cli("runs", "--demo", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["request_id"] for r in runs] == ["demo-2026-week-2", "demo-2026-week-1"]  # newest first
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    assert runs[0]["counts"]["users"] == 2 * runs[1]["counts"]["users"] == 3000
    assert runs[0]["counts"]["observations"] == 2 * runs[1]["counts"]["observations"]
    # Each with its window (MIRT_LOOKBACK_DAYS, 60 by default, before the run) and who asked for it.
    for run in runs:
        since, until = (datetime.fromisoformat(run["window"][k]) for k in ("since", "until"))
        assert until - since == timedelta(days=60) and abs(until - datetime.fromisoformat(run["started_at"])) < \
            timedelta(minutes=1)
        assert run["requested_by"] == "demo"
    table = cli("runs", "--demo", env=env).stdout.splitlines()
    assert len(table) == 3 and "answers from" in table[0] and "asked by" in table[0]
    assert re.search(rf"\s80\s+3000\s.*\sdemo\s+{runs[0]['run_id']}$", table[1]), table[1]
    assert f"{since:%Y-%m-%d}..{until:%Y-%m-%d}" in table[2]
    assert cli("runs", "--demo", "--status", "failed", env=env).stdout.strip() == "no runs that ended failed"
    # A run id that is not there points at the list of the same database's runs.
    unknown = cli("report", "0123abcd", "--demo", env=env)
    assert unknown.returncode == 1 and error_lines(unknown)[0].endswith("list the runs with: python -m consumer runs "
                                                                         "--demo")
    # The new week's answers all came after the first week's (a later week, not the same one again).
    from consumer.db.engine import embedded_engine
    engine = embedded_engine(tmp_path, "mirt_demo")
    with engine.connect() as conn:
        last_of_week_1, first_of_week_2 = conn.execute(sa.text(
            "SELECT max(completed_at) FILTER (WHERE student_id < 'student-001500'), "
            "min(completed_at) FILTER (WHERE student_id >= 'student-001500' AND completed_at > now() - "
            "interval '60 days') FROM attempt")).one()
    engine.dispose()
    assert first_of_week_2 > last_of_week_1

    # The first demo's command, pasted as printed after the second demo, still writes the first run's page ...
    shown = subprocess.run(["bash", "-c", printed], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                           env={**{k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DATABASE_URL"))},
                                "PYTHONPATH": env["PYTHONPATH"]},
                           stdin=subprocess.DEVNULL)
    assert shown.returncode == 0, shown.stderr
    assert f"Calibration run {runs[1]['run_id']}" in output.read_text()
    # ... and the second run's page compares it with the first.
    latest = cli("report", "--latest", "--demo", "-o", str(tmp_path / "latest.html"), env=env)
    assert latest.returncode == 0, latest.stderr
    changes = (tmp_path / "latest.html").read_text().split('id="changes"')[1]
    assert runs[1]["run_id"] in changes and "80 items in both runs" in changes

    # Another bank (other --items) cannot be the next week of this one: one line, nothing added.
    other = cli("demo", "--students", "1500", "--items", "100", "--answers", "25", env=env, timeout=300)
    assert other.returncode == 2
    (line,) = error_lines(other)
    assert "holds a bank of 80 items" in line and "--fresh" in line
    assert len(json.loads(cli("runs", "--demo", "--json", env=env).stdout)) == 2

    # --fresh starts over: one run, week 1 again, and the earlier runs are gone.
    fresh = cli("demo", *small, "--fresh", env=env, timeout=300, cwd=somewhere)
    assert fresh.returncode == 0, fresh.stderr
    runs = json.loads(cli("runs", "--demo", "--json", env=env).stdout)
    assert [r["request_id"] for r in runs] == ["demo-2026-week-1"]
    gone = cli("report", json.loads(listed.stdout)[1]["run_id"], "--demo", "-o", str(tmp_path / "gone.html"), env=env)
    assert gone.returncode == 1 and "no calibration run" in error_lines(gone)[0]
