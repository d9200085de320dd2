"""The test PostgreSQL: the server on 127.0.0.1:5432 when one answers, or an embedded one for the session."""

from __future__ import annotations

import shutil
import socket
import tempfile
import warnings
from pathlib import Path

import sqlalchemy as sa


def local_server_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


def embedded_server_url() -> sa.URL:
    """An embedded PostgreSQL in a temporary directory of this test session (started once, removed at its end)."""
    global _embedded, _embedded_dir
    if _embedded is None:
        from consumer.db.embedded import embedded_url
        _embedded_dir = Path(tempfile.mkdtemp(prefix="mirt-test-"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _embedded = sa.make_url(embedded_url(_embedded_dir))
    return _embedded


def remove_embedded_server() -> None:
    """Stop the session's embedded PostgreSQL, if one was started, and remove its directory."""
    global _embedded, _embedded_dir
    if _embedded_dir is None:
        return
    from consumer.db.embedded import stop
    stop(_embedded_dir)
    shutil.rmtree(_embedded_dir, ignore_errors=True)
    _embedded, _embedded_dir = None, None


_embedded: sa.URL | None = None
_embedded_dir: Path | None = None


def rows(engine, sql, **params):
    """The rows of one query on the test database."""
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()
