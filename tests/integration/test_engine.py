"""The service's connections to a real PostgreSQL: timeouts a dead peer trips, a partition, TLS the server lacks."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from consumer.db.engine import create_engine
from consumer.settings import Settings

from tests.support.cli import cli, error_lines
from tests.support.tcp_proxy import CuttableProxy


@pytest.fixture
def proxy(server_url):
    proxy = CuttableProxy.in_front_of(server_url)
    yield proxy
    proxy.close()


def test_the_services_connections_notice_a_dead_peer_but_not_a_long_statement(database_url, proxy):
    import socket
    from consumer.db import engine as engine_module
    eng = create_engine(Settings.load({"DATABASE_URL": proxy.url(database_url)}))
    with eng.connect() as conn:
        sock = conn.connection.dbapi_connection._usock
        assert sock.gettimeout() == engine_module.READ_TIMEOUT_SECONDS >= 600  # minutes: a load query may think
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60_000
        assert conn.exec_driver_sql("SELECT 1 FROM pg_sleep(1.5)").scalar() == 1
    eng.dispose()
    # A timeout in the URL is the operator's choice for every read, typed for pg8000 (a string would break it).
    chosen = create_engine(Settings.load({"DATABASE_URL": proxy.url(database_url) + "?timeout=7.5"}))
    with chosen.connect() as conn:
        assert conn.connection.dbapi_connection._usock.gettimeout() == 7.5
    chosen.dispose()


def test_the_connection_check_fails_instead_of_hanging_during_a_partition(database_url, proxy):
    import threading
    from consumer.db.engine import check_connection
    from consumer.errors import DatabaseUnavailable
    eng = create_engine(Settings.load({"DATABASE_URL": proxy.url(database_url)}))
    check_connection(eng, timeout=1.0)
    with eng.connect() as conn:  # a pooled connection open across the partition does not answer for the check
        conn.exec_driver_sql("SELECT 1")
    proxy.partition()
    outcome = []

    def check():
        try:
            check_connection(eng, timeout=1.0)
            outcome.append("answered")
        except DatabaseUnavailable as problem:
            outcome.append(problem)

    worker = threading.Thread(target=check, daemon=True)
    worker.start()
    worker.join(20)
    assert outcome, "check_connection hung during the partition"
    assert isinstance(outcome[0], DatabaseUnavailable) and "no answer in time" in outcome[0].message
    proxy.heal()
    check_connection(eng, timeout=1.0)
    eng.dispose()


def test_tls_asked_of_a_server_without_it_is_a_setting_error_not_an_outage(server_url):
    """The test server has no SSL: sslmode=require cannot succeed however often it is tried (exit 2, not 3)."""
    from consumer.db.engine import check_connection
    from consumer.errors import DatabaseTLSMismatch
    with sa.create_engine(server_url).connect() as conn:
        if conn.exec_driver_sql("SHOW ssl").scalar() == "on":
            pytest.skip("this test server speaks TLS")
    url = server_url.update_query_dict({"sslmode": "require"}).render_as_string(hide_password=False)
    with pytest.raises(DatabaseTLSMismatch) as caught:
        check_connection(create_engine(Settings.load({"DATABASE_URL": url})))
    assert caught.value.exit_code == 2 and not caught.value.transient
    assert "does not speak TLS, and DATABASE_URL asks for it (the server answered: Server refuses SSL)" in str(caught.value)
    assert "sslmode=prefer or disable" in caught.value.hint

    # serve stops at start with exit status 2, where an outage (exit 3) would be waited out for ever.
    for command in ("calibrate", "serve"):
        result = cli(command, env={"DATABASE_URL": url, "LOG_FORMAT": "json", "GOOGLE_CLOUD_PROJECT": "tls-test"})
        assert result.returncode == 2, result.stderr[-2000:]
        (line,) = error_lines(result)
        assert "does not speak TLS" in line
