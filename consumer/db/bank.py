"""Every SQL statement about a scope's item bank: its items, their history, and each run's drift watch."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from ..scope import Scope


@dataclass(frozen=True)
class BankRow:
    item_id: int
    status: str
    model: str
    params: dict
    run_id: str | None
    changed_by: str
    changed_at: datetime


def has_bank(conn: sa.Connection, scope: Scope) -> bool:
    return bool(conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM mirt_bank_item WHERE scope = :scope)"),
                             {"scope": scope.name}).scalar())


def bank_items(conn: sa.Connection, scope: Scope) -> list[BankRow]:
    return [BankRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in conn.execute(sa.text(
        "SELECT item_id, status, model, params, run_id::text, changed_by, changed_at FROM mirt_bank_item "
        "WHERE scope = :scope ORDER BY item_id"), {"scope": scope.name})]


def put_items(conn: sa.Connection, scope: Scope, rows: list[dict], change: str, changed_by: str,
              changed_at: datetime) -> int:
    """Insert or replace bank items (``item_id``, ``status``, ``model``, ``params``, ``run_id``, ``reason``)
    and record each change in the bank's history."""
    if not rows:
        return 0
    payload = json.dumps([{**r, "run_id": str(r["run_id"]) if r.get("run_id") else None} for r in rows])
    values = {"scope": scope.name, "payload": payload, "change": change, "by": changed_by, "at": changed_at}
    items = ("SELECT (x->>'item_id')::bigint AS item_id, x->>'status' AS status, x->>'model' AS model, "
             "x->'params' AS params, (x->>'run_id')::uuid AS run_id, x->>'reason' AS reason "
             "FROM jsonb_array_elements(CAST(:payload AS jsonb)) x")
    conn.execute(sa.text(
        "INSERT INTO mirt_bank_history (scope, item_id, change, status, params, run_id, changed_by, changed_at, "
        f"reason) SELECT :scope, item_id, :change, status, params, run_id, :by, :at, reason FROM ({items}) i"),
        values)
    return conn.execute(sa.text(
        "INSERT INTO mirt_bank_item (scope, item_id, status, model, params, run_id, changed_by, changed_at) "
        f"SELECT :scope, item_id, status, model, params, run_id, :by, :at FROM ({items}) i "
        "ON CONFLICT (scope, item_id) DO UPDATE SET status = excluded.status, model = excluded.model, "
        "params = excluded.params, run_id = excluded.run_id, changed_by = excluded.changed_by, "
        "changed_at = excluded.changed_at"), values).rowcount


def recent_flags(conn: sa.Connection, scope: Scope, item_ids: list[int], runs: int) -> dict[int, int]:
    """Per item: how many of the scope's latest ``runs`` drift watches flagged it (items never flagged left out)."""
    return {int(item_id): int(n) for item_id, n in conn.execute(sa.text(
        "WITH latest AS (SELECT run_id FROM (SELECT DISTINCT run_id, fitted_at FROM mirt_bank_drift "
        "WHERE scope = :scope) r ORDER BY fitted_at DESC LIMIT :runs) "
        "SELECT item_id, count(*) FROM mirt_bank_drift WHERE scope = :scope AND flagged "
        "AND run_id IN (SELECT run_id FROM latest) AND item_id = ANY(:ids) GROUP BY item_id"),
        {"scope": scope.name, "ids": item_ids, "runs": runs})}


def write_drift(conn: sa.Connection, run_id: uuid.UUID, scope: Scope, fitted_at: datetime,
                rows: list[dict]) -> int:
    if not rows:
        return 0
    return conn.execute(sa.text(
        "INSERT INTO mirt_bank_drift (run_id, scope, item_id, a, b, a_se, b_se, a_bank, b_bank, z_b, z_a, flagged, "
        "fitted_at) SELECT :run_id, :scope, (x->>'item_id')::bigint, (x->>'a')::float8, (x->>'b')::float8, "
        "(x->>'a_se')::float8, (x->>'b_se')::float8, "
        "(x->>'a_bank')::float8, (x->>'b_bank')::float8, (x->>'z_b')::float8, (x->>'z_a')::float8, "
        "(x->>'flagged')::boolean, :at FROM jsonb_array_elements(CAST(:payload AS jsonb)) x"),
        {"run_id": run_id, "scope": scope.name, "at": fitted_at, "payload": json.dumps(rows)}).rowcount


