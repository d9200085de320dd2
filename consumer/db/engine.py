"""One engine factory for every way the service reaches PostgreSQL.

- ``DATABASE_URL``: any SQLAlchemy PostgreSQL URL; the driver is pg8000.
- ``INSTANCE_CONNECTION_NAME``: Cloud SQL through the Cloud SQL Python
  Connector (no proxy sidecar), with a password or IAM database
  authentication, lazy certificate refresh, and the chosen IP type.
- neither: the embedded PostgreSQL in the user's data directory.
"""

from __future__ import annotations

import atexit
import logging
import ssl
import threading
import weakref
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from ..errors import ConfigError, DatabaseUnavailable
from ..settings import Settings

log = logging.getLogger(__name__)

_ENGINE_OPTIONS = dict(pool_pre_ping=True, pool_size=2, max_overflow=2)
#: Engines on the embedded PostgreSQL, by the data directory they were started on (for ``describe``).
_EMBEDDED: "weakref.WeakKeyDictionary[sa.Engine, Path]" = weakref.WeakKeyDictionary()


def create_engine(settings: Settings, *, embedded_database: str | None = None) -> sa.Engine:
    """The engine the settings name (see the module docstring for the order).

    ``embedded_database`` picks that database of the embedded PostgreSQL
    whatever the settings say (the demo's, for ``--demo``).
    """
    if embedded_database is None and settings.database_url:
        url, connect_args = pg8000_url(settings.database_url)
        return sa.create_engine(url, connect_args=connect_args, **_ENGINE_OPTIONS)
    if embedded_database is None and settings.instance_connection_name:
        return _cloud_sql_engine(settings)
    return embedded_engine(settings.embedded_data_dir, embedded_database or "postgres", **_ENGINE_OPTIONS)


def embedded_engine(data_dir: Path, database: str = "postgres", **options) -> sa.Engine:
    """An engine on ``database`` of the embedded PostgreSQL kept in ``data_dir`` (started if need be)."""
    from .embedded import embedded_url
    engine = sa.create_engine(embedded_url(data_dir, database), **options)
    _EMBEDDED[engine] = (data_dir / "pgdata").resolve()
    return engine


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

    return sa.create_engine("postgresql+pg8000://", creator=connect, **_ENGINE_OPTIONS)


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


def check_connection(engine: sa.Engine) -> None:
    """Raise ``DatabaseUnavailable`` with a hint unless the database answers."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        raise unavailable(engine, exc) from exc


def unavailable(engine: sa.Engine, exc: BaseException) -> DatabaseUnavailable:
    """A ``DatabaseUnavailable`` that names the target and the driver's reason, no secrets."""
    reason = _reason(exc)
    if engine in _EMBEDDED:
        from .embedded import DEMO_DATABASE
        hint = f"the embedded server's log is {_EMBEDDED[engine] / 'log'}"
        if engine.url.database == DEMO_DATABASE:
            hint = f"run the demo first (python -m consumer demo): it makes that database; {hint}"
    else:
        hint = ("check DATABASE_URL (host, port, database, user, password) or INSTANCE_CONNECTION_NAME "
                "and that the server is up and accepts connections from here")
    return DatabaseUnavailable(f"cannot reach the database at {describe(engine)}: {reason}", hint)


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "orig", None) or exc
    fields = _server_error(exc)
    if fields is not None:
        return f"{fields.get('M', 'error')} (SQLSTATE {fields.get('C', '?')})"
    text = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
    return text[:300]


def _server_error(exc: BaseException) -> dict | None:
    """The server's error fields, wherever they sit in the chain of ``exc``.

    pg8000 errors from the server carry a dict of fields. When the server
    refuses a connection (a missing database, a wrong password) and closes
    it at once, pg8000's goodbye on the dead socket can fail too; over a
    Unix socket it usually does, and that "network error" is what is raised,
    with the server's own error as its context.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        args = getattr(exc, "args", ())
        if args and isinstance(args[0], dict):
            return args[0]
        orig = getattr(exc, "orig", None)
        exc = orig if orig is not None and id(orig) not in seen else (exc.__cause__ or exc.__context__)
    return None
