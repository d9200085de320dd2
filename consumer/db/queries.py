"""The SQL statements of a calibration run and of its records, and the bulk paths they need.

(The check of the platform's tables is ``platform``'s, the item bank's
statements ``bank``'s, tag-anchors' ``tagging``'s.)

Loading is set-based: PostgreSQL filters the window, keeps each student's
first answer to each question, applies the cap and packs every student's
answers into one binary blob (8 bytes per answer: question_id * 2 + correct),
so one row per student crosses the wire, in PostgreSQL's binary COPY
format (raw bytes, cut with ``struct``), and numpy unpacks the rest.
Writing is bulk: a binary COPY (built by numpy) into a temporary table,
then one insert or upsert per target.
"""

from __future__ import annotations

import array
import csv
import io
import json
import re
import struct
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import sqlalchemy as sa

from .. import scope as scopes
from ..errors import PlatformSchemaError
from ..irt.responses import Responses
from ..scope import Scope

@dataclass(frozen=True)
class Observations:
    """The responses of one window, with the ids behind the array indices."""

    responses: Responses
    student_ids: list[str]
    question_ids: np.ndarray
    first_at: datetime | None
    last_at: datetime | None
    #: Attempts in the window before keeping first answers and capping.
    attempts_in_window: int = 0
    #: Whether the cap dropped first answers (the most recent were kept).
    capped: bool = False
    #: With MIRT_DIF_GROUP_COLUMN: each student's group label (``group_label``), None for a student without one.
    groups: list[str | None] | None = None
    #: With MIRT_RESPONSE_TIME_COLUMN: each response's time in ms, beside ``responses.item`` (NaN: unknown).
    response_ms: np.ndarray | None = None

    @property
    def n_obs(self) -> int:
        return self.responses.n_obs


_WINDOW = ("completed_at > :since AND completed_at <= :until "
           "AND student_id IS NOT NULL AND question_id IS NOT NULL AND correct IS NOT NULL")
#: A scope's questions: those whose meta holds the scope's name under the scope's key.
_IN_SCOPE = "meta->>CAST(:scope_key AS text) = :scope"
_SCOPED_WINDOW = f"{_WINDOW} AND question_id IN (SELECT id FROM question WHERE {_IN_SCOPE})"
# Each student's first answer to each question: one sort by (student, question, time). ``{student}`` is
# student_id, under the "C" collation when it is text: the sort then compares bytes, not the locale's
# collation (a third less time under C.UTF-8, more under a language's collation); first answers and the
# students' ids are the same, only the order of the students changes.
_FIRSTS = """
SELECT DISTINCT ON ({student}, question_id)
       {student} AS student, question_id, (correct::int <> 0)::int AS correct, completed_at{extra}
  FROM attempt
 WHERE {window}
 ORDER BY {student}, question_id, completed_at"""
# The students' first and last answers as microseconds since the epoch: a number is parsed in a
# fraction of the time a timestamp's text takes (4M of them at 100M answers).
_MICROSECONDS = "(extract(epoch FROM {0}(completed_at{1})) * 1000000)::int8"
# One row per student: the answers packed 8 bytes each (question_id * 2 + correct).
_PACK = f"""
SELECT student::text, string_agg(int8send(question_id::bigint * 2 + correct), ''::bytea),
       {_MICROSECONDS.format("min", "")}, {_MICROSECONDS.format("max", "")}{{extra}}
  FROM {{source}} firsts
 GROUP BY student"""
# Only when the window holds more attempts than the cap: keep the most recent first answers. One
# more than the cap is ranked, so that the last column tells whether the cap dropped any.
_KEPT = ") FILTER (WHERE rank <= :cap"
_CAPPED = f"""
SELECT student::text,
       string_agg(int8send(question_id::bigint * 2 + correct), ''::bytea) FILTER (WHERE rank <= :cap),
       {_MICROSECONDS.format("min", _KEPT)}, {_MICROSECONDS.format("max", _KEPT)},
       max(rank) > :cap{{extra}}
  FROM (SELECT *, row_number() OVER (ORDER BY completed_at DESC, student, question_id) AS rank
          FROM (SELECT * FROM ({{firsts}}) f ORDER BY completed_at DESC, student, question_id
                LIMIT :cap + 1) recent) ranked
 GROUP BY student"""


