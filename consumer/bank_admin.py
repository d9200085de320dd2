"""``python -m consumer bank``: adopt a scope's bank, accept a recalibration into it, show it.

- ``adopt`` makes a bank of a scope's current item parameters (``mirt_item_params``,
  or one run's with ``--run``): every item operational, on the scale those
  parameters are on. From then on the scope's runs hold that scale
  (``steps.bank``). A scope never adopted keeps its anchor-linked runs.
- ``accept RUN_ID`` replaces the bank parameters of the operational (and
  suspended) items with those of a recalibration run, which was linked onto
  the bank and reported its impact on scores; the only way bank parameters
  change besides promotions.
- ``show`` lists the bank: counts by status, and the items flagged for drift
  with their recent history.

Every change is recorded in ``mirt_bank_history`` with who made it and when.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from .calibration import SUCCEEDED
from .db import bank as bank_db
from .db import queries
from .errors import ConfigError, ServiceError
from .irt import bank as rules
from .scope import Scope

log = logging.getLogger("consumer.bank")


class BankRefused(ServiceError):
    """The bank command cannot do what it was asked (no parameters, a bank already there, a run that is not one)."""


@dataclass
class BankChange:
    scope: str
    change: str
    items: int
    run_id: str | None = None
    by: str = ""
    statuses: dict[str, int] = field(default_factory=dict)


def _params(params: dict) -> dict | None:
    """The bank's copy of an item's parameters (a, b, c and their standard errors), or None if they are unusable."""
    out = {}
    for key in ("a", "b", "c", "a_se", "b_se", "c_se"):
        value = params.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)
    if "a" not in out or "b" not in out or out["a"] <= 0:
        return None
    out.setdefault("c", 0.0)
    return out


def adopt(engine: sa.Engine, scope: Scope, by: str, run_id: str | None = None) -> BankChange:
    """Make the scope's current item parameters (or ``run_id``'s) its bank, every item operational."""
    with engine.begin() as conn:
        if bank_db.has_bank(conn, scope):
            raise BankRefused(f"{scope.item_bank} was adopted already",
                              "to change its parameters, run a recalibration (calibrate --recalibrate) and accept it "
                              "(bank accept RUN_ID)")
        if run_id is not None:
            _check_run(conn, run_id, scope, recalibration=False)
            rows = [(item_id, model, params, run_id)
                    for item_id, model, params in queries.run_item_params(conn, run_id)]
        else:
            rows = bank_db.current_item_params(conn, scope)
        usable = [(item_id, model, _params(params), source) for item_id, model, params, source in rows
                  if _params(params) is not None and params.get("status") in (None, rules.OPERATIONAL)]
        if not usable:
            raise BankRefused(f"there are no item parameters to make {scope.item_bank} of"
                              + (f" in run {run_id}" if run_id else ""),
                              "run a calibration first (python -m consumer calibrate)")
        models = sorted({model for _, model, _, _ in usable})
        if len(models) > 1:
            raise BankRefused(f"the current item parameters{'' if scope.whole_bank else ' of ' + scope.label} mix models "
                              f"({', '.join(models)})",
                              "adopt one run's parameters instead: bank adopt --run RUN_ID")
        now = datetime.now(timezone.utc)
        written = bank_db.put_items(conn, scope, [
            {"item_id": item_id, "status": rules.OPERATIONAL, "model": model, "params": params, "run_id": source,
             "reason": "adopted as the bank's scale"} for item_id, model, params, source in usable], "adopted", by, now)
    log.info("adopted %s: %d operational items (%s, from %s) by %s", scope.item_bank, written, models[0],
             f"run {run_id}" if run_id else "the current item parameters", by)
    return BankChange(scope.name, "adopted", written, run_id, by, {rules.OPERATIONAL: written})


def accept(engine: sa.Engine, scope: Scope, run_id: str, by: str) -> BankChange:
    """Replace the operational and suspended items' bank parameters with those of recalibration ``run_id``."""
    with engine.begin() as conn:
        if not bank_db.has_bank(conn, scope):
            raise BankRefused(f"no item bank has been adopted{'' if scope.whole_bank else ' for ' + scope.label} to accept a "
                              "recalibration into",
                              "adopt one first: python -m consumer bank adopt")
        _check_run(conn, run_id, scope, recalibration=True)
        if bank_db.accepted_before(conn, scope, run_id):
            raise BankRefused(f"recalibration {run_id} was already accepted into {scope.item_bank}")
        held = {row.item_id: row for row in bank_db.bank_items(conn, scope)
                if row.status in (rules.OPERATIONAL, rules.SUSPENDED)}
        rows = []
        for item_id, model, params in queries.run_item_params(conn, run_id):
            if item_id in held and _params(params) is not None:
                rows.append({"item_id": item_id, "status": rules.OPERATIONAL, "model": model,
                             "params": _params(params), "run_id": run_id,
                             "reason": f"recalibration accepted (was {held[item_id].status})"})
        if not rows:
            raise BankRefused(f"recalibration {run_id} estimated none of the bank's operational items")
        written = bank_db.put_items(conn, scope, rows, "recalibrated", by, datetime.now(timezone.utc))
    log.info("accepted recalibration %s into %s by %s: %d items' bank parameters replaced", run_id,
             scope.item_bank, by, written)
    return BankChange(scope.name, "recalibrated", written, run_id, by, {rules.OPERATIONAL: written})


