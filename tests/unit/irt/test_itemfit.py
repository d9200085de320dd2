"""RMSD item fit: misfitting items stand out, fitting ones do not, and runs flag them."""

import numpy as np
import sqlalchemy as sa

from consumer.irt.estimate import estimate_items
from consumer.irt.itemfit import rmsd
from consumer.irt.responses import Responses
from consumer.irt.simulate import simulate
from consumer.run import calibrate
from consumer.settings import Settings

from tests.support.platform_data import FIRST_QUESTION_ID, load_simulation
from tests.support.runs import REQUEST


def with_a_misfitting_item(seed=21, item=7):
    """Simulated 2PL data in which ``item`` rises with ability up to the middle, then falls back: the
    2PL gives it a positive slope, and the curve does not follow it."""
    truth = simulate(5000, 60, 30, seed=seed)
    r = truth.responses
    theta = truth.theta[r.person_index()]
    correct = r.correct.copy()
    mask = r.item == item
    rng = np.random.default_rng(seed)
    correct[mask] = rng.random(mask.sum()) < np.where(theta[mask] < -0.6, 0.1, np.where(theta[mask] < 1.0, 0.95, 0.3))
    return truth, Responses(r.person_ptr, r.item, correct, r.n_items)


def test_a_curve_no_logistic_follows_has_a_large_rmsd_and_the_rest_small():
    _, responses = with_a_misfitting_item()
    fit = estimate_items(responses)
    values = rmsd(responses, fit.params)
    assert values[7] > 0.15
    assert np.all(np.delete(values, 7) < 0.05)


def test_runs_flag_misfitting_items_and_store_every_items_rmsd(engine):
    truth, responses = with_a_misfitting_item()
    with engine.begin() as conn:
        load_simulation(conn, type(truth)(responses, truth.params, truth.theta))
    summary = calibrate(engine, Settings.load({}), REQUEST)
    assert summary.status == "succeeded"
    assert list(summary.counts["misfitting_items"]) == [str(FIRST_QUESTION_ID + 7)]
    assert any("items misfit" in w for w in summary.warnings)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT item_id, (params->>'rmsd')::float8 FROM mirt_item_params")).all())
    assert stored[FIRST_QUESTION_ID + 7] > 0.12 and len(stored) == 60
