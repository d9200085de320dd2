"""Standard errors of item parameters, held against a numerical Hessian of the log-likelihood and against truth.

The reference is written here with numpy, from first principles: the
marginal log-likelihood (or log posterior) of a dense response matrix
(-1 for not answered) on the quadrature grid, its gradient by Fisher's
identity (the posterior mean of the complete-data score, itself checked
against differences of the log-likelihood), and the Hessian as central
differences of that gradient. The approximation used beyond the memory
budget is held against the exact whole matrix, forced by ``method``.
"""

import warnings

import numpy as np
import pytest
from scipy.special import expit

from consumer.irt import information
from consumer.irt.estimate import estimate_items
from consumer.irt.priors import Priors
from consumer.irt.fipc import fixed_parameter_calibration
from consumer.irt.model import ItemParameters
from consumer.irt.quadrature import Quadrature
from consumer.irt.responses import Responses
from consumer.irt.simulate import simulate

from tests.support import lsat7
from tests.support.responses import dense_to_responses


def responses_to_dense(responses: Responses) -> np.ndarray:
    matrix = np.full((responses.n_persons, responses.n_items), -1, dtype=np.int8)
    matrix[responses.person_index(), responses.item] = responses.correct
    return matrix


class Model:
    """The log posterior of a dense response matrix as a function of a parameter vector, and its gradient.

    Parameters, in order: per free item a, d (and c for the 3PL) -- for the
    1PL only d, with one common slope after them -- then the population's
    mean and SD when ``population`` is given. Items not free keep ``params``.
    """

    def __init__(self, matrix, params, model, *, free=None, priors=None, population=None, quadrature=None):
        self.y = (matrix == 1).astype(float)
        self.n = (matrix == 0).astype(float)
        self.a0, self.d0, self.c0 = params.a.copy(), params.d.copy(), params.c.copy()
        self.model = model
        self.free = np.ones(params.a.size, bool) if free is None else free
        self.priors = priors
        self.population = population
        self.quadrature = quadrature or Quadrature.normal()

    def start(self) -> np.ndarray:
        f = self.free
        if self.model == "1PL":
            x = [self.d0[f], [self.a0[f][0]]]
        elif self.model == "3PL":
            x = [np.column_stack([self.a0[f], self.d0[f], self.c0[f]]).ravel()]
        else:
            x = [np.column_stack([self.a0[f], self.d0[f]]).ravel()]
        if self.population is not None:
            x.append(list(self.population))
        return np.concatenate(x)

    def unpack(self, x):
        a, d, c = self.a0.copy(), self.d0.copy(), self.c0.copy()
        f, m = self.free, int(self.free.sum())
        if self.model == "1PL":
            d[f], a[f] = x[:m], x[m]
            used = m + 1
        else:
            k = 3 if self.model == "3PL" else 2
            block = x[:m * k].reshape(m, k)
            a[f], d[f] = block[:, 0], block[:, 1]
            if k == 3:
                c[f] = block[:, 2]
            used = m * k
        mean, sd = x[used:used + 2] if self.population is not None else (0.0, 1.0)
        return a, d, c, mean, sd

    def log_weights(self, mean, sd):
        u = -0.5 * ((self.quadrature.nodes - mean) / sd) ** 2
        return u - np.log(np.exp(u).sum())

    def log_prior(self, a, d, c):
        f, p, total = self.free, self.priors, 0.0
        if p is None or self.model == "1PL":
            return total
        if self.model == "3PL":
            total += ((p.c_alpha - 1) * np.log(c[f]) + (p.c_beta - 1) * np.log(1 - c[f])).sum()
        if p.on_a_b:
            log_a = np.log(a[f])
            total += (-log_a - (log_a - p.a_meanlog) ** 2 / (2 * p.a_sdlog**2)).sum()
            total += (-((-d[f] / a[f]) - p.b_mean) ** 2 / (2 * p.b_sd**2)).sum()
        return total

    def _posterior(self, x):
        a, d, c, mean, sd = self.unpack(x)
        t = self.quadrature.nodes
        sig = expit(a[None, :] * t[:, None] + d[None, :])  # nodes x items
        p = c + (1 - c) * sig
        per_node = self.y @ np.log(p).T + self.n @ np.log1p(-p).T + self.log_weights(mean, sd)[None, :]
        top = per_node.max(axis=1, keepdims=True)
        post = np.exp(per_node - top)
        total = post.sum(axis=1, keepdims=True)
        return (top[:, 0] + np.log(total[:, 0])).sum(), post / total, (a, d, c, mean, sd, sig, p)

    def __call__(self, x) -> float:
        loglik, _, (a, d, c, *_rest) = self._posterior(x)
        return loglik + self.log_prior(a, d, c)

    def gradient(self, x) -> np.ndarray:
        """Fisher's identity: sum over persons of the posterior mean of the complete-data score, plus the prior's."""
        _, post, (a, d, c, mean, sd, sig, p) = self._posterior(x)
        t = self.quadrature.nodes[:, None]
        right, wrong = post.T @ self.y, post.T @ self.n  # nodes x items
        dlogp = right / p - wrong / (1 - p)  # d loglik / d P at each node
        slope = (1 - c) * sig * (1 - sig)
        g_a = (dlogp * slope * t).sum(axis=0)
        g_d = (dlogp * slope).sum(axis=0)
        g_c = (dlogp * (1 - sig)).sum(axis=0)
        pr, f = self.priors, self.free
        if pr is not None and self.model != "1PL":
            if self.model == "3PL":
                g_c += (pr.c_alpha - 1) / c - (pr.c_beta - 1) / (1 - c)
            if pr.on_a_b:
                b = -d / a
                g_a += -1 / a - (np.log(a) - pr.a_meanlog) / (pr.a_sdlog**2 * a)
                g_a += -(b - pr.b_mean) / pr.b_sd**2 * d / a**2
                g_d += -(b - pr.b_mean) / pr.b_sd**2 * (-1 / a)
        if self.model == "1PL":
            out = [g_d[f], [g_a[f].sum()]]
        elif self.model == "3PL":
            out = [np.column_stack([g_a[f], g_d[f], g_c[f]]).ravel()]
        else:
            out = [np.column_stack([g_a[f], g_d[f]]).ravel()]
        if self.population is not None:
            z = self.quadrature.nodes - mean
            w = np.exp(self.log_weights(mean, sd))
            scores = np.column_stack([z / sd**2, z**2 / sd**3])
            scores -= w @ scores
            out.append(post.sum(axis=0) @ scores)
        return np.concatenate(out)

    def covariance(self, x, h=1e-5) -> np.ndarray:
        """Inverse of minus the Hessian, the Hessian by central differences of the gradient."""
        k = x.size
        hessian = np.empty((k, k))
        for i in range(k):
            step = np.zeros(k)
            step[i] = h * max(1.0, abs(x[i]))
            hessian[:, i] = (self.gradient(x + step) - self.gradient(x - step)) / (2 * step[i])
        return np.linalg.inv(-0.5 * (hessian + hessian.T))


