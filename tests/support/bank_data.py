"""Weeks of answers for a scope with an item bank: a base week that defines the scale, then weekly windows.

The items' truth (``truth``) has ``N_OPERATIONAL`` items answered from the
base week on, and ``N_NEW`` that only appear in later weeks (pretest items
for the bank); ``drifted`` moves the difficulty of item ``DRIFTING`` by one
logit. ``adopt_base_week`` calibrates the base week and adopts it as the
bank, the way an operator starts one.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from consumer import bank_admin
from consumer.db import platform
from consumer.irt.model import ItemParameters
from consumer.irt.simulate import simulate
from consumer.run import CalibrationRequest, calibrate
from consumer.scope import WHOLE_BANK
from consumer.settings import Settings

from .platform_data import AS_OF, question_ids, student_ids

SETTINGS = Settings.load({})
N_OPERATIONAL, N_NEW = 80, 12
DRIFTING = 7  # the position of an operational item whose difficulty rises by 1.0 after the base week


def truth(seed: int = 3) -> ItemParameters:
    rng = np.random.default_rng(seed)
    n = N_OPERATIONAL + N_NEW
    return ItemParameters(rng.lognormal(0.0, 0.25, n), rng.normal(0.0, 1.0, n), np.zeros(n))


def drifted(params: ItemParameters) -> ItemParameters:
    b = params.b.copy()
    b[DRIFTING] += 1.0
    return ItemParameters(params.a, b, params.c)


def put_week(conn, week: int, params: ItemParameters, mean: float, sd: float, *, n_items: int,
             students: int = 3000, answers: int = 30, seed: int = 0) -> None:
    """A week of answers: ``students`` new students, theta ~ N(mean, sd^2) on the base scale, on the first
    ``n_items`` items; week 0 ends 21 days before AS_OF, each later week 7 days after the one before."""
    rng = np.random.default_rng(100 + week + seed)
    theta = rng.normal(mean, sd, students)
    data = simulate(students, n_items, answers, seed=200 + week + seed, params=params.take(np.arange(n_items)),
                    theta=theta)
    r = data.responses
    ends = AS_OF - timedelta(days=21 - 7 * week)
    stamps = platform.as_datetime64(ends - timedelta(days=6)) + (np.arange(r.n_obs) % 86400).astype("timedelta64[s]")
    ids = np.array([f"w{week}-{s}" for s in student_ids(students)])
    platform.insert_attempts(conn, ids[r.person_index()], question_ids(n_items)[r.item], r.correct.astype(bool),
                             stamps)


def week_request(week: int, **kw) -> CalibrationRequest:
    """The weekly request of ``week``: a seven-day window ending where ``put_week`` put that week's answers."""
    return CalibrationRequest(request_id=f"week-{week}", requested_by="tests",
                              as_of=AS_OF - timedelta(days=21 - 7 * week), overrides={"lookback_days": 7}, **kw)


def adopt_base_week(engine, by: str = "tester"):
    """The platform's tables, the base week calibrated (it defines the scale) and adopted as the bank.

    Returns the base run's summary and the truth's items."""
    params = truth()
    with engine.begin() as conn:
        platform.create_platform_tables(conn)
        platform.insert_questions(conn, question_ids(N_OPERATIONAL + N_NEW),
                                  [{"tags": []} for _ in range(N_OPERATIONAL + N_NEW)])
        put_week(conn, 0, params, 0.0, 1.0, n_items=N_OPERATIONAL, students=5000)
    base = calibrate(engine, SETTINGS, week_request(0))
    assert base.status == "succeeded", base.error
    bank_admin.adopt(engine, WHOLE_BANK, by)
    return base, params
