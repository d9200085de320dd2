"""One engine factory for every way the service reaches PostgreSQL.

- ``DATABASE_URL``: any SQLAlchemy PostgreSQL URL; the driver is pg8000.
- ``INSTANCE_CONNECTION_NAME``: Cloud SQL through the Cloud SQL Python
  Connector (no proxy sidecar), with a password or IAM database
  authentication, lazy certificate refresh, and the chosen IP type.
- neither: the embedded PostgreSQL in the user's data directory.

Every connection gets client-side timeouts, so that a network partition
(connections open, nothing flowing) ends in an error rather than a hang:
a connect timeout, TCP keepalives and a TCP user timeout (a dead peer is
noticed within about a minute), and a read timeout long enough for any
statement of a run. ``check_connection`` opens a connection of its own,
outside the pool, with one short timeout for everything, which is what
``/readyz`` asks.
"""

from __future__ import annotations

import atexit
import logging
import socket
import ssl
import threading
import weakref
from pathlib import Path
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from ..errors import (ConfigError, DatabaseLoginRefused, DatabaseMissing, DatabaseRefused, DatabaseTLSMismatch,
                      DatabaseUnavailable)
from ..settings import Settings

log = logging.getLogger(__name__)

_ENGINE_OPTIONS = dict(pool_pre_ping=True, pool_size=2, max_overflow=2)
#: Engines on the embedded PostgreSQL, by the data directory they were started on (for ``describe``).
_EMBEDDED: "weakref.WeakKeyDictionary[sa.Engine, Path]" = weakref.WeakKeyDictionary()
#: How to open one connection outside the engine's pool, given a timeout (``check_connection``).
_DIRECT: "weakref.WeakKeyDictionary[sa.Engine, Callable[[float], Any]]" = weakref.WeakKeyDictionary()

#: Seconds to open a connection: TCP, TLS and the login (the Cloud SQL connector keeps its own 30 s, which
#: covers fetching its certificates).
CONNECT_TIMEOUT_SECONDS = 10.0
#: Longest wait for the server's next bytes once connected. Far beyond any one statement of a run (a load
#: query on a large window may take minutes before its first row), so only a connection that has stopped
#: carrying data reaches it.
READ_TIMEOUT_SECONDS = 900.0
#: TCP keepalives (idle seconds before the first probe, seconds between probes, unanswered probes) and the
#: TCP user timeout (ms that sent data may stay unacknowledged): a peer gone silent is noticed in about a
#: minute, whether the connection is idle or sending.
_KEEPALIVE = (30, 10, 3)
_USER_TIMEOUT_MS = 60_000
#: ``/readyz``'s budget for its database check: one fresh connection and ``SELECT 1``.
READINESS_TIMEOUT_SECONDS = 1.5
#: SQLSTATEs of a refused login: invalid_password (a wrong password, or an IAM token Cloud SQL refuses) and
#: invalid_authorization_specification (no such role, no pg_hba entry, a missing IAM user).
_LOGIN_REFUSED = {"28P01", "28000"}


def create_engine(settings: Settings, *, embedded_database: str | None = None) -> sa.Engine:
    """The engine the settings name (see the module docstring for the order).

    ``embedded_database`` picks that database of the embedded PostgreSQL
    whatever the settings say (the demo's, for ``--demo``).
    """
    if embedded_database is None and settings.database_url:
        url, connect_args = pg8000_url(settings.database_url)
        return _url_engine(url, connect_args, **_ENGINE_OPTIONS)
    if embedded_database is None and settings.instance_connection_name:
        return _cloud_sql_engine(settings)
    return embedded_engine(settings.embedded_data_dir, embedded_database or "postgres", **_ENGINE_OPTIONS)


def embedded_engine(data_dir: Path, database: str = "postgres", **options) -> sa.Engine:
    """An engine on ``database`` of the embedded PostgreSQL kept in ``data_dir`` (started if need be)."""
    from .embedded import embedded_url
    engine = _url_engine(make_url(embedded_url(data_dir, database)), {}, **options)
    _EMBEDDED[engine] = (data_dir / "pgdata").resolve()
    return engine