# With a DIF group column: the label goes along with each first answer, and each student's group is
# the label of the earliest of the student's answers (kept by the window and the cap) that has one.
_WITH_LABEL = ", {column}::text AS group_label"
_GROUP_OF_STUDENT = ", (array_agg(group_label ORDER BY completed_at, question_id) FILTER (WHERE group_label IS NOT NULL{capped}))[1]"


@dataclass(frozen=True)
class _Load:
    """The load's three statements over one window: the whole bank's, or a scope's questions only."""

    count: sa.TextClause
    everything: sa.TextClause
    capped: sa.TextClause

    @classmethod
    def over(cls, window: str, student: str, group_column: str = "", time_column: str = "") -> "_Load":
        """The statements over ``window``; each optional column adds one column to the firsts and one
        aggregate per student, after the fixed ones: the times first, then the group."""
        column, aggregate = _times(time_column)
        if group_column:
            column += _WITH_LABEL.format(column=quoted(group_column))
        firsts = _FIRSTS.format(window=window, student=student, extra=column)
        group = _GROUP_OF_STUDENT.format(capped="") if group_column else ""
        capped_group = _GROUP_OF_STUDENT.format(capped=" AND rank <= :cap") if group_column else ""
        # The firsts come sorted by student, so the packing streams (GroupAggregate) with no second sort.
        return cls(sa.text(f"SELECT count(*) FROM attempt WHERE {window}"),
                   sa.text(_PACK.format(source=f"({firsts})", extra=aggregate + group)),
                   sa.text(_CAPPED.format(firsts=firsts, extra=(aggregate and f"{aggregate} FILTER (WHERE rank <= :cap)")
                                          + capped_group)))


def _times(column: str) -> tuple[str, str]:
    """With MIRT_RESPONSE_TIME_COLUMN: the firsts' time column, and its aggregate (4 bytes each, NaN unknown).

    Both aggregates of a student's group see its rows in one order, so the
    n-th time belongs to the n-th code. ``column`` is checked by the
    settings (letters, digits, _) and quoted here.
    """
    if not column:
        return "", ""
    return (f", CAST({quoted(column)} AS float8) AS response_ms",
            ", string_agg(float4send(coalesce(response_ms, 'NaN')::float4), ''::bytea)")


#: By (scoped, student_id is text): the load's statements.
#: The load's sort key: a text student_id under the "C" collation, a number as it is.
_STUDENT = {True: 'student_id COLLATE "C"', False: "student_id"}
_LOADS = {(scoped, student): _Load.over(_SCOPED_WINDOW if scoped else _WINDOW, student)
          for scoped in (False, True) for student in _STUDENT.values()}
#: Session settings of the load: its sort gets room to stay in memory, the plan is not JIT-compiled (a
#: second or more of LLVM for a query bound by one sort), and the planner is told that parallel workers
#: cost nothing to start, so that the sort is shared out over them (Gather Merge of sorted parts: the
#: sort took half of a 100M-answer run on one core); as many as the server allows a query
#: (max_parallel_workers_per_gather, 2 by default).
_LOAD_SETTINGS = ("SET LOCAL jit = off", "SET LOCAL work_mem = '64MB'", "SET LOCAL parallel_setup_cost = 0",
                  "SET LOCAL parallel_tuple_cost = 0")
#: student_id types sorted under the "C" collation.
_TEXT_TYPES = ("text", "character varying", "character")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def quoted(identifier: str) -> str:
    """``identifier`` as a quoted SQL identifier (settings allow only letters, digits and _; quoted all the same)."""
    return '"' + identifier.replace('"', '""') + '"'


def scope_parameters(scope: Scope) -> dict:
    return {} if scope.whole_bank else {"scope_key": scope.key, "scope": scope.name}


def _student_is_text(conn: sa.Connection) -> bool:
    """Whether attempt.student_id (a table's or a view's column) is of a text type."""
    kind = conn.execute(sa.text(
        "SELECT format_type(atttypid, NULL) FROM pg_attribute "
        "WHERE attrelid = to_regclass('attempt') AND attname = 'student_id' AND NOT attisdropped")).scalar()
    return kind in _TEXT_TYPES


def _moment(microseconds: int | None) -> datetime | None:
    return None if microseconds is None else _EPOCH + timedelta(microseconds=int(microseconds))


