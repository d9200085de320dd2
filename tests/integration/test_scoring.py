"""A run scoring by the method MIRT_SCORING names, against a real PostgreSQL: every ability row records its method,
the scores are the Python mirt port's on the parameters the run wrote, infinite ML estimates carry no standard
error, and the population's plausible values are stored per run."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.irt.model import ItemParameters
from consumer.irt.simulate import simulate
from consumer.run import calibrate
from consumer.settings import Settings

from tests.support.database import rows
from tests.support.platform_data import FIRST_QUESTION_ID, load_simulation, student_ids
from tests.support.runs import REQUEST

port_models = pytest.importorskip("mirt.models.dichotomous")
from mirt.scoring import fscores  # noqa: E402


def written(engine, simulated):
    """The run's items as it wrote them (by position) and its abilities by student position."""
    items = {r[0] - FIRST_QUESTION_ID: r[1] for r in rows(engine, "SELECT item_id, params FROM mirt_item_params")}
    n_items = len(simulated.params)
    params = ItemParameters(np.array([items[j]["a"] for j in range(n_items)]),
                            np.array([items[j]["b"] for j in range(n_items)]), np.zeros(n_items))
    position = {s: i for i, s in enumerate(student_ids(simulated.responses.n_persons))}
    abilities = {position[r[0]]: r[1:]
                 for r in rows(engine, "SELECT user_id, theta, theta_se, method FROM mirt_ability")}
    return params, abilities


def dense(responses) -> np.ndarray:
    x = np.full((responses.n_persons, responses.n_items), -1)
    x[responses.person_index(), responses.item] = responses.correct
    return x


def test_a_wle_run_writes_warms_estimates_with_their_method(engine):
    simulated = simulate(1500, 40, 15, seed=3)
    with engine.begin() as conn:
        load_simulation(conn, simulated)

    summary = calibrate(engine, Settings.load({"MIRT_SCORING": "WLE"}), REQUEST)

    assert summary.status == "succeeded", summary.error
    assert summary.fit["scoring"]["method"] == "WLE"
    params, abilities = written(engine, simulated)
    assert len(abilities) == 1500 and {m for _, _, m in abilities.values()} == {"WLE"}
    assert {r[0] for r in rows(engine, "SELECT DISTINCT method FROM mirt_ability_history")} == {"WLE"}
    port = port_models.TwoParameterLogistic(n_items=40)
    port.set_parameters(discrimination=params.a, difficulty=params.b)
    port._is_fitted = True
    reference = fscores(port, dense(simulated.responses), method="WLE")
    theta = np.array([abilities[i][0] for i in range(1500)])
    se = np.array([abilities[i][1] for i in range(1500)])
    # The written parameters are rounded to float8 from the same numbers the run scored with: 1e-4 is generous.
    np.testing.assert_allclose(theta, reference.theta.ravel(), atol=1e-4)
    np.testing.assert_allclose(se, reference.standard_error.ravel(), atol=1e-4)

    # Plausible values: five draws of the population's mean and SD, per run; unlinked, the population is the
    # calibration's own N(0, 1).
    draws = rows(engine, "SELECT draw, n_students, mean, sd, run_id::text FROM mirt_plausible_values ORDER BY draw")
    assert [d[0] for d in draws] == [1, 2, 3, 4, 5] and {d[1] for d in draws} == {1500}
    assert {d[4] for d in draws} == {summary.run_id}
    pooled = summary.fit["plausible_values"]
    assert pooled["mean"] == pytest.approx(np.mean([d[2] for d in draws])) and pooled["draws"] == 5
    assert abs(pooled["mean"]) < 0.1 and abs(pooled["sd"] - 1.0) < 0.1
    assert 0 < pooled["mean_between"] < pooled["mean_se"]
    (stored,) = rows(engine, "SELECT fit_stats->'plausible_values'->>'sd' FROM mirt_fit_meta")
    assert float(stored[0]) == pytest.approx(pooled["sd"])


def test_an_ml_run_writes_infinite_estimates_as_the_ranges_end_with_no_standard_error(engine):
    simulated = simulate(800, 30, 4, seed=5)  # four answers each: many all right or all wrong
    with engine.begin() as conn:
        load_simulation(conn, simulated)

    summary = calibrate(engine, Settings.load({"MIRT_SCORING": "ML", "MIRT_PLAUSIBLE_VALUES": "0"}), REQUEST)

    assert summary.status == "succeeded", summary.error
    _, abilities = written(engine, simulated)
    r = simulated.responses
    right = np.add.reduceat(r.correct.astype(int), r.person_ptr[:-1])
    answered = np.diff(r.person_ptr)
    for i, (theta, se, method) in abilities.items():
        assert method == "ML"
        if right[i] == answered[i]:
            assert se is None and theta == pytest.approx(6.0), f"student {i} got every answer right"
        elif right[i] == 0:
            assert se is None and theta == pytest.approx(-6.0), f"student {i} got every answer wrong"
        else:
            assert se is not None and se > 0 and -6 < theta < 6
    extremes = int(np.sum(right == answered) + np.sum(right == 0))
    assert extremes > 50 and sum(summary.fit["scoring"]["at_bound"].values()) == extremes
    assert not rows(engine, "SELECT 1 FROM mirt_plausible_values") and "plausible_values" not in summary.fit


def test_bank_mode_scores_from_the_bank_by_the_method_and_draws_plausible_values_under_the_windows_population(
        engine):
    """A week of students from N(0.5, 1.2^2) on the bank's scale: MAP scores with the bank's reference N(0, 1) prior
    are pulled toward 0 (by design: a student's score does not move with the cohort); the plausible values, drawn
    under the population the fixed-parameter calibration estimated, recover the week's mean and SD."""
    from tests.support.bank_data import N_OPERATIONAL, adopt_base_week, put_week, week_request

    _, params = adopt_base_week(engine)
    with engine.begin() as conn:
        put_week(conn, 1, params, 0.5, 1.2, n_items=N_OPERATIONAL)

    summary = calibrate(engine, Settings.load({"MIRT_SCORING": "MAP", "MIRT_PLAUSIBLE_VALUES": "10"}),
                        week_request(1))

    assert summary.status == "succeeded", summary.error
    assert summary.fit["bank"]["mode"] == "weekly" and summary.fit["scoring"]["method"] == "MAP"
    week = rows(engine, "SELECT theta, method FROM mirt_ability WHERE user_id LIKE 'w1-%'")
    assert len(week) == 3000 and {m for _, m in week} == {"MAP"}
    pooled = summary.fit["plausible_values"]
    assert pooled["draws"] == 10 and pooled["n"] == 3000
    assert pooled["mean"] == pytest.approx(0.5, abs=3 * pooled["mean_se"] + 0.05)
    assert pooled["sd"] == pytest.approx(1.2, abs=3 * pooled["sd_se"] + 0.05)
    population = summary.fit["bank"]["population"]
    assert pooled["mean"] == pytest.approx(population["mean"], abs=0.05)
    theta = np.array([t for t, _ in week])
    assert theta.std() < pooled["sd"] - 0.1, "MAP under the reference N(0, 1) shrinks the week's spread"
