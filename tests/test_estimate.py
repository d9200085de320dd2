"""Item calibration by EM, held against R mirt and against known truth."""

import numpy as np
import pytest

from consumer.irt.estimate import estimate_items
from consumer.irt.model import model_name
from consumer.irt.responses import Responses
from consumer.irt.simulate import simulate

from . import lsat7


def dense_to_responses(matrix: np.ndarray) -> Responses:
    persons, items = np.nonzero(matrix >= 0)
    return Responses.from_triplets(persons, items, matrix[persons, items], *matrix.shape)


def rmse(x, y):
    return float(np.sqrt(np.mean((np.asarray(x) - np.asarray(y)) ** 2)))


def test_lsat7_2pl_matches_r_mirt():
    matrix = lsat7.response_matrix()
    assert matrix.shape == (1000, 5)

    fit = estimate_items(dense_to_responses(matrix), "2PL")

    assert fit.converged
    np.testing.assert_allclose(fit.params.a, lsat7.MIRT_2PL_A, atol=2e-3)
    np.testing.assert_allclose(fit.params.b, lsat7.MIRT_2PL_B, atol=2e-3)
    assert fit.loglik == pytest.approx(lsat7.MIRT_2PL_LOGLIK, abs=5e-3)


def test_1pl_shares_one_slope_and_fits_worse_than_2pl_on_lsat7():
    responses = dense_to_responses(lsat7.response_matrix())
    one = estimate_items(responses, "1PL")
    two = estimate_items(responses, "2PL")
    assert one.converged
    assert np.ptp(one.params.a) == 0
    # The 1PL is the 2PL with equal slopes: its likelihood cannot be higher.
    assert one.loglik < two.loglik
    # Item difficulty order follows the proportion correct.
    p_correct = lsat7.response_matrix().mean(axis=0)
    assert list(np.argsort(one.params.b)) == list(np.argsort(-p_correct))


def test_recovers_known_2pl_parameters_from_sparse_data():
    truth = simulate(6000, 200, 40, seed=11)
    fit = estimate_items(truth.responses, "2PL")
    assert fit.converged
    # ~1,200 responses per item: sampling error of about 0.08 in a and b.
    assert rmse(fit.params.a, truth.params.a) < 0.12
    assert rmse(fit.params.b, truth.params.b) < 0.12
    assert np.corrcoef(fit.params.b, truth.params.b)[0, 1] > 0.98


def test_recovers_known_1pl_parameters():
    rng = np.random.default_rng(2)
    from consumer.irt.model import ItemParameters
    params = ItemParameters(np.full(150, 1.4), rng.normal(0, 1, 150), np.zeros(150))
    truth = simulate(5000, 150, 30, seed=12, params=params)
    fit = estimate_items(truth.responses, "1PL")
    assert fit.params.a[0] == pytest.approx(1.4, abs=0.05)
    assert rmse(fit.params.b, params.b) < 0.1


def test_items_without_information_are_reported_not_estimated():
    truth = simulate(3000, 50, 20, seed=4)
    r = truth.responses
    correct = r.correct.copy()
    correct[r.item == 3] = 1  # everyone right
    correct[r.item == 7] = 0  # everyone wrong
    keep_obs = ~((r.item == 9) & (r.person_index() >= 10))  # item 9: only a handful of answers
    person = r.person_index()[keep_obs]
    sparse = Responses.from_triplets(person, r.item[keep_obs], correct[keep_obs], r.n_persons, r.n_items)

    fit = estimate_items(sparse, "2PL", min_responses=20)

    assert set(fit.excluded) == {3, 7, 9}
    assert "correct" in fit.excluded[3] and "wrong" in fit.excluded[7]
    assert "responses (minimum 20)" in fit.excluded[9]
    assert np.isnan(fit.params.a[[3, 7, 9]]).all()
    assert np.isfinite(np.delete(fit.params.a, [3, 7, 9])).all()


def test_iteration_cap_is_reported_as_not_converged():
    truth = simulate(2000, 100, 30, seed=5)
    seen = []
    fit = estimate_items(truth.responses, max_iterations=3, progress=lambda i, ll, ch: seen.append((i, ll)))
    assert not fit.converged and fit.iterations == 3
    assert [i for i, _ in seen] == [1, 2, 3]
    # EM never lowers the likelihood.
    assert seen[0][1] < seen[1][1] < seen[2][1]


def test_model_names():
    assert model_name("rasch") == "1PL"
    assert model_name(" 2pl ") == "2PL"
    with pytest.raises(ValueError, match="unknown IRT model '4PL'"):
        model_name("4PL")
