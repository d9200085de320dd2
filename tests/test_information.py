"""Standard errors of item parameters, held against an exact numerical Hessian and against truth."""

import numpy as np
import pytest

from consumer.irt import information
from consumer.irt.estimate import estimate_items
from consumer.irt.quadrature import Quadrature
from consumer.irt.simulate import simulate

from . import lsat7
from .test_estimate import dense_to_responses


def marginal_loglik(matrix: np.ndarray, a: np.ndarray, d: np.ndarray, quadrature: Quadrature) -> float:
    z = a[None, :] * quadrature.nodes[:, None] + d[None, :]
    per_node = (matrix @ -np.logaddexp(0, -z).T + (1 - matrix) @ -np.logaddexp(0, z).T
                + quadrature.log_weights[None, :])
    top = per_node.max(axis=1, keepdims=True)
    return float((top[:, 0] + np.log(np.exp(per_node - top).sum(axis=1))).sum())


def numerical_covariance(matrix, a, d, h=1e-4):
    """Inverse of minus the finite-difference Hessian of the marginal log-likelihood in (a1, d1, a2, ...)."""
    quadrature = Quadrature.normal()
    x0 = np.ravel(np.column_stack([a, d]))
    k = x0.size
    f = lambda x: marginal_loglik(matrix, x[0::2], x[1::2], quadrature)
    hessian = np.zeros((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            hessian[i, j] = hessian[j, i] = (f(x0 + ei + ej) - f(x0 + ei - ej) - f(x0 - ei + ej)
                                             + f(x0 - ei - ej)) / (4 * h * h)
    return np.linalg.inv(-hessian)


def test_lsat7_standard_errors_equal_the_exact_observed_information():
    matrix = lsat7.response_matrix().astype(float)
    responses = dense_to_responses(lsat7.response_matrix())
    fit = estimate_items(responses, "2PL", tolerance=1e-8)
    errors = information.standard_errors(responses, fit.params, "2PL")
    cov = numerical_covariance(matrix, fit.params.a, fit.params.d)
    assert errors.method.endswith("full")
    np.testing.assert_allclose(errors.a, np.sqrt(np.diag(cov)[0::2]), rtol=2e-3)
    np.testing.assert_allclose(errors.d, np.sqrt(np.diag(cov)[1::2]), rtol=2e-3)
    # Delta method for b = -d / a, with the a-d covariance.
    a, d = fit.params.a, fit.params.d
    var_b = [np.array([d[j] / a[j] ** 2, -1 / a[j]]) @ cov[2 * j:2 * j + 2, 2 * j:2 * j + 2]
             @ np.array([d[j] / a[j] ** 2, -1 / a[j]]) for j in range(5)]
    np.testing.assert_allclose(errors.b, np.sqrt(var_b), rtol=2e-3)


def test_item_blocks_approach_the_full_information_on_sparse_data(monkeypatch):
    truth = simulate(3000, 120, 20, seed=3)
    fit = estimate_items(truth.responses)
    full = information.standard_errors(truth.responses, fit.params, "2PL")
    monkeypatch.setattr(information, "FULL_MAX_PARAMETERS", 0)
    blocks = information.standard_errors(truth.responses, fit.params, "2PL")
    assert full.method.endswith("full") and blocks.method.endswith("item blocks")
    assert np.median(blocks.b / full.b) == pytest.approx(1.0, abs=0.02)
    assert np.all(np.abs(blocks.a / full.a - 1) < 0.06)


def test_standard_errors_describe_the_actual_estimation_error():
    truth = simulate(4000, 150, 25, seed=14)
    fit = estimate_items(truth.responses)
    errors = information.standard_errors(truth.responses, fit.params, "2PL")
    # If the standard errors are right, the errors divided by them are about N(0, 1).
    for estimate, true, se in ((fit.params.a, truth.params.a, errors.a), (fit.params.b, truth.params.b, errors.b)):
        z = (estimate - true) / se
        assert 0.8 < np.std(z) < 1.2
        assert np.mean(np.abs(z) < 1.96) == pytest.approx(0.95, abs=0.05)


def test_1pl_shares_one_slope_standard_error():
    truth = simulate(2000, 40, 15, seed=2)
    fit = estimate_items(truth.responses, "1PL")
    errors = information.standard_errors(truth.responses, fit.params, "1PL")
    assert np.ptp(errors.a) == 0 and 0 < errors.a[0] < 0.1
    assert np.all(errors.b > 0)