def _url_engine(url: URL, connect_args: dict, **options) -> sa.Engine:
    """An engine on a pg8000 URL, with the timeouts of the module docstring unless the URL sets ``timeout``."""
    chosen = "timeout" in connect_args
    engine = sa.create_engine(url, connect_args={"timeout": CONNECT_TIMEOUT_SECONDS, **connect_args}, **options)
    _on_connect(engine, read_timeout=None if chosen else READ_TIMEOUT_SECONDS)

    def connect_directly(timeout: float):
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        return engine.dialect.loaded_dbapi.connect(*cargs, **{**cparams, **connect_args, "timeout": timeout})

    _DIRECT[engine] = connect_directly
    return engine


def _on_connect(engine: sa.Engine, read_timeout: float | None) -> None:
    @sa.event.listens_for(engine, "connect")
    def tune(dbapi_connection, connection_record) -> None:
        tune_socket(dbapi_connection, read_timeout)


def tune_socket(dbapi_connection, read_timeout: float | None) -> None:
    """Keepalives and a user timeout on a pg8000 connection's TCP socket, and ``read_timeout`` on any socket.

    pg8000 takes one ``timeout`` for connecting and for every read, and turns
    keepalives on with the system's two-hour idle time; both are tightened
    here on the connected socket. ``read_timeout`` None leaves the socket's
    timeout as it is.
    """
    sock = getattr(dbapi_connection, "_usock", None)  # pg8000's socket (an SSL socket over TLS)
    if not isinstance(sock, socket.socket):
        return
    if read_timeout is not None:
        sock.settimeout(read_timeout)
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    idle, interval, count = _KEEPALIVE
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count),
                        ("TCP_USER_TIMEOUT", _USER_TIMEOUT_MS)):
        if hasattr(socket, name):  # Linux has them all; elsewhere the system's defaults stay
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, option, value in options:
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            pass


#: What a DATABASE_URL's query may hold: libpq's sslmode (turned into an SSL context) and pg8000's own
#: connection arguments that make sense in a URL.
_URL_PARAMETERS = {"sslmode", "unix_sock", "application_name", "timeout", "tcp_keepalive"}


