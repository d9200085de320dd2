"""Every SQL statement of the run review page (``report RUN_ID``), and each only reads.

Functions are named by what they read and return rows as plain Python
values; ``review.load`` assembles the page's data from them. A database
without runs is never given the service's tables here, and one migrated
before calibration scopes (no ``scope`` column) or before the item bank
(no ``mirt_bank_drift``) reads as having none.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from .platform import has_table  # noqa: F401 (the review reads it from here)


def runs_have_scopes(conn: sa.Connection) -> bool:
    """Whether mirt_fit_meta has its ``scope`` column (migrated since calibration scopes)."""
    return bool(conn.execute(sa.text(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'mirt_fit_meta' "
        "AND column_name = 'scope' AND table_schema = current_schema()")).scalar())


def run_row(conn: sa.Connection, run_id: str, scoped: bool) -> tuple | None:
    """(run id, status, request id, scope, model_spec, fit_stats, summary, error, started, finished, fitted)."""
    scope = "scope" if scoped else "''"
    return conn.execute(sa.text(
        f"SELECT run_id::text, status, request_id, {scope}, model_spec, fit_stats, summary, "
        "error, started_at, finished_at, fitted_at FROM mirt_fit_meta WHERE run_id::text = :r"), {"r": run_id}).first()


def run_ids_starting(conn: sa.Connection, prefix: str, limit: int = 6) -> list[str]:
    """Ids of the runs whose id starts with ``prefix`` (at most ``limit``), newest first."""
    return [r[0] for r in conn.execute(sa.text(
        "SELECT run_id::text FROM mirt_fit_meta WHERE run_id::text LIKE :p ORDER BY started_at DESC LIMIT :n"),
        {"p": prefix.lower().replace("%", "").replace("_", "") + "%", "n": limit})]


def latest_run_id(conn: sa.Connection, scope: str | None, scoped: bool) -> str | None:
    """The id of the latest run (of ``scope`` when given: '' is the whole bank), whatever its status."""
    where = "WHERE scope = :scope" if scope is not None and scoped else ""
    return conn.execute(sa.text(f"SELECT run_id::text FROM mirt_fit_meta {where} ORDER BY started_at DESC LIMIT 1"),
                        {"scope": scope}).scalar()


def item_rows(conn: sa.Connection, run_id: str, fields: tuple[str, ...]) -> list[tuple]:
    """(item id, *the numeric ``fields`` of its params, None where not stored) of a run's items, by item id."""
    columns = ", ".join(f"(params->>'{name}')::float8" for name in fields)
    return conn.execute(sa.text(
        f"SELECT item_id, {columns} FROM mirt_item_params_history WHERE run_id = CAST(:r AS uuid) ORDER BY item_id"),
        {"r": run_id}).all()


def ability_blobs(conn: sa.Connection, run_id: str) -> tuple[bytes, bytes]:
    """A run's thetas and their standard errors, by user id, each as big-endian float8s in one byte string."""
    # Two float8 arrays in binary, one row: 400,000 students cross the wire as 6.4 MB, not 400,000 rows.
    row = conn.execute(sa.text(
        "SELECT coalesce(string_agg(float8send(theta), '' ORDER BY user_id), ''), "
        # An infinite ML estimate has no standard error (NULL): NaN here, so that both arrays keep one value each.
        "coalesce(string_agg(float8send(coalesce(theta_se, 'NaN')), '' ORDER BY user_id), '') "
        "FROM mirt_ability_history WHERE run_id = CAST(:r AS uuid)"), {"r": run_id}).one()
    return bytes(row[0]), bytes(row[1])


def earlier_run_ids(conn: sa.Connection, run_id: str, scope: str, scoped: bool, limit: int) -> list[str]:
    """Succeeded runs that wrote results, of ``scope``, fitted before ``run_id``; the latest first."""
    same_scope = "AND scope = :scope" if scoped else ""
    return list(conn.execute(sa.text(
        "SELECT run_id::text FROM mirt_fit_meta WHERE status = 'succeeded' "
        f"AND coalesce(model_spec->>'dry_run', 'false') <> 'true' {same_scope} AND run_id::text <> :r "
        "AND fitted_at < (SELECT coalesce(fitted_at, started_at) FROM mirt_fit_meta WHERE run_id::text = :r) "
        "ORDER BY fitted_at DESC LIMIT :n"), {"r": run_id, "scope": scope, "n": limit}).scalars())


