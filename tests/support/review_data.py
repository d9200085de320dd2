"""A run's stored results made up in memory, as the review page reads them: for the browser tests and the benchmark.

``synthetic_review`` builds a ``Review`` with known flags (held back,
misfitting with node proportions, anchors kept and one dropped, items
that moved since the previous run); ``store`` writes it into the service's
tables as a run would, so that ``load_review`` reads it back.
"""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import sqlalchemy as sa

from consumer.review.load import AbilitySummary, ItemResults, Review, RunRecord
from consumer.settings import Settings

FIRST_ID = 10_000
#: Positions (in the bank) of the items the synthetic run flags.
HELD_BACK = (5, 6)
MISFITTING = (7, 8, 9)
MOVED = (11,)
ANCHOR_STEP = 20  # every 20th item is an anchor; the first one drifted and was dropped


def _items(rng, n_items: int, model: str, shift: float = 0.0) -> ItemResults:
    ids = FIRST_ID + np.arange(n_items)
    a = np.full(n_items, 1.1) if model == "1PL" else rng.lognormal(0.0, 0.3, n_items)
    b = rng.normal(0.0, 1.0, n_items) + shift
    answers = rng.integers(150, 900, n_items).astype(float)
    values = {"a": a, "b": b, "c": np.zeros(n_items), "a_se": a / np.sqrt(answers) * 2.0,
              "b_se": 2.0 / np.sqrt(answers), "c_se": np.full(n_items, np.nan), "n_responses": answers,
              "rmsd": rng.uniform(0.005, 0.05, n_items)}
    values["rmsd"][list(MISFITTING)] = [0.21, 0.17, 0.14]
    keep = np.ones(n_items, bool)
    keep[list(HELD_BACK)] = False
    return ItemResults(ids[keep], {k: v[keep] for k, v in values.items()})


def synthetic_review(n_items: int = 300, n_students: int = 5000, seed: int = 1, model: str = "2PL") -> Review:
    rng = np.random.default_rng(seed)
    now = datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc)
    settings = Settings.load({}).with_overrides(model=model).public()
    previous_items = _items(np.random.default_rng(seed + 1), n_items, model)
    items = _items(np.random.default_rng(seed + 1), n_items, model)
    for position in MOVED:  # made much easier since last week
        k = int(np.searchsorted(items.question_ids, FIRST_ID + position))
        items.values["b"][k] -= 1.5
    items.values["rmsd"][:] = previous_items.values["rmsd"]
    theta = rng.normal(0.35, 1.1, n_students)
    theta_se = np.full(n_students, 0.35) + 0.05 * np.abs(theta)
    constants = {"method": "stocking-lord", "slope": 1.1, "intercept": 0.35, "n_anchors": 0,
                 "slope_se": 0.02, "intercept_se": 0.015}
    anchors = []
    position_of = {int(q): k for k, q in enumerate(items.question_ids)}
    for position in range(0, n_items, ANCHOR_STEP):
        q = FIRST_ID + position
        k = position_of[q]
        a, b = float(items.values["a"][k]), float(items.values["b"][k])
        dropped = position == 0
        reference = {"a": a * float(np.exp(rng.normal(0, 0.05))), "b": b + (1.2 if dropped else rng.normal(0, 0.05)),
                     "c": 0.0}
        anchors.append({"question_id": q, "reference": reference, "dropped": dropped,
                        "new": {"a": a * 1.1, "b": (b - 0.35) / 1.1, "c": 0.0}, "linked": {"a": a, "b": b}})
    constants["n_anchors"] = sum(not x["dropped"] for x in anchors)
    held_back = {str(FIRST_ID + j): "not identified: its slope runs to the upper bound (its answers split almost "
                                    "perfectly by ability)" for j in HELD_BACK}
    misfitting = {str(FIRST_ID + j): f"RMSD {r:.3f} above 0.12" for j, r in zip(MISFITTING, (0.21, 0.17, 0.14))}
    nodes = np.linspace(-6, 6, 61)
    curves = []
    for j, r in zip(MISFITTING, (0.21, 0.17, 0.14)):
        shown = np.abs(nodes) <= 3.2
        window_index = j  # every item of the bank was answered, so its index in the window is its position
        model_p = 1 / (1 + np.exp(-(nodes[shown] - 0.2)))
        curves.append({"item": window_index, "rmsd": r, "theta": nodes[shown].round(3).tolist(),
                       "answers": (600 * np.exp(-0.5 * nodes[shown] ** 2)).round(1).tolist(),
                       "observed": np.clip(model_p + r * np.sin(2 * nodes[shown]), 0, 1).round(4).tolist(),
                       "expected": model_p.round(4).tolist()})
    counts = {"observations": int(items.values["n_responses"].sum()), "attempts_in_window": 0, "users": n_students,
              "users_scored": n_students, "items": n_items, "items_estimated": len(items),
              "items_excluded": len(held_back), "items_held_back": len(held_back), "anchors_tagged": len(anchors),
              "anchors": constants["n_anchors"]}
    counts["attempts_in_window"] = counts["observations"] + 1234
    dropped_reason = ("difficulty drifted: b 1.000 -> 2.200, a 1.000 -> 1.000 on the old scale (robust z +9.1 on b, "
                      "+0.0 on log a; threshold 3)")
    spec = {"model": model, "settings": settings, "linking_constants": constants, "dry_run": False, "scope": None,
            "request": {"request_id": "weekly-2026-48", "requested_by": "cloud-scheduler", "overrides": {}},
            "window": {"since": (now - timedelta(days=60)).isoformat(), "until": now.isoformat(),
                       "first_at": (now - timedelta(days=59)).isoformat(), "last_at": now.isoformat()},
            "excluded_items": dict(held_back), "held_back_items": held_back, "misfitting_items": misfitting,
            "anchors_dropped": {str(FIRST_ID): dropped_reason}, "anchors_skipped": {}, "anchor_table": anchors}
    fit = {"loglik": -4_123_456.789, "log_posterior": -4_123_470.5, "iterations": 14, "converged": True,
           "max_change": 8.2e-05, "n_parameters": 2 * len(items), "aic": 8_250_000.12, "bic": 8_260_000.34,
           "standard_errors": "observed information (Louis), full",
           "item_priors": {"setting": "auto", "used": True, "why": "auto: the median item has 420 answers, fewer "
                                                                   "than 500"},
           "items_at_bounds": {str(FIRST_ID + 12): "a at its upper bound 10"}, "misfit_curves": curves}
    summary = {"counts": counts, "warnings": [f"anchor question {FIRST_ID} dropped from linking: {dropped_reason}"],
               "durations": {"load": 2.5, "anchors": 0.01, "fit": 14.2, "diagnostics": 9.1, "link": 0.2,
                             "score": 0.8, "write": 6.3, "total": 33.1},
               "rows_upserted": {"items": len(items), "abilities": n_students}, "linking_constants": constants}
    run = RunRecord(str(uuid.UUID(int=seed)), "succeeded", "weekly-2026-48", "", spec, fit, summary, None,
                    now, now + timedelta(seconds=33.1), now + timedelta(seconds=33))
    previous = RunRecord(str(uuid.UUID(int=seed + 1000)), "succeeded", "weekly-2026-47", "",
                         {**spec, "linking_constants": {**constants, "slope": 1.09}}, fit, summary, None,
                         now - timedelta(days=7), now - timedelta(days=7), now - timedelta(days=7))
    history = [AbilitySummary(str(uuid.UUID(int=seed + 2000 + k)), now - timedelta(days=7 * (3 - k)),
                              {**constants, "slope": 1.08 + 0.01 * k}, model, n_students, 0.3 + 0.02 * k, 1.1,
                              tuple(0.3 + 0.02 * k + 1.1 * z for z in (-1.645, -0.674, 0.0, 0.674, 1.645)))
               for k in range(4)]
    return Review(run, items, theta, theta_se, previous, previous_items, history)


