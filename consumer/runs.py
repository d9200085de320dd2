"""``python -m consumer runs``: the latest calibration runs, to find the one to review or accept, without SQL."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from .db import ledger
from .db.engine import unavailable
from .scope import Scope


def latest_runs(engine: sa.Engine, scope: Scope | None, limit: int = 20, status: str | None = None,
                since: datetime | None = None) -> list[dict]:
    """The latest runs, newest first (of one scope, or of every scope when ``scope`` is None; started ``since``)."""
    try:
        with engine.connect() as conn:
            return ledger.recent_runs(conn, scope, limit, status, since)
    except sa.exc.DBAPIError as exc:
        raise unavailable(engine, exc) from exc


def format_runs(runs: list[dict]) -> str:
    """One line a run: when, scope, status, mode, what it reported, and its id (what report and bank accept take)."""
    if not runs:
        return "no runs recorded yet (python -m consumer calibrate runs one)"
    lines = [f"{'started':<25} {'scope':<12} {'status':<10} {'mode':<13} {'model':<5} {'observations':>12}  "
             f"{'reported':<28} run id"]
    for run in runs:
        constants = run["linking_constants"]
        if run["mode"] == "bank":
            reported = f"population N({constants.get('intercept', 0):.3f}, {constants.get('slope', 1):.3f}^2)"
        elif constants.get("method") not in (None, "none"):
            reported = f"{constants['method']} {constants.get('slope', 1):.3f}, {constants.get('intercept', 0):+.3f}"
        else:
            reported = "unlinked"
        mode = run["mode"] + (" (dry)" if run["dry_run"] else "")
        lines.append(f"{run['started_at'] or '-':<25} {run['scope'] or '(whole)':<12} {run['status']:<10} "
                     f"{mode:<13} {run['model'] or '-':<5} {run['counts'].get('observations', 0):>12}  "
                     f"{reported:<28} {run['run_id']}")
    return "\n".join(lines)
