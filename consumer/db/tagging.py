"""The SQL of ``python -m consumer tag-anchors``: the latest run's items, and the anchor tags it adds."""

from __future__ import annotations

import json

import sqlalchemy as sa

from ..scope import Scope
from .queries import questions_of, scope_parameters


def latest_succeeded_run(conn: sa.Connection, scope: Scope) -> tuple[str, str] | None:
    """(run id, model) of ``scope``'s latest succeeded run that wrote parameters."""
    row = conn.execute(sa.text(
        "SELECT run_id::text, model_spec->>'model' FROM mirt_fit_meta WHERE status = 'succeeded' AND scope = :scope "
        "AND coalesce((model_spec->>'dry_run')::boolean, false) = false ORDER BY fitted_at DESC LIMIT 1"
    ), {"scope": scope.name}).first()
    return (row[0], row[1]) if row else None


def run_misfits(conn: sa.Connection, run_id: str) -> set[int]:
    """Items the run flagged for misfit."""
    spec = conn.execute(sa.text("SELECT model_spec FROM mirt_fit_meta WHERE run_id = CAST(:r AS uuid)"),
                        {"r": run_id}).scalar() or {}
    return {int(k) for k in spec.get("misfitting_items", {})}


def questions_not_taggable(conn: sa.Connection, scope: Scope) -> tuple[set[int], set[int]]:
    """Ids of ``scope``'s questions already tagged anchor, and of those whose meta.tags is not an array."""
    anchors, odd = set(), set()
    for question_id, kind, is_anchor in conn.execute(sa.text(
            "SELECT id, jsonb_typeof(meta->'tags'), coalesce(meta->'tags' @> '[\"anchor\"]'::jsonb, false) "
            f"FROM question WHERE {questions_of(scope)}"), scope_parameters(scope)):
        if is_anchor and kind == "array":
            anchors.add(int(question_id))
        elif kind not in (None, "array"):
            odd.add(int(question_id))
    return anchors, odd


def existing_question_ids(conn: sa.Connection, ids: list[int]) -> set[int]:
    return {int(r[0]) for r in conn.execute(sa.text("SELECT id FROM question WHERE id = ANY(:ids)"),
                                            {"ids": ids})}


def tag_anchors(conn: sa.Connection, irt_by_question: dict[int, dict]) -> int:
    """Add the "anchor" tag and store meta.irt for each question, keeping every other tag and key."""
    payload = json.dumps({str(k): v for k, v in irt_by_question.items()})
    return conn.execute(sa.text(
        "UPDATE question q SET meta = jsonb_set(jsonb_set(coalesce(q.meta, '{}'::jsonb), '{tags}', "
        "coalesce(q.meta->'tags', '[]'::jsonb) || '[\"anchor\"]'::jsonb), '{irt}', p.value) "
        "FROM jsonb_each(CAST(:payload AS jsonb)) p WHERE q.id = p.key::bigint"
    ), {"payload": payload}).rowcount
