"""Platform rows for tests: simulated answers written to ``attempt`` and ``question``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from consumer.db import platform
from consumer.irt.simulate import SimulatedData, simulate

AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
FIRST_QUESTION_ID = 5000


def question_ids(n_items: int) -> np.ndarray:
    return FIRST_QUESTION_ID + np.arange(n_items)


def student_ids(n_persons: int) -> np.ndarray:
    return np.array([f"u{i:05d}" for i in range(n_persons)])


def load_simulation(conn, data: SimulatedData, *, anchors=(), old_scale=(1.0, 0.0), days_before=3,
                    student_type="text") -> None:
    """Create the platform tables and put the simulated answers in, ``days_before`` AS_OF.

    ``anchors`` are item positions tagged as anchors whose reference
    parameters are the true ones on ``old_scale``.
    """
    platform.create_platform_tables(conn, student_type)
    on_old = data.params.on_scale(*old_scale)
    metas = [{"tags": []} for _ in range(len(data.params))]
    for j in anchors:
        metas[j] = {"tags": ["anchor"], "irt": {"a": float(on_old.a[j]), "b": float(on_old.b[j]), "c": 0.0,
                                                "model": "2PL", "run_id": "reference"}}
    platform.insert_questions(conn, question_ids(len(data.params)), metas)
    r = data.responses
    when = platform.as_datetime64(AS_OF - timedelta(days=days_before))
    students = (np.arange(r.n_persons) + 1 if student_type == "bigint" else student_ids(r.n_persons))
    stamps = when + np.arange(r.n_obs).astype("timedelta64[s]") % np.timedelta64(86400, "s")
    platform.insert_attempts(conn, students[r.person_index()], question_ids(r.n_items)[r.item],
                             r.correct.astype(bool), stamps)


#: Scopes of a multi-bank platform for tests: each its own bank, anchored on its own old scale.
SCOPE_SCALES = {"math": (1.2, 0.3), "english": (0.8, -0.5), "physics": (1.0, 0.6),
                "history": (1.4, -0.2), "biology": (0.9, 0.1), "art": (1.1, -0.4)}


def load_scoped_simulation(conn, banks: dict[str, SimulatedData], *, key: str = "subject", anchor_every: int = 5,
                           days_before: int = 1) -> dict[str, np.ndarray]:
    """Create the platform tables and put in one bank per scope; returns each scope's question ids.

    The same students (``u00000`` ...) answer every bank, so each has an
    ability per scope. Scope ``s``'s questions carry ``meta[key] = s``; every
    ``anchor_every``-th is an anchor whose reference parameters are the true
    ones on ``SCOPE_SCALES[s]``.
    """
    platform.create_platform_tables(conn)
    ids = {}
    start = FIRST_QUESTION_ID
    for n, (scope, data) in enumerate(banks.items()):
        on_old = data.params.on_scale(*SCOPE_SCALES[scope])
        ids[scope] = start + np.arange(len(data.params))
        start += len(data.params) + 1000
        metas = [{"tags": [], key: scope} for _ in range(len(data.params))]
        for j in range(0, len(data.params), anchor_every):
            metas[j] = {"tags": ["anchor"], key: scope,
                        "irt": {"a": float(on_old.a[j]), "b": float(on_old.b[j]), "c": 0.0, "model": "2PL",
                                "run_id": f"reference-{scope}"}}
        platform.insert_questions(conn, ids[scope], metas)
        r = data.responses
        when = platform.as_datetime64(AS_OF - timedelta(days=days_before))
        stamps = when + (np.arange(r.n_obs) + n).astype("timedelta64[s]") % np.timedelta64(86400, "s")
        platform.insert_attempts(conn, student_ids(r.n_persons)[r.person_index()], ids[scope][r.item],
                                 r.correct.astype(bool), stamps)
    return ids


def simulated_banks(names, n_persons=1200, n_items=60, per_person=20) -> dict[str, SimulatedData]:
    """Simulated answers for each named bank (a scope), each bank with a seed of its own."""
    return {name: simulate(n_persons, n_items, per_person, seed=11 + n) for n, name in enumerate(names)}


def small_platform(engine, n_persons=1200, n_items=60, per_person=20, seed=5):
    """A platform of simulated answers from yesterday, every fifth item an anchor on the scale (1.2, 0.3)."""
    with engine.begin() as conn:
        load_simulation(conn, simulate(n_persons, n_items, per_person, seed=seed),
                        anchors=range(0, n_items, 5), old_scale=(1.2, 0.3), days_before=1)


def load_timed_simulation(conn, data: SimulatedData, times_ms: np.ndarray, *, days_before=1) -> None:
    """Like ``load_simulation`` (no anchors), each answer with its response time in ``attempt.time_spent_ms``."""
    platform.create_platform_tables(conn)
    r = data.responses
    platform.insert_questions(conn, question_ids(r.n_items), [{"tags": []}] * r.n_items)
    when = platform.as_datetime64(AS_OF - timedelta(days=days_before))
    stamps = np.datetime_as_string(when + np.arange(r.n_obs).astype("timedelta64[s]") % np.timedelta64(86400, "s"),
                                   unit="us")
    rows = zip(student_ids(r.n_persons)[r.person_index()].tolist(), question_ids(r.n_items)[r.item].tolist(),
               np.where(r.correct, "t", "f").tolist(), (s + "+00" for s in stamps),
               np.rint(times_ms).astype(np.int64).tolist())
    platform.copy_rows(conn, "attempt", ("student_id", "question_id", "correct", "completed_at", "time_spent_ms"),
                       rows)
