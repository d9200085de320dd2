"""A login the database refuses is a setting to fix, not an outage to wait out.

Against a real PostgreSQL that checks passwords: the PostgreSQL on
127.0.0.1:5432 trusts every local login, so these tests use the session's
embedded PostgreSQL (tests/support/database.py), with a ``scram-sha-256``
line in its pg_hba.conf for each role made here (other roles keep ``trust``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from consumer.db.engine import check_connection, create_engine
from consumer.errors import DatabaseLoginRefused
from consumer.settings import Settings

from tests.support.broker import DEAD_LETTER, ConsumerProcess
from tests.support.database import embedded_server_url
from tests.support.platform_data import small_platform


@dataclass
class PasswordDatabase:
    role: str
    password: str
    server: sa.URL

    def url(self, password: str | None = None) -> str:
        return self.server.set(username=self.role, password=password or self.password,
                               database=self.role).render_as_string(hide_password=False)


@pytest.fixture
def password_database():
    """A role with a password, owning a database of its own name, that can log in only with that password."""
    server = embedded_server_url()
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    case = PasswordDatabase(f"svc_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex, server)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {case.role} LOGIN PASSWORD '{case.password}'")
        conn.exec_driver_sql(f"CREATE DATABASE {case.role} OWNER {case.role}")
        hba = conn.exec_driver_sql("SHOW hba_file").scalar()
        with open(hba) as existing:
            rules = existing.read()
        with open(hba, "w") as changed:
            changed.write(f"local all {case.role} scram-sha-256\nhost all {case.role} 127.0.0.1/32 scram-sha-256\n"
                          + rules)
        conn.exec_driver_sql("SELECT pg_reload_conf()")
    _wait_until_refused(case.url(password="not-the-password"))
    yield case
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {case.role} WITH (FORCE)")
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {case.role}")
    admin.dispose()


def _wait_until_refused(url: str, timeout: float = 10.0) -> None:
    """pg_reload_conf() only signals the server: wait until the new rule is in force."""
    probe = sa.create_engine(url, poolclass=sa.pool.NullPool)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            probe.connect().close()
        except sa.exc.DBAPIError:
            return
        time.sleep(0.05)
    raise AssertionError("the password rule did not come into force")


def _command(args: list[str], env: dict) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DB_", "OTEL_"))}
    return subprocess.run([sys.executable, "-m", "consumer", *args], env={**base, "LOG_FORMAT": "text", **env},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_the_engine_reports_a_wrong_password_as_a_refused_login(password_database):
    check_connection(create_engine(Settings.load({"DATABASE_URL": password_database.url()})))
    wrong = "wrong-" + password_database.password
    with pytest.raises(DatabaseLoginRefused) as caught:
        check_connection(create_engine(Settings.load({"DATABASE_URL": password_database.url(password=wrong)})))
    assert caught.value.exit_code == 2 and not caught.value.transient
    assert (f'refused the service\'s login: password authentication failed for user "{password_database.role}" '
            f"(SQLSTATE 28P01)") in caught.value.message
    assert wrong not in str(caught.value) and password_database.password not in str(caught.value)


@pytest.mark.parametrize("command", ["calibrate", "serve"])
def test_a_wrong_password_stops_the_command_at_start_with_exit_status_2_and_one_line(
        password_database, broker, command):
    wrong = "wrong-" + password_database.password
    result = _command([command], {"DATABASE_URL": password_database.url(password=wrong),
                                  "GOOGLE_CLOUD_PROJECT": broker.project, "PUBSUB_EMULATOR_HOST": broker.host})
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "refused the service's login: password authentication failed" in errors[0], \
        result.stderr
    assert wrong not in result.stderr and password_database.password not in result.stderr


def test_a_login_refused_during_a_run_is_dead_lettered_and_not_retried(password_database, broker, tmp_path):
    owner = sa.create_engine(password_database.url())
    small_platform(owner)
    consumer = ConsumerProcess(
        env={"DATABASE_URL": password_database.url(), "GOOGLE_CLOUD_PROJECT": broker.project,
             "PUBSUB_EMULATOR_HOST": broker.host, "MIRT_DEAD_LETTER_TOPIC": DEAD_LETTER,
             # a fit and its standard errors of a few seconds, for the password to change under them
             "MIRT_QUADRATURE_POINTS": "401", "MIRT_EM_TOLERANCE": "1e-8"},
        log_path=tmp_path / "consumer.log").start()
    try:
        broker.request({"request_id": "while-the-password-changes"})
        consumer.wait_for_log("fitting 2PL")
        rotated = uuid.uuid4().hex
        with owner.connect() as conn:  # the password is rotated and the service's connections dropped
            conn.exec_driver_sql(f"ALTER ROLE {password_database.role} PASSWORD '{rotated}'")
            conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = "
                                 f"'{password_database.role}' AND pid <> pg_backend_pid()")
            conn.commit()
        owner.dispose()

        consumer.wait_for_log("rejected and acked, never to be retried", timeout=120)
        (dead,) = broker.pull("dead-letter-watch", 1, timeout=30)
        time.sleep(12)  # past the subscription's 10 s ack deadline: a message still in play would come back
        log = consumer.messages()
        assert sum(m.startswith("calibration request while-the-password-changes received") for m in log) == 1
        # Said as what it is, with what to do; no attempt to record it in the database that refuses the login.
        assert any("to be replayed once the login is fixed" in m for m in log)
        assert not any("could not record rejected message" in m for m in log)
        assert "refused the service's login: password authentication failed" in dead.attributes["rejected-reason"]
        # Whoever waits for the request learns why, once: a rejection's answer, no run's (none was recorded).
        ((answer, _),) = broker.completed(1, timeout=30)
        assert answer["rejected"] and answer["status"] == "failed" and answer["request_id"] == "while-the-password-changes"
        assert "refused the service's login" in answer["error"]
        assert broker.completed(1, timeout=1) == []
        assert consumer.health("/healthz")[0] == 200
        status, body = consumer.health("/readyz")
        assert status == 503 and body["checks"]["database"] == "failing"
        text = consumer.log_path.read_text()
        assert password_database.password not in text and rotated not in text
    finally:
        consumer.kill()