def store(engine: sa.Engine, review: Review) -> None:
    """Write the previous run and the run into the service's tables (migrated), with their items and abilities."""
    import json
    rng = np.random.default_rng(0)
    with engine.begin() as conn:
        earlier_theta = review.theta + rng.normal(0, 0.05, review.theta.size)
        for run, items, theta in ((review.previous, review.previous_items, earlier_theta),
                                  (review.run, review.items, review.theta)):
            conn.execute(sa.text(
                "INSERT INTO mirt_fit_meta (run_id, request_id, status, model_spec, fit_stats, summary, started_at, "
                "finished_at, fitted_at) VALUES (CAST(:r AS uuid), :q, :s, CAST(:m AS jsonb), CAST(:f AS jsonb), "
                "CAST(:u AS jsonb), :started, :finished, :fitted)"),
                {"r": run.run_id, "q": run.request_id, "s": run.status, "m": json.dumps(run.model_spec),
                 "f": json.dumps(run.fit_stats), "u": json.dumps(run.summary), "started": run.started_at,
                 "finished": run.finished_at, "fitted": run.fitted_at})
            v = items.values
            params = io.StringIO()
            for k, q in enumerate(items.question_ids):
                row = {name: (None if not np.isfinite(v[name][k]) else float(v[name][k])) for name in v}
                params.write(f"{run.run_id}\t{q}\t{run.model_spec['model']}\t{json.dumps(row)}\t"
                             f"{run.fitted_at.isoformat()}\n")
            abilities = io.StringIO()
            for k, (t, se) in enumerate(zip(theta.tolist(), review.theta_se.tolist())):
                abilities.write(f"{run.run_id}\tu{k:07d}\t{t!r}\t{se!r}\t{run.fitted_at.isoformat()}\n")
            cursor = conn.connection.driver_connection.cursor()
            params.seek(0)
            abilities.seek(0)
            cursor.execute("COPY mirt_item_params_history (run_id, item_id, model, params, fitted_at) FROM STDIN",
                           stream=params)
            cursor.execute("COPY mirt_ability_history (run_id, user_id, theta, theta_se, fitted_at) FROM STDIN",
                           stream=abilities)
