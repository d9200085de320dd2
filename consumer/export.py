"""``export``: a scope's item bank as a file an adaptive test can load (CSV or JSON, documented in docs/interfaces.md).

The items are the scope's operational items and its pretest items (marked
so: calibrated onto the scale, not yet scored on), with a, b, c, their
standard errors, the answers behind them, the run that set them and the
scale they are on. A scope with an adopted bank exports its bank
(``mirt_bank_item``); a scope without one exports its current parameters
(``mirt_item_params``), and the file says so. Suspended items are left out.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from .calibration import export_command
from .db import export as export_db
from .errors import ServiceError
from .scope import Scope

FORMAT, FORMAT_VERSION = "irt-item-bank", 1
#: The columns of every item, in the CSV's order (docs/interfaces.md#the-exported-bank).
COLUMNS = ("item_id", "status", "model", "a", "b", "c", "a_se", "b_se", "c_se", "n_responses", "run_id",
           "fitted_at")
METRIC = "logistic, D = 1: P(correct | theta) = c + (1 - c) / (1 + exp(-a (theta - b)))"
BANK, ITEM_PARAMS = "mirt_bank_item", "mirt_item_params"


class NothingToExport(ServiceError):
    """The scope has neither a bank nor current item parameters."""


@dataclass(frozen=True)
class ExportedBank:
    """What an export holds: its metadata, and one row per item (``COLUMNS``; None where a value is not known)."""

    meta: dict
    items: list[dict]


def export_bank(engine: sa.Engine, scope: Scope) -> ExportedBank:
    """The scope's exportable items and their metadata, read in one transaction."""
    with engine.begin() as conn:
        rows = export_db.bank_items(conn, scope)
        source = BANK if rows else ITEM_PARAMS
        if not rows:
            rows = export_db.current_items(conn, scope)
        if not rows:
            raise NothingToExport(f"there is nothing to export for {scope.label}: no item bank has been adopted and "
                                  "no item parameters have been written",
                                  "run a calibration first (python -m consumer calibrate)")
        runs = export_db.runs(conn, sorted({r[4] for r in rows if r[4]}))
        suspended = export_db.suspended_items(conn, scope) if source == BANK else 0
        changes = export_db.bank_changes(conn, scope) if source == BANK else []
    items = [_item(item_id, status, model, params, run_id, answers, runs.get(run_id or "", {}))
             for item_id, status, model, params, run_id, answers in rows]
    models = sorted({item["model"] for item in items})
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "scope": scope.name, "scope_key": scope.key,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source, "model": models[0] if len(models) == 1 else models, "metric": METRIC,
        "scale": _scale(source, changes, runs),
        "n_items": len(items), "operational": sum(i["status"] == "operational" for i in items),
        "pretest": sum(i["status"] == "pretest" for i in items), "suspended_left_out": suspended,
        "runs": runs,
    }
    return ExportedBank(meta, items)


def _item(item_id: int, status: str, model: str, params: dict, run_id: str | None, answers: int | None,
          run: dict) -> dict:
    def number(key):
        value = params.get(key)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    return {"item_id": item_id, "status": status, "model": model, "a": number("a"), "b": number("b"),
            "c": number("c") or 0.0, "a_se": number("a_se"), "b_se": number("b_se"), "c_se": number("c_se"),
            "n_responses": answers, "run_id": run_id, "fitted_at": run.get("fitted_at")}


def _scale(source: str, changes: list, runs: dict) -> dict:
    """What the numbers' scale is: the bank's, held since its adoption, or that of the runs that wrote them."""
    if source == BANK:
        adopted = next((c for c in changes if c[0] == "adopted"), None)
        accepted = [c for c in changes if c[0] == "recalibrated"]
        return {"kind": "bank",
                "meaning": "the scope's bank scale, held run after run: operational items keep their bank "
                           "parameters, pretest items are calibrated onto them (fixed-parameter calibration), "
                           "and students are scored on the operational items",
                "adopted": _change(adopted), "recalibrations_accepted": [_change(c) for c in accepted]}
    linked = sorted({(r.get("linking_constants") or {}).get("method") or "none" for r in runs.values()})
    return {"kind": "linked" if linked != ["none"] else "unlinked",
            "meaning": "no bank has been adopted: these are the scope's current item parameters, each on the scale "
                       "of the run that wrote it, linked onto the scope's anchors (its constants under runs), or, "
                       "for a run without anchors, the scale of its own population (mean 0, SD 1)",
            "linking_methods": linked}


def _change(change) -> dict | None:
    if change is None:
        return None
    kind, run_id, by, at = change
    return {"run_id": run_id, "by": by, "at": at.isoformat(timespec="seconds")}


# --- the two formats -------------------------------------------------------------------------

def to_json(bank: ExportedBank) -> str:
    return json.dumps({**bank.meta, "items": bank.items}, indent=1) + "\n"


def to_csv(bank: ExportedBank) -> str:
    """The items as CSV under ``#`` lines of metadata, one ``# key: JSON value`` each."""
    out = io.StringIO()
    for key, value in bank.meta.items():
        out.write(f"# {key}: {json.dumps(value)}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for item in bank.items:
        writer.writerow(["" if item[c] is None else item[c] for c in COLUMNS])
    return out.getvalue()


def read_json(text: str) -> ExportedBank:
    data = json.loads(text)
    items = data.pop("items")
    return ExportedBank(data, items)


#: How the CSV's cells read back.
_NUMBERS = ("a", "b", "c", "a_se", "b_se", "c_se")


def read_csv(text: str) -> ExportedBank:
    """An export written by ``to_csv``, read back (the metadata from its ``#`` lines)."""
    lines = text.splitlines()
    meta = {}
    for line in lines:
        if not line.startswith("#"):
            break
        key, _, value = line[1:].strip().partition(": ")
        meta[key] = json.loads(value)
    items = []
    for row in csv.DictReader(line for line in lines if not line.startswith("#")):
        item = {c: (row[c] if row[c] != "" else None) for c in COLUMNS}
        for c in _NUMBERS:
            item[c] = None if item[c] is None else float(item[c])
        item["item_id"] = int(item["item_id"])
        item["n_responses"] = None if item["n_responses"] is None else int(item["n_responses"])
        items.append(item)
    return ExportedBank(meta, items)


FORMATS = {"csv": to_csv, "json": to_json}


def command(scope: Scope, fmt: str = "json") -> str:
    """The command line that exports ``scope``'s bank (the completed event names it)."""
    return export_command(scope.name or None, fmt)