def drift_history(conn: sa.Connection, scope: Scope, item_ids: list[int], runs: int = 8) -> dict[int, list[dict]]:
    """The last ``runs`` drift-watch rows of each item (its free estimates on the bank's scale), newest first."""
    out: dict[int, list[dict]] = {}
    for row in conn.execute(sa.text(
            "SELECT item_id, run_id::text, fitted_at, a, b, a_se, b_se, a_bank, b_bank, z_b, z_a, flagged FROM ("
            "SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY fitted_at DESC) AS n FROM mirt_bank_drift "
            "WHERE scope = :scope AND item_id = ANY(:ids)) d WHERE n <= :runs ORDER BY item_id, fitted_at DESC"),
            {"scope": scope.name, "ids": item_ids, "runs": runs}):
        out.setdefault(int(row[0]), []).append(
            {"run_id": row[1], "fitted_at": row[2].isoformat(), "a": row[3], "b": row[4], "a_se": row[5],
             "b_se": row[6], "a_bank": row[7], "b_bank": row[8], "z_b": row[9], "z_a": row[10], "flagged": row[11]})
    return out


def pretest_history(conn: sa.Connection, scope: Scope, item_ids: list[int], runs: int) -> dict[int, list[dict]]:
    """Each item's estimates of the scope's latest ``runs`` bank-mode runs that estimated it, newest first."""
    out: dict[int, list[dict]] = {}
    for item_id, params in conn.execute(sa.text(
            "SELECT item_id, params FROM (SELECT h.item_id, h.params, row_number() OVER "
            "(PARTITION BY h.item_id ORDER BY h.fitted_at DESC) AS n FROM mirt_item_params_history h "
            "WHERE h.scope = :scope AND h.item_id = ANY(:ids) AND h.params->>'status' = 'pretest' "
            "AND coalesce(h.params->>'dry_run', 'false') <> 'true') p "
            "WHERE n <= :runs ORDER BY item_id, n"), {"scope": scope.name, "ids": item_ids, "runs": runs}):
        out.setdefault(int(item_id), []).append(params)
    return out


def current_item_params(conn: sa.Connection, scope: Scope) -> list[tuple[int, str, dict, str]]:
    """(item id, model, params, run id) of the scope's current item parameters (``mirt_item_params``)."""
    return [(int(r[0]), r[1], r[2], r[3]) for r in conn.execute(sa.text(
        "SELECT item_id, model, params, run_id::text FROM mirt_item_params WHERE scope = :scope ORDER BY item_id"),
        {"scope": scope.name})]


def run_record(conn: sa.Connection, run_id: str) -> tuple[str, str, dict, dict] | None:
    """(scope, status, model_spec, summary) of a run."""
    row = conn.execute(sa.text(
        "SELECT scope, status, model_spec, summary FROM mirt_fit_meta WHERE run_id = CAST(:r AS uuid)"),
        {"r": run_id}).first()
    return (row[0], row[1], row[2] or {}, row[3] or {}) if row else None


def accepted_before(conn: sa.Connection, scope: Scope, run_id: str) -> bool:
    return bool(conn.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM mirt_bank_history WHERE scope = :scope AND run_id = CAST(:r AS uuid) "
        "AND change = 'recalibrated')"), {"scope": scope.name, "r": run_id}).scalar())


def recent_changes(conn: sa.Connection, scope: Scope, limit: int) -> list[dict]:
    """The latest changes to the bank, one line per change of a run or a person at one time (items counted)."""
    return [{"change": r[0], "status": r[1], "run_id": r[2], "changed_by": r[3],
             "changed_at": r[4].isoformat(timespec="seconds"), "items": int(r[5]), "first_item": int(r[6])}
            for r in conn.execute(sa.text(
                "SELECT change, status, run_id::text, changed_by, changed_at, count(*), min(item_id) "
                "FROM mirt_bank_history WHERE scope = :scope GROUP BY change, status, run_id, changed_by, changed_at "
                "ORDER BY changed_at DESC, change LIMIT :n"), {"scope": scope.name, "n": limit})]