def _check_run(conn: sa.Connection, run_id: str, scope: Scope, recalibration: bool) -> None:
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise ConfigError(f"{run_id!r} is not a run id (a UUID)", "take one from python -m consumer runs") from None
    record = bank_db.run_record(conn, run_id)
    if record is None:
        raise BankRefused(f"there is no run {run_id}", "check the run id")
    run_scope, status, spec, _ = record
    if run_scope != scope.name:
        raise BankRefused(f"run {run_id} calibrated {'scope ' + run_scope if run_scope else 'the whole bank'}, "
                          f"not {scope.label}", "pass the run's scope with --scope")
    if status != SUCCEEDED or spec.get("dry_run"):
        raise BankRefused(f"run {run_id} is {'a dry run' if spec.get('dry_run') else status}: it wrote no parameters")
    mode = (spec.get("request") or {}).get("mode")
    if recalibration and mode != "recalibration":
        raise BankRefused(f"run {run_id} is not a recalibration",
                          "run one first: python -m consumer calibrate --recalibrate")


def show(engine: sa.Engine, scope: Scope, flagged_runs: int = 8) -> dict:
    """The bank of ``scope``: counts by status, the latest changes, and the flagged items' drift history."""
    with engine.connect() as conn:
        rows = bank_db.bank_items(conn, scope)
        if not rows:
            raise BankRefused(f"no item bank has been adopted{'' if scope.whole_bank else ' for ' + scope.label}",
                              "adopt one: python -m consumer bank adopt")
        operational = [row.item_id for row in rows if row.status == rules.OPERATIONAL]
        streak = bank_db.recent_flags(conn, scope, operational, flagged_runs)
        flagged = sorted(streak)
        history = bank_db.drift_history(conn, scope, flagged, flagged_runs) if flagged else {}
        changes = bank_db.recent_changes(conn, scope, 20)
    return {"scope": scope.name, "statuses": {s: sum(row.status == s for row in rows) for s in rules.STATUSES},
            "flagged": {str(i): {"flagged_runs": streak[i], "of_runs": flagged_runs, "history": history.get(i, [])[::-1]} for i in flagged},
            "recent_changes": changes}


def format_show(shown: dict) -> str:
    lines = [f"item bank{' of scope ' + shown['scope'] if shown['scope'] else ''}: "
             + ", ".join(f"{n} {status}" for status, n in shown["statuses"].items())]
    if shown["flagged"]:
        lines.append("flagged for drift in the latest runs:")
        for item_id, flag in shown["flagged"].items():
            trail = " ".join(f"{h['b']:+.2f}" if h["b"] is not None else "-" for h in flag["history"])
            bank_b = flag["history"][-1]["b_bank"] if flag["history"] else float("nan")
            lines.append(f"  {item_id}: flagged in {flag['flagged_runs']} of the last {flag['of_runs']} run(s); bank b {bank_b:+.2f}; "
                         f"free b by run: {trail}")
    else:
        lines.append("no operational item flagged for drift in the latest run")
    if shown["recent_changes"]:
        lines.append("latest changes:")
        lines += [f"  {c['changed_at']} {c['change']:<13} "
                  f"{c['first_item'] if c['items'] == 1 else str(c['items']) + ' items':>10} -> {c['status']} "
                  f"by {c['changed_by']}" for c in shown["recent_changes"]]
    return "\n".join(lines)
