"""The platform's tables as SPEC describes them: checked before the service touches a database, made for tests.

In production the platform owns ``attempt`` (a view there) and ``question``;
the service only reads them and its migrations never create them: before it
touches a database it checks that they are there (``check_platform_schema``,
``has_table``). For the demo, the tests and the benchmarks they are made
here, filled in bulk with COPY, and dropped again.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Iterable

import numpy as np
import sqlalchemy as sa

from ..errors import PlatformSchemaError

#: The platform's tables and the columns the service reads (SPEC).
PLATFORM_COLUMNS = {
    "attempt": ("student_id", "question_id", "correct", "completed_at"),
    "question": ("id", "meta"),
}


def check_platform_schema(conn: sa.Connection) -> None:
    """Raise ``PlatformSchemaError`` naming every missing platform table or column."""
    rows = conn.execute(sa.text(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_name IN ('attempt', 'question') AND table_schema = ANY (current_schemas(false))"
    )).all()
    present: dict[str, set[str]] = {}
    for table, column in rows:
        present.setdefault(table, set()).add(column)
    problems = []
    for table, columns in PLATFORM_COLUMNS.items():
        if table not in present:
            problems.append(f"table (or view) {table} is missing")
            continue
        missing = [c for c in columns if c not in present[table]]
        if missing:
            problems.append(f"{table} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if problems:
        raise PlatformSchemaError(
            "the platform's tables are not as expected: " + "; ".join(problems),
            "check that DATABASE_URL points at the platform's database; the service reads "
            "attempt(student_id, question_id, correct, completed_at) and question(id, meta)",
        )


#: Column types a response time in milliseconds may have.
_NUMERIC_TYPES = ("smallint", "integer", "bigint", "numeric", "real", "double precision")


def attempt_columns(conn: sa.Connection) -> dict[str, str]:
    """``attempt``'s columns (table or view on the search path) and their types, in their order."""
    return dict(conn.execute(sa.text(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'attempt' AND table_schema = ANY (current_schemas(false)) ORDER BY ordinal_position"
    )).all())


def check_group_column(conn: sa.Connection, column: str) -> None:
    """Raise ``PlatformSchemaError`` unless ``attempt`` has the DIF group column ``column`` (MIRT_DIF_GROUP_COLUMN)."""
    present = attempt_columns(conn)
    if column not in present:
        raise PlatformSchemaError(f"MIRT_DIF_GROUP_COLUMN names column {column!r}, which attempt does not have "
                                  f"(its columns: {', '.join(present)})",
                                  "set MIRT_DIF_GROUP_COLUMN to the column of attempt that holds each answer's group "
                                  "label (the name as PostgreSQL spells it, lowercase unless created quoted), or "
                                  "leave it empty for no DIF screen")


def check_response_time_column(conn: sa.Connection, column: str) -> None:
    """Raise ``PlatformSchemaError`` unless ``attempt`` has a numeric ``column`` (MIRT_RESPONSE_TIME_COLUMN)."""
    found = attempt_columns(conn)
    if found.get(column) in _NUMERIC_TYPES:
        return
    problem = (f"attempt has no column {column!r}" if column not in found
               else f"attempt.{column} is {found[column]}, not a number of milliseconds")
    raise PlatformSchemaError(
        f"MIRT_RESPONSE_TIME_COLUMN names the response times' column, but {problem}",
        f"set it to a numeric column of attempt (its columns: {', '.join(sorted(found))}), or leave it empty "
        "to calibrate without rapid-guess filtering")


def has_table(conn: sa.Connection, name: str) -> bool:
    """Whether a table or view ``name`` is on the search path."""
    return conn.execute(sa.text("SELECT to_regclass(CAST(:name AS text)) IS NOT NULL"), {"name": name}).scalar()


PLATFORM_DDL = (
    "CREATE TABLE question (id bigint PRIMARY KEY, meta jsonb NOT NULL DEFAULT '{}'::jsonb)",
    "CREATE TABLE attempt (id bigserial PRIMARY KEY, student_id {student_type} NOT NULL, "
    "question_id bigint NOT NULL, correct boolean NOT NULL, completed_at timestamptz NOT NULL, "
    "time_spent_ms integer)",
)


def create_platform_tables(conn: sa.Connection, student_type: str = "text") -> None:
    """(Re)create empty ``question`` and ``attempt`` tables; ``student_type`` is text or bigint."""
    conn.exec_driver_sql("DROP TABLE IF EXISTS attempt, question CASCADE")
    for statement in PLATFORM_DDL:
        conn.exec_driver_sql(statement.replace("{student_type}", student_type))


def copy_rows(conn: sa.Connection, table: str, columns: tuple[str, ...], rows: Iterable[tuple],
              chunk_rows: int = 1_000_000) -> int:
    """COPY ``rows`` into ``table`` in chunks; returns how many were sent."""
    cursor = conn.connection.driver_connection.cursor()
    sent = 0
    batch: list[tuple] = []

    def flush():
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(batch)
        cursor.execute(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)",
                       stream=io.BytesIO(buffer.getvalue().encode()))

    for row in rows:
        batch.append(row)
        if len(batch) >= chunk_rows:
            flush()
            sent += len(batch)
            batch = []
    if batch:
        flush()
        sent += len(batch)
    return sent


def insert_questions(conn: sa.Connection, ids: Iterable[int], metas: Iterable[dict]) -> int:
    return copy_rows(conn, "question", ("id", "meta"), ((int(i), json.dumps(m)) for i, m in zip(ids, metas)))


def insert_attempts(conn: sa.Connection, student_ids: np.ndarray, question_ids: np.ndarray,
                    correct: np.ndarray, completed_at: np.ndarray) -> int:
    """Bulk-insert attempts; ``completed_at`` is an array of numpy datetime64 (UTC)."""
    stamps = np.datetime_as_string(completed_at.astype("datetime64[us]"), unit="us")
    rows = zip(student_ids.tolist(), question_ids.tolist(), np.where(correct, "t", "f").tolist(),
               (s + "+00" for s in stamps))
    return copy_rows(conn, "attempt", ("student_id", "question_id", "correct", "completed_at"), rows)


def as_datetime64(moment: datetime) -> np.datetime64:
    """A timezone-aware datetime as a UTC numpy datetime64."""
    return np.datetime64(moment.astimezone(timezone.utc).replace(tzinfo=None), "us")
