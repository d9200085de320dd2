"""Versioned, idempotent migrations of the service's own tables.

Each ``migrations/NNNN_name.sql`` file is applied once, in order, inside one
transaction that holds an advisory lock, so replicas starting together do
not race. Applied versions are kept in ``mirt_schema_migrations``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import sqlalchemy as sa

from ..errors import ServiceError
from .engine import unavailable

log = logging.getLogger(__name__)

MIGRATIONS_TABLE = "mirt_schema_migrations"
# An arbitrary constant that names "migrating the calibration tables" among advisory locks.
_LOCK_KEY = 7_246_113_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file's statements (split on semicolons at line ends; comments dropped)."""
        body = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        return [part.strip() for part in re.split(r";\s*\n", body + "\n") if part.strip()]


def available() -> list[Migration]:
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def ever_migrated(conn: sa.Connection) -> bool:
    """Whether the service's migrations ever ran on this database (its migrations table is there)."""
    return conn.execute(sa.text(f"SELECT to_regclass('{MIGRATIONS_TABLE}') IS NOT NULL")).scalar()


def migrate(engine: sa.Engine) -> list[Migration]:
    """Apply the pending migrations; returns those applied (none when up to date).

    Any failure to do so is a ``DatabaseUnavailable`` naming the database (worth retrying).
    """
    try:
        applied = _apply_pending(engine)
    except ServiceError:
        raise
    except Exception as exc:
        raise unavailable(engine, exc) from exc
    for migration in applied:
        log.info("applied migration %04d_%s", migration.version, migration.name)
    return applied


def _apply_pending(engine: sa.Engine) -> list[Migration]:
    applied_now = []
    with engine.begin() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        conn.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.exec_driver_sql(f"SELECT version FROM {MIGRATIONS_TABLE}")}
        for migration in available():
            if migration.version in done:
                continue
            for statement in migration.statements():
                conn.exec_driver_sql(statement)
            conn.execute(sa.text(f"INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES (:v, :n)"),
                         {"v": migration.version, "n": migration.name})
            applied_now.append(migration)
    return applied_now
