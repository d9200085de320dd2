"""The fixed-parameter calibration (the bank mode's weekly run) against a direct maximisation of its likelihood."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from consumer.irt.fipc import fixed_parameter_calibration
from consumer.irt.model import ItemParameters
from consumer.irt.quadrature import Quadrature
from consumer.irt.responses import Responses
from consumer.irt.simulate import simulate

N_ITEMS, N_FIXED = 30, 20


def marginal_loglik(responses: Responses, a: np.ndarray, d: np.ndarray, mean: float, log_sd: float,
                    nodes: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The 2PL's marginal log-likelihood over a N(mean, sd^2) population weighted on ``nodes`` (as the fixed-
    parameter calibration weights them), and its gradients in (a, d) and in (mean, log sd), by Fisher's identity."""
    u = (nodes - mean) / np.exp(log_sd)
    log_weights = -0.5 * u**2 - np.log(np.exp(-0.5 * u**2).sum())
    weights = np.exp(log_weights)
    z = a[responses.item, None] * nodes[None, :] + d[responses.item, None]
    log_p = np.where(responses.correct[:, None] == 1, -np.logaddexp(0, -z), -np.logaddexp(0, z))
    per_person = np.add.reduceat(log_p, responses.person_ptr[:-1], axis=0) + log_weights
    top = per_person.max(axis=1, keepdims=True)
    posterior = np.exp(per_person - top)
    total = posterior.sum(axis=1, keepdims=True)
    posterior /= total
    residual = (responses.correct[:, None] - 1 / (1 + np.exp(-z))) * posterior[responses.person_index()]
    items = np.stack([np.bincount(responses.item, residual @ nodes, responses.n_items),
                      np.bincount(responses.item, residual.sum(axis=1), responses.n_items)])
    mass = posterior.sum(axis=0)
    sd = np.exp(log_sd)
    d_mean = mass @ (u / sd - weights @ (u / sd))
    d_log_sd = mass @ (u**2 - weights @ u**2)
    return float((top[:, 0] + np.log(total[:, 0])).sum()), items, np.array([d_mean, d_log_sd])


def direct_fixed_parameter_ml(responses, fixed: ItemParameters, quadrature: Quadrature):
    """The free items' (a, d) and the population's (mean, sd) maximising the likelihood, the fixed items held."""
    free = N_ITEMS - N_FIXED

    def minus(v):
        a = np.r_[fixed.a, v[:free]]
        d = np.r_[fixed.d, v[free:2 * free]]
        loglik, items, population = marginal_loglik(responses, a, d, v[-2], v[-1], quadrature.nodes)
        return -loglik, -np.r_[items[0, N_FIXED:], items[1, N_FIXED:], population]

    found = minimize(minus, np.r_[np.ones(free), np.zeros(free), 0.0, 0.0], jac=True, method="L-BFGS-B",
                     options={"gtol": 1e-7, "ftol": 1e-14, "maxiter": 2000})
    return found.x[:free], found.x[free:2 * free], found.x[-2], float(np.exp(found.x[-1]))


def test_the_fixed_parameter_calibration_lands_on_the_direct_maximum_with_the_operational_items_held():
    rng = np.random.default_rng(5)
    truth = ItemParameters(rng.lognormal(0, 0.25, N_ITEMS), rng.normal(0, 1, N_ITEMS), np.zeros(N_ITEMS))
    # The window's population sits at N(0.4, 1.2^2) on the bank's scale, where the fixed items' values hold.
    data = simulate(2000, N_ITEMS, 10, seed=9, params=truth, theta=rng.normal(0.4, 1.2, 2000))
    quadrature = Quadrature.normal()
    positions = np.arange(N_FIXED)
    fixed = truth.take(positions)
    start = ItemParameters(np.r_[fixed.a, np.ones(N_ITEMS - N_FIXED)], np.r_[fixed.b, np.zeros(N_ITEMS - N_FIXED)],
                           np.zeros(N_ITEMS))

    result = fixed_parameter_calibration(data.responses, start, positions, fixed, "2PL", quadrature=quadrature,
                                         tolerance=1e-7, max_iterations=5000)
    a, d, mean, sd = direct_fixed_parameter_ml(data.responses, fixed, quadrature)

    assert result.converged
    np.testing.assert_allclose(result.params.a[:N_FIXED], fixed.a)  # held, exactly
    np.testing.assert_allclose(result.params.a[N_FIXED:], a, atol=2e-3)
    np.testing.assert_allclose(result.params.d[N_FIXED:], d, atol=2e-3)
    assert result.mean == pytest.approx(mean, abs=1e-3)
    assert result.sd == pytest.approx(sd, abs=1e-3)
    # And both near the truth this window was drawn from.
    assert result.mean == pytest.approx(0.4, abs=0.08) and result.sd == pytest.approx(1.2, abs=0.08)