def reference(model: Model):
    """Exact standard errors: (se_a, se_b, se_c, population SEs), NaN for items not free."""
    x = model.start()
    # The gradient is right: it matches differences of the log posterior along a few directions.
    rng = np.random.default_rng(0)
    for _ in range(3):
        v = rng.normal(size=x.size)
        h = 1e-5
        slope = (model(x + h * v) - model(x - h * v)) / (2 * h)
        assert model.gradient(x) @ v == pytest.approx(slope, rel=1e-5, abs=1e-5)
    cov = model.covariance(x)
    f = model.free
    m, n_items = int(f.sum()), f.size
    a, d, *_ = model.unpack(x)
    se_a, se_b, se_c = (np.full(n_items, np.nan) for _ in range(3))
    if model.model == "1PL":
        var_a = np.full(m, cov[m, m])
        var_d = np.diag(cov)[:m]
        cov_ad = cov[m, :m]
        used = m + 1
    else:
        k = 3 if model.model == "3PL" else 2
        blocks = [cov[k * i:k * i + k, k * i:k * i + k] for i in range(m)]
        var_a = np.array([b[0, 0] for b in blocks])
        var_d = np.array([b[1, 1] for b in blocks])
        cov_ad = np.array([b[0, 1] for b in blocks])
        if k == 3:
            se_c[f] = np.sqrt([b[2, 2] for b in blocks])
        used = m * k
    af, df = a[f], d[f]
    se_a[f] = np.sqrt(var_a)
    se_b[f] = np.sqrt((df / af**2) ** 2 * var_a + var_d / af**2 - 2 * df / af**3 * cov_ad)
    population = np.sqrt(np.diag(cov)[used:])
    return se_a, se_b, se_c, population