def pg8000_url(text: str) -> tuple[URL, dict]:
    """``text`` as a pg8000 URL, with libpq's ``sslmode`` turned into pg8000's ``ssl_context``."""
    try:
        url = make_url(text)
    except Exception:
        raise ConfigError("DATABASE_URL is not a valid URL",
                          "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise ConfigError(f"DATABASE_URL must name a PostgreSQL database, not {url.get_backend_name()!r}",
                          "use postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    query = dict(url.query)
    unknown = sorted(set(query) - _URL_PARAMETERS)
    if unknown:
        raise ConfigError(f"DATABASE_URL has query parameters the driver does not take: {', '.join(unknown)}",
                          f"use only {', '.join(sorted(_URL_PARAMETERS))}")
    connect_args: dict = {}
    # pg8000 wants these typed; from the URL's query they would arrive as text.
    if "timeout" in query:
        try:
            connect_args["timeout"] = float(query.pop("timeout"))
            if not connect_args["timeout"] > 0:
                raise ValueError
        except ValueError:
            raise ConfigError("DATABASE_URL has a timeout that is not a number of seconds > 0",
                              "drop it (the service sets its own timeouts) or use, say, timeout=30") from None
    if "tcp_keepalive" in query:
        flag = str(query.pop("tcp_keepalive")).lower()
        if flag not in ("true", "false"):
            raise ConfigError(f"DATABASE_URL has tcp_keepalive={flag!r}", "use true or false")
        connect_args["tcp_keepalive"] = flag == "true"
    sslmode = query.pop("sslmode", None)
    if sslmode not in (None, "disable", "allow", "prefer", "require", "verify-ca", "verify-full"):
        raise ConfigError(f"DATABASE_URL has sslmode={sslmode!r}",
                          "use disable, allow, prefer, require, verify-ca or verify-full")
    if sslmode in ("require", "prefer", "allow"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connect_args["ssl_context"] = context if sslmode == "require" else None
    elif sslmode in ("verify-ca", "verify-full"):
        connect_args["ssl_context"] = ssl.create_default_context()
    url = url.set(drivername="postgresql+pg8000", query=query)
    return url, {k: v for k, v in connect_args.items() if v is not None}


_connector = None
_connector_lock = threading.Lock()


def cloud_sql_connector():
    """The process's one Cloud SQL Python Connector, made on first use and closed at exit.

    A Connector holds a thread, an event loop and the certificates it fetched,
    and Google recommends one per process: every Cloud SQL engine shares it,
    and disposing an engine (which SQLAlchemy keeps usable) leaves it open.
    """
    global _connector
    with _connector_lock:
        if _connector is None:
            from google.cloud.sql.connector import Connector
            # Lazy refresh fetches certificates when a connection is made, which suits
            # serverless and CPU-throttled runtimes where background refresh stalls.
            _connector = Connector(refresh_strategy="lazy")
            atexit.register(close_cloud_sql_connector)
        return _connector


def close_cloud_sql_connector() -> None:
    """Close the process's Connector if one was made; the next Cloud SQL connection makes a new one."""
    global _connector
    with _connector_lock:
        connector, _connector = _connector, None
    if connector is not None:
        atexit.unregister(close_cloud_sql_connector)
        connector.close()


def _cloud_sql_engine(settings: Settings) -> sa.Engine:
    from google.cloud.sql.connector import IPTypes

    ip_type = {"public": IPTypes.PUBLIC, "private": IPTypes.PRIVATE, "psc": IPTypes.PSC}[settings.db_ip_type]

    def connect():
        kwargs = dict(user=settings.db_user, db=settings.db_name, enable_iam_auth=settings.db_iam_auth,
                      ip_type=ip_type)
        if not settings.db_iam_auth:
            kwargs["password"] = settings.db_pass
        return cloud_sql_connector().connect(settings.instance_connection_name, "pg8000", **kwargs)

    engine = sa.create_engine("postgresql+pg8000://", creator=connect, **_ENGINE_OPTIONS)
    # The connector hands pg8000 a TLS socket with no timeout at all: the read timeout is set here.
    _on_connect(engine, read_timeout=READ_TIMEOUT_SECONDS)
    # The connector's own 30 s bounds the connect, certificate refresh included (a short one would cut a
    # refresh short on every attempt); the check's timeout applies to its reads (see check_connection).
    _DIRECT[engine] = lambda timeout: connect()
    return engine


def is_embedded(engine: sa.Engine) -> bool:
    return engine in _EMBEDDED


def describe(engine: sa.Engine) -> str:
    """The engine's target without credentials, for logs and errors: always with the database's name."""
    url = engine.url
    if engine in _EMBEDDED:
        return f"embedded PostgreSQL in {_EMBEDDED[engine]}, database {url.database}"
    if url.host is None and url.database is None:
        return "Cloud SQL (connector)"
    bare = URL.create(url.drivername, username=url.username, host=url.host, port=url.port, database=url.database)
    if "unix_sock" in url.query:
        return f"{bare.render_as_string()} (Unix socket {url.query['unix_sock']})"
    return bare.render_as_string()


def check_connection(engine: sa.Engine, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """Raise ``DatabaseUnavailable`` (or ``DatabaseLoginRefused``) with a hint unless the database answers.

    On an engine of this module, a connection of its own, outside the pool,
    whose every read waits ``timeout`` seconds at most (its connect too,
    except through the Cloud SQL connector, which bounds that itself): a
    partitioned network fails the check instead of hanging it, and a
    refused login shows even while pooled connections still work.
    """
    connect_directly = _DIRECT.get(engine)
    try:
        if connect_directly is None:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return
        connection = connect_directly(timeout)
        try:
            tune_socket(connection, timeout)
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finally:
            try:
                connection.close()
            except Exception:
                pass
    except Exception as exc:
        raise unavailable(engine, exc) from exc


def unavailable(engine: sa.Engine, exc: BaseException) -> DatabaseUnavailable | DatabaseRefused:
    """A ``DatabaseUnavailable`` that names the target and the driver's reason, no secrets.

    A refused login is a ``DatabaseLoginRefused`` instead, and TLS settings
    the server does not agree with a ``DatabaseTLSMismatch``: settings to fix
    (exit status 2), which no retry can cure.
    """
    reason = _reason(exc)
    mismatch = _tls_mismatch(engine, exc)
    if mismatch is not None:
        return mismatch
    fields = _server_error(exc)
    if fields is not None and fields.get("C") == _NO_SUCH_DATABASE and engine not in _EMBEDDED:
        return DatabaseMissing(
            f"the database server at {describe(engine)} answers, but has no such database: {fields.get('M', '')} "
            f"(SQLSTATE {_NO_SUCH_DATABASE})",
            "check the database name in DATABASE_URL (or DB_NAME), or create the database")
    refused = _login_refused(exc)
    if refused is not None:
        return DatabaseLoginRefused(
            f"the database at {describe(engine)} refused the service's login: {refused}",
            "check DB_USER and DB_PASS (or the user and password in DATABASE_URL); with DB_IAM_AUTH, that the "
            "IAM database user exists and the service account has roles/cloudsql.client and "
            "roles/cloudsql.instanceUser")
    if engine in _EMBEDDED:
        from .embedded import DEMO_DATABASE
        hint = f"the embedded server's log is {_EMBEDDED[engine] / 'log'}"
        if engine.url.database == DEMO_DATABASE:
            hint = f"run the demo first (python -m consumer demo): it makes that database; {hint}"
    else:
        hint = ("check DATABASE_URL (host, port, database, user, password) or INSTANCE_CONNECTION_NAME "
                "and that the server is up and accepts connections from here")
    return DatabaseUnavailable(f"cannot reach the database at {describe(engine)}: {reason}", hint)


#: The server's SQLSTATE for a database name it does not have.
_NO_SUCH_DATABASE = "3D000"


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    fields = _server_error(exc)
    if fields is not None:
        return f"{fields.get('M', 'error')} (SQLSTATE {fields.get('C', '?')})"
    if any(isinstance(each, ConnectionRefusedError) for each in _chain(exc)):
        return "connection refused: nothing listens on that host and port"
    if any(isinstance(each, TimeoutError) for each in _chain(exc)):
        detail = str(inner).splitlines()[0] if str(inner) else "timed out"
        return f"no answer in time ({type(inner).__name__}: {detail[:200]})"
    text = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
    return text[:300]


#: What pg8000 raises when it asked for TLS (sslmode require, verify-ca, verify-full) and the server has none.
_SERVER_REFUSES_TLS = "Server refuses SSL"


def _tls_mismatch(engine: sa.Engine, exc: BaseException) -> DatabaseTLSMismatch | None:
    """The TLS settings and the server's disagree: TLS asked of a server without it, or a certificate that fails."""
    for each in _chain(exc):
        if isinstance(each, ssl.SSLCertVerificationError):
            return DatabaseTLSMismatch(
                f"the database at {describe(engine)} presented a certificate that does not verify: "
                f"{each.verify_message or each.reason or each}",
                "with sslmode=verify-ca or verify-full the server's certificate must chain to a CA this machine "
                "trusts (and, for verify-full, name the host): fix the certificate, or use sslmode=require to "
                "encrypt without verifying")
        if type(each).__name__ == "InterfaceError" and str(each) == _SERVER_REFUSES_TLS:
            return DatabaseTLSMismatch(
                f"the database at {describe(engine)} does not speak TLS, and DATABASE_URL asks for it "
                f"(the server answered: {_SERVER_REFUSES_TLS})",
                "turn SSL on in the server (ssl = on), or set sslmode=prefer or disable in DATABASE_URL if the "
                "network to it is trusted")
    return None


def _login_refused(exc: BaseException) -> str | None:
    """Why the login was refused, if it was: the server's error, or the Cloud SQL Admin API's 401 or 403."""
    fields = _server_error(exc)
    if fields is not None and fields.get("C") in _LOGIN_REFUSED:
        return f"{fields.get('M', 'error')} (SQLSTATE {fields['C']})"
    for each in _chain(exc):
        status = getattr(each, "status", None)  # aiohttp's ClientResponseError, raised by the connector
        if type(each).__name__ == "ClientResponseError" and status in (401, 403):
            message = str(getattr(each, "message", "") or "").splitlines()
            return f"the Cloud SQL Admin API answered HTTP {status}{': ' + message[0][:200] if message else ''}"
    return None


def _chain(exc: BaseException | None):
    """``exc``, what it wraps (``orig``) and its causes and contexts, each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        orig = getattr(exc, "orig", None)
        exc = orig if orig is not None and id(orig) not in seen else (exc.__cause__ or exc.__context__)


def _server_error(exc: BaseException) -> dict | None:
    """The server's error fields, wherever they sit in the chain of ``exc``.

    pg8000 errors from the server carry a dict of fields. When the server
    refuses a connection (a missing database, a wrong password) and closes
    it at once, pg8000's goodbye on the dead socket can fail too; over a
    Unix socket it usually does, and that "network error" is what is raised,
    with the server's own error as its context.
    """
    for each in _chain(exc):
        args = getattr(each, "args", ())
        if args and isinstance(args[0], dict):
            return args[0]
    return None
