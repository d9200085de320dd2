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


def format_runs(runs: list[dict], filters: str = "") -> str:
    """One line a run: when, scope, status, mode, model, the answers' window, items and students, what it
    reported, who asked, and its id (what report and bank accept take). ``filters``: the ones the list was read
    with, in words, for the line that says none matched."""
    if not runs:
        return f"no runs {filters}" if filters else "no runs recorded yet (python -m consumer calibrate runs one)"
    lines = [f"{'started':<25} {'scope':<12} {'status':<10} {'mode':<13} {'model':<5} {'answers from':<22} "
             f"{'items':>6} {'students':>9}  {'reported':<28} {'asked by':<16} run id"]
    for run in runs:
        constants = run["linking_constants"]
        if run["mode"] == "bank":
            reported = f"population N({constants.get('intercept', 0):.3f}, {constants.get('slope', 1):.3f}^2)"
        elif constants.get("method") not in (None, "none"):
            reported = f"{constants['method']} {constants.get('slope', 1):.3f}, {constants.get('intercept', 0):+.3f}"
        else:
            reported = "unlinked"
        mode = run["mode"] + (" (dry)" if run["dry_run"] else "")
        counts = run["counts"]
        lines.append(f"{run['started_at'] or '-':<25} {run['scope'] or '(whole)':<12} {run['status']:<10} "
                     f"{mode:<13} {run['model'] or '-':<5} {_window(run.get('window') or {}):<22} "
                     f"{counts.get('items_estimated', 0):>6} {counts.get('users', 0):>9}  {reported:<28} "
                     f"{(run.get('requested_by') or '-')[:16]:<16} {run['run_id']}")
    return "\n".join(lines)


def _window(window: dict) -> str:
    """The look-back window as two dates, 'YYYY-MM-DD..YYYY-MM-DD', or '-' when the run did not get that far."""
    since, until = window.get("since"), window.get("until")
    if not since or not until:
        return "-"
    return f"{since[:10]}..{until[:10]}"
