"""The SQL of ``export``: a scope's bank items (or, without a bank, its current parameters) and the runs behind them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ..scope import Scope

#: (item id, status, model, params, run id, answers in the latest run that estimated the item).
ItemRow = tuple[int, str, str, dict, str | None, int | None]


def bank_items(conn: sa.Connection, scope: Scope) -> list[ItemRow]:
    """The scope's operational and pretest bank items, with the answers of the latest run that estimated each."""
    return _item_rows(conn.execute(sa.text(
        "SELECT b.item_id, b.status, b.model, b.params, b.run_id::text, (p.params->>'n_responses')::bigint "
        "FROM mirt_bank_item b LEFT JOIN mirt_item_params p ON p.item_id = b.item_id AND p.scope = b.scope "
        "WHERE b.scope = :scope AND b.status IN ('operational', 'pretest') ORDER BY b.item_id"),
        {"scope": scope.name}))


def _item_rows(result) -> list[ItemRow]:
    return [(int(r[0]), r[1], r[2], r[3], r[4], None if r[5] is None else int(r[5])) for r in result]


def suspended_items(conn: sa.Connection, scope: Scope) -> int:
    return int(conn.execute(sa.text(
        "SELECT count(*) FROM mirt_bank_item WHERE scope = :scope AND status = 'suspended'"),
        {"scope": scope.name}).scalar())


def current_items(conn: sa.Connection, scope: Scope) -> list[ItemRow]:
    """The scope's current item parameters (``mirt_item_params``), each with its status where the run recorded one."""
    return _item_rows(conn.execute(sa.text(
        "SELECT item_id, coalesce(params->>'status', 'operational'), model, params, run_id::text, "
        "(params->>'n_responses')::bigint FROM mirt_item_params WHERE scope = :scope "
        "AND coalesce(params->>'status', 'operational') IN ('operational', 'pretest') ORDER BY item_id"),
        {"scope": scope.name}))


def runs(conn: sa.Connection, run_ids: list[str]) -> dict[str, dict]:
    """Per run: when it was fitted, its model, its linking constants and its mode (bank, recalibration or none)."""
    if not run_ids:
        return {}
    return {r[0]: {"fitted_at": r[1].isoformat() if r[1] else None, "model": r[2],
                   "linking_constants": r[3] or {}, "mode": r[4]}
            for r in conn.execute(sa.text(
                "SELECT run_id::text, fitted_at, model_spec->>'model', model_spec->'linking_constants', "
                "fit_stats->'bank'->>'mode' FROM mirt_fit_meta WHERE run_id = ANY(CAST(:ids AS uuid[]))"),
                {"ids": run_ids})}


def bank_changes(conn: sa.Connection, scope: Scope) -> list[tuple[str, str | None, str, datetime]]:
    """(change, run id, by, when) of the changes that set the bank's scale: its adoption and accepted recalibrations."""
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(sa.text(
        "SELECT change, run_id::text, changed_by, changed_at FROM mirt_bank_history "
        "WHERE scope = :scope AND change IN ('adopted', 'recalibrated') "
        "GROUP BY change, run_id, changed_by, changed_at ORDER BY changed_at"), {"scope": scope.name})]