def load_observations(conn: sa.Connection, since: datetime, until: datetime, cap: int,
                      scope: Scope, *, group_column: str = "", response_time_column: str = "") -> Observations:
    """Each student's first answer to each question of ``scope`` in (since, until], the ``cap`` most recent.

    With ``group_column`` (MIRT_DIF_GROUP_COLUMN, checked by ``platform.check_group_column``), also each student's
    group: the label of the student's earliest loaded answer that has one. With ``response_time_column``
    (a checked column name of attempt), each answer's time comes with it (``Observations.response_ms``).
    Call inside a transaction (the load's settings are local to it).
    """
    for statement in _LOAD_SETTINGS:
        conn.exec_driver_sql(statement)
    scoped, student = not scope.whole_bank, _STUDENT[_student_is_text(conn)]
    load = (_Load.over(_SCOPED_WINDOW if scoped else _WINDOW, student, group_column, response_time_column)
            if group_column or response_time_column else _LOADS[(scoped, student)])
    window = {"since": since, "until": until, **scope_parameters(scope)}
    attempts = int(conn.execute(load.count, window).scalar())
    capped = False
    if attempts > cap:
        rows = _Copied(conn, load.capped, {**window, "cap": cap})
        capped = bool(rows.rows) and bool(np.frombuffer(rows.joined(4), np.uint8).any())
        answered = ~rows.null(1)  # a student whose only answers fell past the cap has none
        if not answered.all():
            rows.keep(answered)
        extra = 5
    else:
        rows = _Copied(conn, load.everything, window)
        extra = 4
    try:
        response_ms = (np.frombuffer(rows.joined(extra), dtype=">f4").astype(np.float64)
                       if response_time_column else None)
        groups = rows.texts(extra + bool(response_time_column)) if group_column else None
        lengths = rows.lengths[1] // 8 if rows.rows else np.zeros(0, np.int64)
        first_at = _moment(np.frombuffer(rows.joined(2), ">i8").min()) if rows.rows else None
        last_at = _moment(np.frombuffer(rows.joined(3), ">i8").max()) if rows.rows else None
        packed = rows.joined(1) if rows.rows else b""
        # The ids made together, from one string split: they fill a few of Python's small-object arenas
        # (see ``_compacted``). Text from PostgreSQL holds no NUL.
        student_ids = rows.texts(0) if rows.rows else []
        student_ids = _compacted(student_ids)
    finally:
        rows.close()
    # The last byte of each big-endian code holds "correct"; the rest, shifted, the question id.
    correct = np.frombuffer(packed, dtype=np.uint8)[7::8] & 1
    codes = np.frombuffer(packed, dtype=">i8").astype(np.int64)
    del packed
    codes >>= 1
    question_ids, item = _index_items(codes)
    ptr = np.zeros(len(student_ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    return Observations(
        responses=Responses(ptr, item, correct, int(question_ids.size)),
        student_ids=student_ids,
        question_ids=question_ids,
        first_at=first_at,
        last_at=last_at,
        attempts_in_window=attempts,
        capped=capped,
        groups=groups,
        response_ms=response_ms,
    )


def _inlined(statement: sa.TextClause, conn: sa.Connection, values: dict) -> str:
    """``statement`` with its parameters written in as literals (COPY takes none): numbers and datetimes as
    Python writes them, text quoted by the server (``quote_literal``), so that no value is read as SQL."""
    def literal(value) -> str:
        if isinstance(value, bool) or value is None:
            raise TypeError(f"no literal for {value!r}")
        if isinstance(value, int):
            return str(int(value))
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"a window's bound without a time zone: {value!r}")
            return f"CAST('{value.isoformat()}' AS timestamptz)"
        return conn.execute(sa.text("SELECT quote_literal(CAST(:v AS text))"), {"v": str(value)}).scalar()
    literals = {name: literal(value) for name, value in values.items()}
    return re.sub(r"(?<![:\w]):(\w+)", lambda m: literals.get(m[1], m[0]), statement.text)


class _Copied:
    """The rows of a query as PostgreSQL's binary COPY gave them: one buffer, each value's place in it.

    One row per student crosses the wire as raw bytes and is cut here with
    ``struct``: the driver's own row handling (pg8000, in Python) cost about
    15 µs a row, and bytea went as hex text, twice its size. Values stay in
    the buffer until asked for (``joined``, ``texts``), so that the answers
    are copied once, into their one array.
    """

    def __init__(self, conn: sa.Connection, statement: sa.TextClause, values: dict) -> None:
        buffer = io.BytesIO()
        conn.connection.driver_connection.cursor().execute(
            f"COPY ({_inlined(statement, conn, values)}) TO STDOUT WITH (FORMAT binary)", stream=buffer)
        self.data = data = buffer.getbuffer()
        if bytes(data[:11]) != _BINARY_HEADER[:11]:
            raise RuntimeError("the load's COPY did not come back in PostgreSQL's binary format")
        (extension,) = struct.unpack_from(">i", data, 15)
        at, end = 19 + extension, len(data) - 2  # after the header, before the trailer
        fields = struct.unpack_from(">h", data, at)[0] if at < end else 0
        length_of = struct.Struct(">i").unpack_from
        starts = [array.array("q") for _ in range(fields)]  # -1: NULL
        lengths = [array.array("q") for _ in range(fields)]
        places = list(zip(starts, lengths))
        while at < end:
            at += 2
            for start, length in places:
                (n,) = length_of(data, at)
                at += 4
                if n < 0:
                    start.append(-1)
                    length.append(0)
                else:
                    start.append(at)
                    length.append(n)
                    at += n
        self.starts = [np.frombuffer(a, np.int64) for a in starts]
        self.lengths = [np.frombuffer(a, np.int64) for a in lengths]
        self.rows = len(starts[0]) if fields else 0

    def keep(self, rows: np.ndarray) -> None:
        """Keep only ``rows`` (a boolean mask)."""
        self.starts = [a[rows] for a in self.starts]
        self.lengths = [a[rows] for a in self.lengths]
        self.rows = int(rows.sum())

    def null(self, column: int) -> np.ndarray:
        return self.starts[column] < 0

    def joined(self, column: int) -> bytes:
        """The column's values one after the other (NULLs add nothing)."""
        starts, lengths = self.starts[column], self.lengths[column]
        width = int(lengths[0]) if lengths.size else 0
        if 0 < width <= 16 and (lengths == width).all():  # a number in every row: gathered by numpy
            everything = np.frombuffer(self.data, np.uint8)
            return everything[starts[:, None] + np.arange(width)].tobytes()
        out = bytearray(int(lengths.sum()))
        data, at = self.data, 0
        for start, length in zip(starts.tolist(), lengths.tolist()):
            out[at:at + length] = data[start:start + length]
            at += length
        return bytes(out) if len(out) < 1 << 20 else out

    def texts(self, column: int) -> list[str | None]:
        data = self.data
        return [None if start < 0 else str(data[start:start + length], "utf-8")
                for start, length in zip(self.starts[column].tolist(), self.lengths[column].tolist())]

    def close(self) -> None:
        self.data.release()


def _compacted(ids: list[str]) -> list[str]:
    """The same ids as new strings, made after the rows they came from were freed.

    Each id was allocated among its row's objects; the ids alone keep
    every one of Python's small-object arenas they sit in from going back
    to the system, which held about 560 bytes a student (1.1 GB at 2M
    students) for the rest of the run. Made again together, they fill a
    few arenas and the others are released. (Ids are text, which in
    PostgreSQL holds no NUL.)
    """
    if not ids:
        return []
    joined = "\x00".join(ids)
    ids.clear()
    return joined.split("\x00")


def _index_items(question_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct question ids, each response's index among them); overwrites its input.

    Question ids usually span a range not much wider than the data, so a
    lookup table indexes them in linear time; sparse ids fall back to sorting.
    """
    if question_ids.size == 0:
        return question_ids, np.zeros(0, np.int32)
    low, high = int(question_ids.min()), int(question_ids.max())
    span = high - low + 1
    if span > max(4 * question_ids.size, 1 << 20) or span > 1 << 28:
        distinct, index = np.unique(question_ids, return_inverse=True)
        return distinct, index.astype(np.int32)
    question_ids -= low
    present = np.zeros(span, dtype=bool)
    present[question_ids] = True
    distinct = np.flatnonzero(present)
    lookup = np.full(span, -1, dtype=np.int32)
    lookup[distinct] = np.arange(distinct.size, dtype=np.int32)
    return distinct + low, lookup[question_ids]


_ANCHOR = "jsonb_typeof(meta->'tags') = 'array' AND meta->'tags' @> '[\"anchor\"]'::jsonb"


def questions_of(scope: Scope) -> str:
    """A WHERE condition on question for ``scope`` (its parameters from ``scope_parameters``)."""
    return "true" if scope.whole_bank else _IN_SCOPE


def load_anchor_rows(conn: sa.Connection, scope: Scope) -> list[tuple[int, object]]:
    """(question id, meta->'irt') of every question of ``scope`` tagged "anchor"."""
    return [tuple(row) for row in conn.execute(sa.text(
        f"SELECT id, meta->'irt' FROM question WHERE {_ANCHOR} AND {questions_of(scope)} ORDER BY id"
    ), scope_parameters(scope))]


def scopes_in_bank(conn: sa.Connection, scope_key: str) -> list[str]:
    """The distinct values of ``meta->>scope_key`` among the questions (strings and numbers), sorted."""
    return [row[0] for row in conn.execute(sa.text(
        "SELECT DISTINCT meta->>CAST(:k AS text) FROM question "
        "WHERE jsonb_typeof(meta->CAST(:k AS text)) IN ('string', 'number') ORDER BY 1"
    ), {"k": scope_key})]


def check_scope(conn: sa.Connection, scope: Scope) -> None:
    """Raise ``UnknownScope`` (naming the bank's scopes) unless some question belongs to ``scope``.

    The whole bank always exists. A scope with questions but no answers in
    the window passes: that is a quiet week, not a mistake.
    """
    if scope.whole_bank or conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM question WHERE {_IN_SCOPE})"),
                                        scope_parameters(scope)).scalar():
        return
    raise scopes.unknown(scope, scopes_in_bank(conn, scope.key))


# --- run records -----------------------------------------------------------------------------

def insert_run(conn: sa.Connection, run_id: uuid.UUID, request_id: str | None, scope: Scope,
               model_spec: dict) -> None:
    conn.execute(sa.text(
        "INSERT INTO mirt_fit_meta (run_id, request_id, scope, status, model_spec) "
        "VALUES (:run_id, :request_id, :scope, 'running', CAST(:model_spec AS jsonb))"
    ), {"run_id": run_id, "request_id": request_id, "scope": scope.name, "model_spec": json.dumps(model_spec)})


def finish_run(conn: sa.Connection, run_id: uuid.UUID, status: str, model_spec: dict, fit_stats: dict,
               summary: dict, error: str | None = None, fitted_at: datetime | None = None) -> None:
    conn.execute(sa.text(
        "UPDATE mirt_fit_meta SET status = :status, model_spec = CAST(:model_spec AS jsonb), "
        "fit_stats = CAST(:fit_stats AS jsonb), summary = CAST(:summary AS jsonb), error = :error, "
        "fitted_at = :fitted_at, finished_at = now() WHERE run_id = :run_id"
    ), {"run_id": run_id, "status": status, "model_spec": json.dumps(model_spec),
        "fit_stats": json.dumps(fit_stats), "summary": json.dumps(summary, default=str), "error": error,
        "fitted_at": fitted_at})


def store_summary(conn: sa.Connection, run_id: uuid.UUID, summary: dict) -> None:
    conn.execute(sa.text("UPDATE mirt_fit_meta SET summary = CAST(:summary AS jsonb) WHERE run_id = :run_id"),
                 {"run_id": run_id, "summary": json.dumps(summary, default=str)})


def finished_run_summary(conn: sa.Connection, request_id: str, scope: Scope,
                         finished: tuple[str, ...]) -> dict | None:
    """The summary of the latest run of ``scope`` that answered ``request_id``, if one finished."""
    return conn.execute(sa.text(
        "SELECT summary FROM mirt_fit_meta WHERE request_id = :request_id AND scope = :scope "
        "AND status = ANY(:finished) AND summary IS NOT NULL ORDER BY finished_at DESC LIMIT 1"
    ), {"request_id": request_id, "scope": scope.name, "finished": list(finished)}).scalar()


def run_item_params(conn: sa.Connection, run_id: str) -> list[tuple[int, str, dict]]:
    """(item id, model, params) of one run's item parameters, from the history."""
    return [(int(r[0]), r[1], r[2]) for r in conn.execute(sa.text(
        "SELECT item_id, model, params FROM mirt_item_params_history WHERE run_id = CAST(:r AS uuid) ORDER BY item_id"),
        {"r": run_id})]


def run_summary(conn: sa.Connection, run_id: str) -> dict | None:
    """The summary recorded for run ``run_id``."""
    return conn.execute(sa.text("SELECT summary FROM mirt_fit_meta WHERE run_id = CAST(:r AS uuid)"),
                        {"r": run_id}).scalar()


def run_estimates(conn: sa.Connection, run_id: str) -> tuple[list, list]:
    """What run ``run_id`` left current: (item id, a, b) of its items by id, (user id, theta, SE) of its students."""
    items = conn.execute(sa.text(
        "SELECT item_id, (params->>'a')::float8, (params->>'b')::float8 FROM mirt_item_params "
        "WHERE run_id = :r ORDER BY item_id"), {"r": run_id}).all()
    people = conn.execute(sa.text(
        "SELECT user_id, theta, theta_se FROM mirt_ability WHERE run_id = :r"), {"r": run_id}).all()
    return items, people


def _storable(text: str) -> str:
    """``text`` as PostgreSQL text can hold it: no NUL, no unpaired surrogate (each shown escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\u0000")


def record_rejected_message(conn: sa.Connection, message_id: str, reason: str, data: bytes,
                            attributes: dict) -> None:
    """Record a rejected message; whatever bytes it holds are stored, escaped where PostgreSQL cannot take them."""
    conn.execute(sa.text(
        "INSERT INTO mirt_rejected_message (message_id, reason, data, attributes) "
        "VALUES (:message_id, :reason, :data, CAST(:attributes AS jsonb))"
    ), {"message_id": _storable(message_id), "reason": _storable(reason),
        "data": _storable(data.decode("utf-8", "replace")[:100_000]),
        "attributes": json.dumps({_storable(str(k)): _storable(str(v)) for k, v in attributes.items()})})


# --- bulk writes -----------------------------------------------------------------------------

def _copy_csv(conn: sa.Connection, table: str, columns: tuple[str, ...], rows) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    cursor = conn.connection.driver_connection.cursor()
    cursor.execute(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)",
                   stream=io.BytesIO(buffer.getvalue().encode()))


#: PostgreSQL's binary COPY: the signature, no flags, no header extension; the end of the rows.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_BINARY_TRAILER = b"\xff\xff"


def _binary_rows(texts: list[str], *numbers: np.ndarray) -> bytes:
    """Rows (text, float8, ...) in PostgreSQL's binary COPY format, built by numpy; a NaN number is NULL.

    Each row: the field count (int16), then each field's length (int32; -1
    for NULL, with no bytes after it) and its bytes, big-endian. A CSV
    written by Python cost 2.3 µs a row, most of the COPY's time.
    """
    n = len(texts)
    if n == 0:
        return _BINARY_HEADER + _BINARY_TRAILER
    joined = np.frombuffer("\x00".join(texts).encode() + b"\x00", dtype=np.uint8)  # text holds no NUL
    ends = np.flatnonzero(joined == 0)
    lengths = np.diff(ends, prepend=-1) - 1
    present = [~np.isnan(x) for x in numbers]
    sizes = 2 + 4 + lengths + sum(4 + 8 * p for p in present)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(sizes, out=starts[1:])
    out = np.zeros(int(starts[-1]), np.uint8)
    starts = starts[:-1]

    def put(at: np.ndarray, values: np.ndarray, width: int) -> None:
        out[at[:, None] + np.arange(width)] = values.view(np.uint8).reshape(-1, width)

    put(starts, np.full(n, 1 + len(numbers), ">i2"), 2)
    put(starts + 2, lengths.astype(">i4"), 4)
    text_bytes = np.flatnonzero(joined)  # every byte but the separators
    out[np.repeat(starts + 6 - (ends - lengths), lengths) + text_bytes] = joined[text_bytes]
    at = starts + 6 + lengths
    for x, p in zip(numbers, present):
        put(at, np.where(p, 8, -1).astype(">i4"), 4)
        put(at[p] + 4, x[p].astype(">f8"), 8)
        at = at + 4 + 8 * p
    return _BINARY_HEADER + out.tobytes() + _BINARY_TRAILER


def write_item_params(conn: sa.Connection, run_id: uuid.UUID, fitted_at: datetime, model: str, scope: Scope,
                      item_ids: np.ndarray, params: list[dict], *, history_only: bool = False) -> int:
    """Record the run's item parameters in the history and (unless ``history_only``) upsert the current ones."""
    conn.exec_driver_sql("CREATE TEMP TABLE run_items (item_id bigint, params jsonb) ON COMMIT DROP")
    _copy_csv(conn, "run_items", ("item_id", "params"),
              ((int(i), json.dumps(p)) for i, p in zip(item_ids, params)))
    values = {"run_id": run_id, "fitted_at": fitted_at, "model": model, "scope": scope.name}
    recorded = conn.execute(sa.text(
        "INSERT INTO mirt_item_params_history (run_id, item_id, model, params, fitted_at, scope) "
        "SELECT :run_id, item_id, :model, params, :fitted_at, :scope FROM run_items"
    ), values).rowcount
    if history_only:
        return recorded
    return conn.execute(sa.text(
        "INSERT INTO mirt_item_params (item_id, model, params, run_id, fitted_at, scope) "
        "SELECT item_id, :model, params, :run_id, :fitted_at, :scope FROM run_items "
        "ON CONFLICT (item_id) DO UPDATE SET model = excluded.model, params = excluded.params, "
        "run_id = excluded.run_id, fitted_at = excluded.fitted_at, scope = excluded.scope"
    ), values).rowcount


def write_abilities(conn: sa.Connection, run_id: uuid.UUID, fitted_at: datetime, scope: Scope,
                    user_ids: list[str], theta: np.ndarray, se: np.ndarray, *, method: str = "EAP",
                    history_only: bool = False) -> int:
    """Record the run's abilities, scored by ``method``, in the history and (unless ``history_only``) upsert the
    current ones (one per student and scope). A NaN standard error (an infinite ML estimate) is written as NULL.

    The ability tables have no foreign key to mirt_fit_meta (migration 0009: checked once per row, it was
    half the write at scale): the run's record is checked here once, and held FOR KEY SHARE until the
    transaction ends, as each row's check did, so that no ability is written without its run's record.
    """
    _hold_run_record(conn, run_id)
    conn.exec_driver_sql(
        "CREATE TEMP TABLE run_abilities (user_id text, theta float8, theta_se float8) ON COMMIT DROP")
    conn.connection.driver_connection.cursor().execute(
        "COPY run_abilities (user_id, theta, theta_se) FROM STDIN WITH (FORMAT binary)",
        stream=io.BytesIO(_binary_rows(user_ids, np.asarray(theta, np.float64), np.asarray(se, np.float64))))
    values = {"run_id": run_id, "fitted_at": fitted_at, "scope": scope.name, "method": method}
    conn.execute(sa.text(
        "INSERT INTO mirt_ability_history (run_id, user_id, theta, theta_se, method, fitted_at, scope) "
        "SELECT :run_id, user_id, theta, theta_se, :method, :fitted_at, :scope FROM run_abilities"
    ), values)
    if history_only:
        return 0
    return conn.execute(sa.text(
        "INSERT INTO mirt_ability (user_id, scope, theta, theta_se, method, run_id, fitted_at) "
        "SELECT user_id, :scope, theta, theta_se, :method, :run_id, :fitted_at FROM run_abilities "
        "ON CONFLICT (user_id, scope) DO UPDATE SET theta = excluded.theta, theta_se = excluded.theta_se, "
        "method = excluded.method, run_id = excluded.run_id, fitted_at = excluded.fitted_at"
    ), values).rowcount


def _hold_run_record(conn: sa.Connection, run_id: uuid.UUID) -> None:
    """Lock run ``run_id``'s record FOR KEY SHARE until the transaction ends; raise if there is none.

    What a foreign key's check does for each row it writes, done once for all of them.
    """
    if conn.execute(sa.text("SELECT 1 FROM mirt_fit_meta WHERE run_id = :run_id FOR KEY SHARE"),
                    {"run_id": run_id}).scalar() is None:
        raise LookupError(f"run {run_id} has no record in mirt_fit_meta: its abilities are not written")


def write_plausible_values(conn: sa.Connection, run_id: uuid.UUID, fitted_at: datetime, scope: Scope, n: int,
                           means: np.ndarray, sds: np.ndarray) -> int:
    """Record the run's population statistics from each set of plausible values (one row per draw)."""
    return conn.execute(sa.text(
        "INSERT INTO mirt_plausible_values (run_id, scope, draw, n_students, mean, sd, fitted_at) "
        "VALUES (:run_id, :scope, :draw, :n, :mean, :sd, :fitted_at)"
    ), [{"run_id": run_id, "scope": scope.name, "draw": m + 1, "n": int(n), "mean": float(mean), "sd": float(sd),
         "fitted_at": fitted_at} for m, (mean, sd) in enumerate(zip(means, sds))]).rowcount
#: mirt_dif's columns after run_id and scope, in the order ``steps.dif.table_rows`` gives them.
DIF_COLUMNS = ("item_id", "reference_group", "focal_group", "n_reference", "n_focal", "mh_alpha", "mh_delta",
               "mh_delta_se", "mh_chi2", "mh_p", "ets_class", "wald_chi2", "wald_df", "wald_p", "wald_p_adjusted",
               "signed_difference", "rmsd_dif", "signed_area", "unsigned_area", "reference_a", "reference_b",
               "focal_a", "focal_b", "anchor", "flagged")


def write_dif(conn: sa.Connection, run_id: uuid.UUID, scope: Scope, rows: list[tuple]) -> int:
    """Record the run's DIF screen, one row per focal group and tested item (``DIF_COLUMNS``)."""
    if not rows:
        return 0
    conn.exec_driver_sql("CREATE TEMP TABLE run_dif (LIKE mirt_dif) ON COMMIT DROP")
    buffer = io.StringIO()  # \N for NULL, so that an empty scope or group label stays an empty string
    csv.writer(buffer, lineterminator="\n").writerows(
        (str(run_id), scope.name, *("\\N" if v is None else v for v in row)) for row in rows)
    conn.connection.driver_connection.cursor().execute(
        f"COPY run_dif (run_id, scope, {', '.join(DIF_COLUMNS)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')",
        stream=io.BytesIO(buffer.getvalue().encode()))
    return conn.execute(sa.text("INSERT INTO mirt_dif SELECT * FROM run_dif")).rowcount


# --- the run lock: one per scope --------------------------------------------------------------

def try_run_lock(conn: sa.Connection, scope: Scope) -> bool:
    """Take ``scope``'s session-level run lock on ``conn`` if free (released by ``release_run_lock``)."""
    return bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": scope.lock_key}).scalar())


def release_run_lock(conn: sa.Connection, scope: Scope) -> None:
    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": scope.lock_key})


def take_fence(conn: sa.Connection, run_id, scope: Scope) -> int:
    """Record ``run_id`` as the holder of ``scope``'s run lock; returns its fencing token (the last plus one).

    Call right after taking the run lock. Waits while a write transaction
    of an earlier holder has the fence row locked (``fence_holds``).
    """
    return int(conn.execute(sa.text(
        "INSERT INTO mirt_run_fence (lock_key, token, run_id, scope) VALUES (:k, 1, :run_id, :scope) "
        "ON CONFLICT (lock_key) DO UPDATE SET token = mirt_run_fence.token + 1, run_id = excluded.run_id, "
        "taken_at = now() RETURNING token"
    ), {"k": scope.lock_key, "run_id": run_id, "scope": scope.name}).scalar_one())


def fence_holds(conn: sa.Connection, token: int, scope: Scope) -> bool:
    """Inside a write transaction: whether ``token`` is still the latest of ``scope``'s run lock, until commit."""
    latest = conn.execute(sa.text("SELECT token FROM mirt_run_fence WHERE lock_key = :k FOR UPDATE"),
                          {"k": scope.lock_key}).scalar()
    return latest == token


#: Why a run left 'running' is recorded as abandoned by the next run of its scope.
STALE_RUN = ("abandoned: left running, and its scope's run lock free: the process running it ended, or lost its "
             "database connection or the run lock, before it finished")


def abandon_stale_runs(conn: sa.Connection, scope: Scope) -> list[str]:
    """Mark ``scope``'s runs left 'running' as abandoned; only call while holding its run lock, in a transaction.

    A scope's run also clears the whole bank's runs left 'running' from
    before scopes were configured, which no whole-bank run will come to
    clear: those whose lock is free. The whole bank's lock is taken for the
    rest of the transaction to tell (``pg_try_advisory_xact_lock``), so that
    a whole-bank run starting meanwhile (an older replica) waits its turn
    instead of having its fresh record taken for stale.
    """
    stale = [scope.name]
    if not scope.whole_bank and conn.execute(sa.text(
            # CASE, not AND: the lock is tried only when there is a whole-bank run to clear.
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM mirt_fit_meta WHERE status = 'running' AND scope = '') "
            "THEN pg_try_advisory_xact_lock(:k) ELSE false END"), {"k": scopes.WHOLE_BANK.lock_key}).scalar():
        stale.append(scopes.WHOLE_BANK.name)
    return [str(row[0]) for row in conn.execute(sa.text(
        "UPDATE mirt_fit_meta SET status = 'abandoned', finished_at = now(), error = :why "
        "WHERE status = 'running' AND scope = ANY(:scopes) RETURNING run_id"
    ), {"scopes": stale, "why": STALE_RUN})]
