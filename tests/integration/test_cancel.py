"""Cancelling a running statement when the process is asked to stop, against the test PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from consumer.db.cancel import POLL_SECONDS, StatementCancelled, cancelled_when

#: How soon after ``should_stop`` turns true the statement must be gone: a fraction of a second.
PROMPTLY = 0.5


class Abandoned(Exception):
    pass


def stop_in(seconds: float) -> threading.Event:
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    return stop


def test_a_long_statement_is_cancelled_a_fraction_of_a_second_after_should_stop_turns_true(engine):
    stop = stop_in(0.5)
    started = time.monotonic()
    with pytest.raises(StatementCancelled) as caught:
        with engine.begin() as conn, cancelled_when(conn, stop.is_set):
            conn.exec_driver_sql("SELECT pg_sleep(30)")
    took = time.monotonic() - started
    assert took < 0.5 + PROMPTLY, f"the statement ran on for {took - 0.5:.2f} s after should_stop said yes"
    assert "57014" in str(caught.value.__cause__)
    with engine.connect() as conn:  # nothing left running on the server
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' "
                                    "AND state = 'active'").scalar() == 0


def test_the_exception_is_the_callers_and_the_connection_is_usable_after_its_rollback(engine):
    with engine.connect() as conn:
        with pytest.raises(Abandoned):
            with cancelled_when(conn, stop_in(0.2).is_set, stopped=lambda: Abandoned("shutting down")):
                conn.exec_driver_sql("SELECT pg_sleep(30)")
        conn.rollback()
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1


def test_a_statement_that_starts_after_the_stop_is_cancelled_too(engine):
    """A cancel that reaches the connection between statements is ignored by the server: it is sent again."""
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    with pytest.raises(StatementCancelled):
        with engine.begin() as conn, cancelled_when(conn, stop.is_set):
            time.sleep(3 * POLL_SECONDS)  # cancels reach the idle connection, and are dropped
            conn.exec_driver_sql("SELECT pg_sleep(30)")
    assert time.monotonic() - started < 3 * POLL_SECONDS + PROMPTLY


def test_without_a_stop_the_block_runs_to_its_end_and_other_errors_pass_unchanged(engine):
    threads = threading.active_count()
    with engine.begin() as conn:
        with cancelled_when(conn, lambda: False):
            assert conn.exec_driver_sql("SELECT pg_sleep(0.3), 7").one()[1] == 7
    assert threading.active_count() == threads, "the watcher outlived its block"
    with pytest.raises(sa.exc.DBAPIError, match="division by zero"):
        with engine.begin() as conn, cancelled_when(conn, lambda: False):
            conn.exec_driver_sql("SELECT 1 / 0")
    # A statement_timeout's cancel is the server's, not a stop: it stays the database error it is.
    with pytest.raises(sa.exc.DBAPIError, match="statement timeout"):
        with engine.begin() as conn, cancelled_when(conn, lambda: False):
            conn.exec_driver_sql("SET LOCAL statement_timeout = 100")
            conn.exec_driver_sql("SELECT pg_sleep(30)")