def ability_summaries(conn: sa.Connection, run_ids: list[str], quantiles: tuple[float, ...]) -> list[tuple]:
    """Per run, oldest first: (run id, fitted_at, linking constants, model, students, mean, SD, [quantiles])."""
    if not run_ids:
        return []
    return conn.execute(sa.text(
        "SELECT m.run_id::text, m.fitted_at, m.model_spec->'linking_constants', m.model_spec->>'model', "
        "count(h.theta), avg(h.theta), stddev_samp(h.theta), "
        "percentile_cont(CAST(:q AS float8[])) WITHIN GROUP (ORDER BY h.theta) "
        "FROM mirt_fit_meta m LEFT JOIN mirt_ability_history h ON h.run_id = m.run_id "
        "WHERE m.run_id::text = ANY(:ids) GROUP BY m.run_id, m.fitted_at ORDER BY m.fitted_at"),
        {"ids": run_ids, "q": list(quantiles)}).all()


def anchor_meta(conn: sa.Connection, question_ids: list[int]) -> dict[int, dict]:
    """question.meta->'irt' of these questions as the platform holds it now (empty without a question table)."""
    if not question_ids or not has_table(conn, "question"):
        return {}
    rows = conn.execute(sa.text("SELECT id, meta->'irt' FROM question WHERE id = ANY(:ids)"),
                        {"ids": question_ids}).all()
    return {int(r[0]): r[1] for r in rows if isinstance(r[1], dict)}


def bank_populations(conn: sa.Connection, scope: str, until: datetime, limit: int) -> list[tuple]:
    """(run id, fitted_at, fit_stats' bank population) of the scope's last weekly bank runs up to ``until``,
    oldest first: succeeded runs that wrote results."""
    return conn.execute(sa.text(
        "SELECT run_id::text, fitted_at, fit_stats->'bank'->'population' FROM ("
        "SELECT run_id, fitted_at, fit_stats FROM mirt_fit_meta WHERE scope = :scope AND status = 'succeeded' "
        "AND coalesce(model_spec->>'dry_run', 'false') <> 'true' AND fit_stats->'bank'->>'mode' = 'weekly' "
        "AND fitted_at <= :until ORDER BY fitted_at DESC LIMIT :n) r ORDER BY fitted_at"),
        {"scope": scope, "until": until, "n": limit}).all()


def bank_drift_rows(conn: sa.Connection, scope: str, item_ids: list[int], until: datetime, runs: int) -> list[tuple]:
    """The drift watch of these items in the scope's last ``runs`` runs up to ``until``, by item, oldest first:
    (item id, run id, fitted_at, a, b, a_se, b_se, a_bank, b_bank, z_b, z_a, flagged)."""
    if not item_ids or not has_table(conn, "mirt_bank_drift"):
        return []
    return conn.execute(sa.text(
        "SELECT item_id, run_id::text, fitted_at, a, b, a_se, b_se, a_bank, b_bank, z_b, z_a, flagged FROM ("
        "SELECT *, row_number() OVER (PARTITION BY item_id ORDER BY fitted_at DESC) AS n FROM mirt_bank_drift "
        "WHERE scope = :scope AND item_id = ANY(:ids) AND fitted_at <= :until) d "
        "WHERE n <= :runs ORDER BY item_id, fitted_at"),
        {"scope": scope, "ids": item_ids, "until": until, "runs": runs}).all()


def bank_item_params(conn: sa.Connection, scope: str, item_ids: list[int]) -> dict[int, tuple[str, dict]]:
    """(status, params) of these items in the scope's bank now."""
    if not item_ids or not has_table(conn, "mirt_bank_item"):
        return {}
    return {int(r[0]): (r[1], r[2] or {}) for r in conn.execute(sa.text(
        "SELECT item_id, status, params FROM mirt_bank_item WHERE scope = :scope AND item_id = ANY(:ids)"),
        {"scope": scope, "ids": item_ids})}