def assert_close(errors, expected, rtol):
    se_a, se_b, se_c, _ = expected
    np.testing.assert_allclose(errors.a, se_a, rtol=rtol)
    np.testing.assert_allclose(errors.b, se_b, rtol=rtol)
    if np.isfinite(se_c).any():
        np.testing.assert_allclose(errors.c, se_c, rtol=rtol)


def largest_error(approximate, exact) -> float:
    return max(float(np.nanmax(np.abs(getattr(approximate, p) / getattr(exact, p) - 1))) for p in "ab")


@pytest.fixture(autouse=True)
def no_runtime_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


# --------------------------------------------------------------------------- the exact information


def test_lsat7_standard_errors_equal_the_exact_observed_information():
    matrix = lsat7.response_matrix().astype(np.int8)
    responses = dense_to_responses(matrix)
    fit = estimate_items(responses, "2PL", tolerance=1e-8)
    errors = information.standard_errors(responses, fit.params, "2PL")
    assert errors.method == information.FULL and errors.unidentified == ()
    assert_close(errors, reference(Model(matrix, fit.params, "2PL")), rtol=1e-5)


@pytest.fixture(scope="module")
def dense_2pl():
    truth = simulate(2000, 30, 30, seed=21)
    return truth, estimate_items(truth.responses, "2PL")


def test_dense_2pl_is_exact_where_item_blocks_were_not(dense_2pl):
    truth, fit = dense_2pl
    errors = information.standard_errors(truth.responses, fit.params, "2PL")
    expected = reference(Model(responses_to_dense(truth.responses), fit.params, "2PL"))
    assert errors.method == information.FULL
    assert_close(errors, expected, rtol=1e-4)
    # Each item's own block alone overstates the information on b by up to a tenth here.
    blocks = information.item_information(truth.responses, fit.params)
    a, d = fit.params.a, fit.params.d
    grad = np.stack([d / a**2, -1 / a], axis=1)
    blocks_b = np.sqrt(np.einsum("ju,juv,jv->j", grad, np.linalg.inv(blocks), grad))
    assert np.min(blocks_b / expected[1]) < 0.95


def test_sparse_2pl_is_exact():
    truth = simulate(3000, 60, 15, seed=22)
    fit = estimate_items(truth.responses, "2PL")
    errors = information.standard_errors(truth.responses, fit.params, "2PL")
    assert_close(errors, reference(Model(responses_to_dense(truth.responses), fit.params, "2PL")), rtol=1e-4)


def test_1pl_common_slope_is_one_parameter_shared_by_all_items():
    truth = simulate(2000, 40, 15, seed=23)
    fit = estimate_items(truth.responses, "1PL")
    errors = information.standard_errors(truth.responses, fit.params, "1PL")
    assert np.ptp(errors.a) == 0
    assert_close(errors, reference(Model(responses_to_dense(truth.responses), fit.params, "1PL")), rtol=1e-4)


