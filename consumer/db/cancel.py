"""Cancelling a running statement from outside, so that a shutdown keeps its grace period during a long query.

A run gives up at its checkpoints, between steps and EM passes; one SQL
statement has none, and the load's may run for minutes. ``cancelled_when``
watches ``should_stop`` from a thread while its block runs statements on a
connection; once it says yes, the statement running on that connection is
cancelled with ``pg_cancel_backend`` from a connection of the watcher's own
(the statement's connection is busy waiting for its answer), and the
statement's error (SQLSTATE 57014, query_canceled) leaves the block as the
exception ``stopped`` makes: the run's "abandoned" one, say.

The server ignores a cancel that arrives while the connection is idle
between statements, so the watcher sends one every ``poll_seconds`` for as
long as ``should_stop`` holds and the block runs: the next statement is
cancelled as it starts.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable, Iterator

import sqlalchemy as sa

from .engine import _server_error

log = logging.getLogger(__name__)

#: SQLSTATE of a statement cancelled (by pg_cancel_backend, as here, or by statement_timeout).
QUERY_CANCELED = "57014"
#: How often the watcher asks ``should_stop``, and then repeats its cancel: well within any grace period.
POLL_SECONDS = 0.1


class StatementCancelled(Exception):
    """The block's statement was cancelled because ``should_stop`` said so."""


@contextlib.contextmanager
def cancelled_when(conn: sa.Connection, should_stop: Callable[[], bool], *,
                   stopped: Callable[[], BaseException] = StatementCancelled,
                   poll_seconds: float = POLL_SECONDS) -> Iterator[None]:
    """Run the block's statements on ``conn``, cancelling the one running once ``should_stop()`` is true.

    Raises ``stopped()`` (from the cancelled statement's error) when a
    statement was cancelled this way; any other error, a statement_timeout's
    included, leaves the block as it was. Enter it inside the transaction or
    connection block, so that the watcher has ended before the rollback: it
    cancels nothing outside the block. ``conn`` stays usable (after the
    rollback of its transaction).
    """
    backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    finished = threading.Event()
    sent = threading.Event()

    def watch() -> None:
        canceller: sa.Connection | None = None
        try:
            while not finished.wait(poll_seconds):
                if not should_stop():
                    continue
                try:
                    canceller = canceller or conn.engine.connect()
                    canceller.execute(sa.text("SELECT pg_cancel_backend(:pid)"), {"pid": backend})
                    canceller.commit()
                    sent.set()
                except Exception as problem:  # the statement then ends at its own pace; the run's checkpoint follows
                    log.warning("could not cancel the statement of backend %s: %s", backend,
                                str(problem).splitlines()[0][:200] if str(problem) else type(problem).__name__)
                    return
        finally:
            if canceller is not None:
                with contextlib.suppress(Exception):
                    canceller.close()

    watcher = threading.Thread(target=watch, name=f"cancel-backend-{backend}", daemon=True)
    watcher.start()
    try:
        yield
    except sa.exc.DBAPIError as exc:
        finished.set()
        watcher.join()
        fields = _server_error(exc) or {}
        if sent.is_set() and fields.get("C") == QUERY_CANCELED:
            raise stopped() from exc
        raise
    finally:
        finished.set()
        watcher.join()
