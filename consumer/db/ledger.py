"""The run ledger: a scope's run lock and fencing token, and each run's record from start to end.

A run holds its scope's session-level advisory lock on a connection of its
own for its whole length, and takes the next fencing token with it; it
writes only while that token is still the latest (``queries.fence_holds``,
checked inside the write transaction). Its row in ``mirt_fit_meta`` is
inserted as 'running' before any work and updated when it ends; a request
id already answered by a finished run is answered from that run's stored
summary instead of running again.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Iterator

import sqlalchemy as sa

from ..errors import RunLockBusy, ServiceError
from ..scope import Scope
from . import queries
from .connection import opened
from .engine import unavailable


@contextlib.contextmanager
def run_lock(engine: sa.Engine, scope: Scope, run_id: uuid.UUID) -> Iterator[int]:
    """Hold ``scope``'s run lock for the block; yields the run's fencing token.

    Raises ``RunLockBusy`` when another run of the scope holds it, and
    ``DatabaseUnavailable`` when the database cannot be reached.
    """
    try:
        conn = engine.connect()
    except Exception as exc:
        raise unavailable(engine, exc) from exc
    try:
        if not queries.try_run_lock(conn, scope):
            raise RunLockBusy(f"another calibration run of {scope.label} holds its run lock",
                              "wait for it to finish; the request is retried later")
        conn.commit()
        token = queries.take_fence(conn, run_id, scope)
        conn.commit()
        try:
            yield token
        finally:
            with contextlib.suppress(Exception):
                queries.release_run_lock(conn, scope)
                conn.commit()
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def record_start(engine: sa.Engine, run_id: uuid.UUID, request_id: str | None, scope: Scope,
                 model_spec: dict) -> list[str]:
    """Record the run as 'running'; returns the ids of the scope's runs left 'running' before it, now abandoned."""
    with opened(engine, transaction=True) as conn:
        stale = queries.abandon_stale_runs(conn, scope)
        queries.insert_run(conn, run_id, request_id, scope, model_spec)
    return stale


def record_end(engine: sa.Engine, run_id: uuid.UUID, status: str, model_spec: dict, fit: dict, summary: dict,
               error: str | None = None) -> None:
    """Record how a run ended that wrote nothing (a succeeded run is recorded inside its write transaction)."""
    with opened(engine, transaction=True) as conn:
        queries.finish_run(conn, run_id, status, model_spec, fit, summary, error=error)


def store_summary(engine: sa.Engine, run_id: uuid.UUID, summary: dict) -> ServiceError | None:
    """Store the run's final summary (every duration in it); returns the failure instead of raising it."""
    try:
        with opened(engine, transaction=True) as conn:
            queries.store_summary(conn, run_id, summary)
    except ServiceError as problem:
        return problem
    return None


def answered(engine: sa.Engine, request_id: str, scope: Scope, finished: tuple[str, ...]) -> dict | None:
    """The stored summary of the finished run of ``scope`` that answered ``request_id``, if there is one."""
    try:
        with engine.connect() as conn:
            return queries.finished_run_summary(conn, request_id, scope, finished)
    except sa.exc.DBAPIError as exc:
        raise unavailable(engine, exc) from exc


def recent_runs(conn: sa.Connection, scope: Scope | None, limit: int, status: str | None = None,
                since=None) -> list[dict]:
    """The latest runs, newest first: of ``scope`` (None: every scope), with ``status``, started ``since``."""
    where = ["true"]
    values: dict = {"limit": limit}
    if since is not None:
        where.append("started_at >= :since")
        values["since"] = since
    if scope is not None:
        where.append("scope = :scope")
        values["scope"] = scope.name
    if status is not None:
        where.append("status = :status")
        values["status"] = status
    rows = conn.execute(sa.text(
        "SELECT run_id::text, scope, status, request_id, started_at, finished_at, model_spec->>'model', "
        "model_spec->'linking_constants', model_spec->'request'->>'mode', fit_stats->'bank'->>'mode', "
        "(model_spec->>'dry_run')::boolean, summary->'counts', error, "
        "coalesce(model_spec->'window', summary->'window'), model_spec->'request'->>'requested_by' FROM mirt_fit_meta "
        f"WHERE {' AND '.join(where)} ORDER BY started_at DESC LIMIT :limit"), values)
    return [{"run_id": r[0], "scope": r[1], "status": r[2], "request_id": r[3],
             "started_at": r[4].isoformat(timespec="seconds") if r[4] else None,
             "finished_at": r[5].isoformat(timespec="seconds") if r[5] else None, "model": r[6],
             "linking_constants": r[7] or {}, "mode": _mode(r[8], r[9]), "dry_run": bool(r[10]),
             "counts": r[11] or {}, "error": r[12],
             "window": {k: (r[13] or {}).get(k) for k in ("since", "until")}, "requested_by": r[14]} for r in rows]


def _mode(requested: str | None, ran: str | None) -> str:
    if requested == "recalibration" or ran == "recalibration":
        return "recalibration"
    return "bank" if ran == "weekly" else "linked"