def test_3pl_with_its_beta_prior_on_c():
    truth = simulate(3000, 12, 12, seed=24, guessing=0.2)
    fit = estimate_items(truth.responses, "3PL")
    errors = information.standard_errors(truth.responses, fit.params, "3PL")  # Priors() by default: Beta(5, 17)
    model = Model(responses_to_dense(truth.responses), fit.params, "3PL", priors=Priors())
    assert_close(errors, reference(model), rtol=1e-4)
    assert np.all(np.isfinite(errors.c))


def test_2pl_under_priors_includes_the_curvature_of_b():
    # An item far out (b ~ 3.5) makes the (b - mean) / sd^2 * Hess(b) part of the prior's curvature count.
    rng = np.random.default_rng(25)
    params = ItemParameters(rng.lognormal(0, 0.3, 25), np.r_[3.5, rng.normal(0, 1, 24)], np.zeros(25))
    truth = simulate(1500, 25, 10, seed=25, params=params)
    priors = Priors(on_a_b=True)  # empirical: the SEs take the locations where the fit's items put them
    fit = estimate_items(truth.responses, "2PL", priors=priors)
    assert fit.params.b[0] > 2.5
    errors = information.standard_errors(truth.responses, fit.params, "2PL", priors=priors)
    assert_close(errors, reference(Model(responses_to_dense(truth.responses), fit.params, "2PL", priors=fit.priors)),
                 rtol=1e-4)


@pytest.fixture(scope="module")
def fipc_case():
    rng = np.random.default_rng(26)
    n_items, anchors = 30, np.arange(0, 30, 3)
    params = ItemParameters(rng.lognormal(0, 0.3, n_items), rng.normal(0, 1, n_items), np.zeros(n_items))
    # On the anchors' scale the new population is N(0.4, 1.2^2).
    truth = simulate(3000, n_items, 12, seed=26, params=params, theta=rng.normal(0.4, 1.2, 3000))
    start = estimate_items(truth.responses, "2PL").params
    result = fixed_parameter_calibration(truth.responses, start, anchors, params.take(anchors), "2PL",
                                         tolerance=1e-6)
    return truth, anchors, result


def test_fixed_parameter_calibration_frees_the_population_and_fixes_the_anchors(fipc_case):
    truth, anchors, result = fipc_case
    errors = information.standard_errors(truth.responses, result.params, "2PL", fixed=anchors,
                                         population=(result.mean, result.sd))
    free = np.ones(len(result.params), bool)
    free[anchors] = False
    model = Model(responses_to_dense(truth.responses), result.params, "2PL", free=free,
                  population=(result.mean, result.sd))
    expected = reference(model)
    assert np.isnan(errors.a[anchors]).all() and np.isnan(errors.b[anchors]).all()
    assert_close(errors, expected, rtol=1e-4)
    np.testing.assert_allclose(errors.population, expected[3], rtol=1e-4)


def test_items_whose_information_is_not_positive_definite_are_reported_not_raised(dense_2pl):
    truth, fit = dense_2pl
    # Far from its estimate (a 0.9, b 0.5) item 4's observed information is not positive definite.
    a, b = fit.params.a.copy(), fit.params.b.copy()
    a[4], b[4] = 3.0, 2.0
    params = ItemParameters(a, b, fit.params.c)
    for method in ("full", "approximate"):
        errors = information.standard_errors(truth.responses, params, "2PL", method=method)
        assert errors.unidentified == (4,)
        assert np.isnan(errors.a[4]) and np.isnan(errors.b[4])
        assert np.isfinite(np.delete(errors.a, 4)).all() and np.isfinite(np.delete(errors.b, 4)).all()


def test_standard_errors_describe_the_actual_estimation_error():
    truth = simulate(4000, 150, 25, seed=14)
    fit = estimate_items(truth.responses)
    errors = information.standard_errors(truth.responses, fit.params, "2PL")
    # If the standard errors are right, the errors divided by them are about N(0, 1).
    for estimate, true, se in ((fit.params.a, truth.params.a, errors.a), (fit.params.b, truth.params.b, errors.b)):
        z = (estimate - true) / se
        assert 0.8 < np.std(z) < 1.2
        assert np.mean(np.abs(z) < 1.96) == pytest.approx(0.95, abs=0.05)


# --------------------------------------------------------------------------- the approximation, against exact


def test_the_approximation_is_within_a_few_tenths_of_a_percent_on_a_dense_design(dense_2pl):
    truth, fit = dense_2pl
    exact = information.standard_errors(truth.responses, fit.params, "2PL")
    approximate = information.standard_errors(truth.responses, fit.params, "2PL", method="approximate")
    assert approximate.method == information.APPROXIMATE
    assert largest_error(approximate, exact) < 0.005


@pytest.mark.parametrize("model, priors", [("2PL", None), ("1PL", None), ("3PL", Priors()),
                                           ("2PL", Priors(on_a_b=True))])
def test_the_approximation_is_within_a_percent_on_sparse_designs(model, priors):
    truth = simulate(6000, 300, 20, seed=27, guessing=0.15 if model == "3PL" else 0.0)
    fit = estimate_items(truth.responses, model, priors=priors or Priors())
    exact = information.standard_errors(truth.responses, fit.params, model, priors=priors)
    approximate = information.standard_errors(truth.responses, fit.params, model, priors=priors,
                                              method="approximate")
    assert exact.method == information.FULL
    assert largest_error(approximate, exact) < 0.01
    if model == "1PL":
        assert approximate.a[0] == pytest.approx(exact.a[0], rel=1e-3)


def test_the_approximation_under_fixed_parameter_calibration(fipc_case):
    truth, anchors, result = fipc_case
    kwargs = dict(fixed=anchors, population=(result.mean, result.sd))
    exact = information.standard_errors(truth.responses, result.params, "2PL", **kwargs)
    approximate = information.standard_errors(truth.responses, result.params, "2PL", method="approximate",
                                              **kwargs)
    assert largest_error(approximate, exact) < 0.01
    np.testing.assert_allclose(approximate.population, exact.population, rtol=0.01)


def test_the_budget_picks_the_method(dense_2pl, monkeypatch):
    truth, fit = dense_2pl
    monkeypatch.setattr(information, "FULL_MAX_BYTES", 60**2 * 8 - 1)
    assert information.standard_errors(truth.responses, fit.params, "2PL").method == information.APPROXIMATE
    assert information.standard_errors(truth.responses, fit.params, "2PL",
                                       max_bytes=60**2 * 8).method == information.FULL


def test_arguments_that_cannot_work_are_refused_clearly(dense_2pl, monkeypatch):
    truth, fit = dense_2pl
    with pytest.raises(ValueError, match="fixed items"):
        information.standard_errors(truth.responses, fit.params, "2PL", population=(0.0, 1.0))
    with pytest.raises(ValueError, match="method"):
        information.standard_errors(truth.responses, fit.params, "2PL", method="exact")
    monkeypatch.setattr(information, "FULL_MAX_PARAMETERS", 50)
    with pytest.raises(ValueError, match="not factorised past 50"):
        information.standard_errors(truth.responses, fit.params, "2PL", method="full")
    assert information.standard_errors(truth.responses, fit.params, "2PL").method == information.APPROXIMATE


def test_a_calibration_that_estimated_no_item_has_standard_errors_with_nothing_in_them():
    truth = simulate(300, 12, 6, seed=9)
    fit = estimate_items(truth.responses, "2PL", min_responses=1000)  # every item has too few answers
    assert not fit.estimated.any()

    errors = information.standard_errors(truth.responses, fit.params, "2PL")

    for values in (errors.a, errors.b, errors.c, errors.d):
        assert values.shape == (12,) and np.isnan(values).all()
    assert errors.unidentified == () and errors.population is None
