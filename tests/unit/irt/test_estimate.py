"""Item calibration by EM, held against R mirt and against known truth."""

import numpy as np
import pytest

from consumer.irt import kernels
from consumer.irt.estimate import A_BOUNDS, _run_em, estimate_items
from consumer.irt.mstep import Point as _Point
from consumer.irt.watch import HoldBack as _HoldBack, Watch as _Watch
from consumer.irt.priors import Priors
from consumer.irt.model import log_curves, model_name
from consumer.irt.quadrature import Quadrature
from consumer.irt.responses import Responses
from consumer.irt.simulate import simulate

from tests.support import lsat6, lsat7
from tests.support.responses import dense_to_responses


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


@pytest.mark.parametrize("accelerate", [False, True])
def test_iteration_cap_is_reported_as_not_converged(accelerate):
    truth = simulate(2000, 100, 30, seed=5)
    seen = []
    fit = estimate_items(truth.responses, max_iterations=3, accelerate=accelerate,
                         progress=lambda i, ll, ch: seen.append((i, ll)))
    assert not fit.converged and fit.iterations == 3
    # The items still moving are named, with how far they moved in the last pass.
    assert fit.still_moving and all(fit.estimated[j] and v >= fit.tolerance for j, v in fit.still_moving.items())
    held = fit.hold_back({j: "not converged" for j in fit.still_moving})
    assert np.isnan(held.params.a[list(fit.still_moving)]).all() and not held.still_moving
    assert set(held.held_back) == set(fit.still_moving) <= set(held.excluded)
    # SQUAREM's first cycle is plain EM (its step length starts capped at 1).
    assert [i for i, _ in seen] == [1, 2, 3]
    # EM never lowers the likelihood.
    assert seen[0][1] < seen[1][1] < seen[2][1]
    # What is returned is the last point reported, with its own log-likelihood.
    assert fit.loglik == seen[-1][1]


def plain_em_cycle(responses, a, d, nodes=Quadrature.normal().nodes):
    """One textbook EM cycle from (a, d), all in float64: log-likelihood and new (a, d)."""
    counts, loglik = kernels.expected_counts(responses, log_curves(a, d, None, nodes),
                                             Quadrature.normal().log_weights)
    padded = np.zeros((2 * a.size, 64))
    padded[:, :nodes.size] = counts.reshape(2 * a.size, nodes.size)
    new_a, new_d = kernels.newton_2pl(padded, nodes, a, d, 25, 1e-10, 2.0, 1e-9, 1e9, 1e9)
    return loglik, new_a, new_d


@pytest.mark.parametrize("accelerate", [False, True])
def test_estimates_returned_are_a_fixed_point_of_plain_em(accelerate):
    truth = simulate(3000, 120, 30, seed=8)
    fit = estimate_items(truth.responses, accelerate=accelerate)
    assert fit.converged and fit.max_change < fit.tolerance
    a, d = fit.params.a, fit.params.d
    loglik, new_a, new_d = plain_em_cycle(truth.responses, a, d)
    assert max(np.abs(new_a - a).max(), np.abs(new_d - d).max()) < fit.tolerance
    # The log-likelihood reported is that of the parameters returned.
    assert fit.loglik == pytest.approx(loglik, abs=1e-6)


@pytest.mark.parametrize("model", ["2PL", "1PL"])
def test_accelerated_and_plain_em_land_on_the_same_estimates(model):
    truth = simulate(5000, 300, 40, seed=13)
    plain = estimate_items(truth.responses, model, accelerate=False)
    fast = estimate_items(truth.responses, model)
    # Near the same maximum: tolerance 1e-7 switches the E-step to float64.
    exact = estimate_items(truth.responses, model, tolerance=1e-7)
    assert plain.converged and fast.converged and exact.converged
    assert fast.iterations < plain.iterations
    # Plain EM stops where its steps fall below 1e-4, which on a slow item can
    # be ten times that from the maximum; SQUAREM stops nearer to it.
    for fit, limit in ((plain, 2.5e-3), (fast, 5e-4)):
        np.testing.assert_allclose(fit.params.a, exact.params.a, atol=limit)
        np.testing.assert_allclose(fit.params.b, exact.params.b, atol=limit)
        assert fit.loglik == pytest.approx(exact.loglik, abs=1e-2)
    np.testing.assert_allclose(fast.params.b, plain.params.b, atol=2.5e-3)
    assert abs(fast.loglik - exact.loglik) <= abs(plain.loglik - exact.loglik) + 1e-4


def test_accelerated_progress_reports_only_accepted_points_and_never_a_lower_likelihood():
    truth = simulate(5000, 1500, 100, seed=1)
    seen = []
    fit = estimate_items(truth.responses, progress=lambda i, ll, ch: seen.append((i, ll, ch)))
    assert fit.converged
    iterations = [i for i, _, _ in seen]
    logliks = [ll for _, ll, _ in seen]
    assert iterations == sorted(set(iterations)) and iterations[-1] == fit.iterations
    assert all(later >= earlier for earlier, later in zip(logliks, logliks[1:]))
    assert fit.history == logliks
    assert (fit.loglik, fit.max_change) == (seen[-1][1], seen[-1][2])


class ToyEM:
    """A linear fixed-point map x -> c + M (x - c) standing in for EM, loglik = -|x - c|^2.

    With ``reject_extrapolations`` the log-likelihood of any point that is not
    the start or an image of the map is -inf, so every SQUAREM step must be
    rejected.
    """

    def __init__(self, reject_extrapolations=False):
        self.centre = np.array([[1.0, -2.0], [0.5, 3.0]])
        self.rates = np.array([[0.95, 0.9], [0.8, 0.5]])
        self.reject = reject_extrapolations
        self.images = []

    def __call__(self, x):
        mapped = self.centre + self.rates * (x - self.centre)
        loglik = -float(((x - self.centre) ** 2).sum())
        if self.reject and len(self.images) and not any(np.array_equal(x, y) for y in self.images):
            loglik = -np.inf
        self.images.append(mapped)
        return _Point(x, loglik, mapped, float(np.abs(mapped - x).max()))


def test_squarem_driver_converges_faster_on_a_slow_linear_map():
    start = np.zeros((2, 2))
    plain, plain_passes, ok_plain = _run_em(ToyEM(), start, 1e-8, 10_000, False, lambda i, p: None)
    fast, fast_passes, ok_fast = _run_em(ToyEM(), start, 1e-8, 10_000, True, lambda i, p: None)
    assert ok_plain and ok_fast
    assert fast_passes < plain_passes / 5
    np.testing.assert_allclose(fast.x, ToyEM().centre, atol=1e-6)
    np.testing.assert_allclose(plain.x, ToyEM().centre, atol=1e-6)


def test_squarem_falls_back_to_plain_em_when_an_extrapolation_lowers_the_likelihood():
    start = np.zeros((2, 2))
    plain_seen, fast_seen = [], []
    plain, plain_passes, _ = _run_em(ToyEM(), start, 1e-6, 10_000, False, lambda i, p: plain_seen.append(p))
    fast, fast_passes, ok = _run_em(ToyEM(reject_extrapolations=True), start, 1e-6, 10_000, True,
                                    lambda i, p: fast_seen.append(p))
    assert ok
    # The same points are accepted as in plain EM; only the passes on rejected steps are extra.
    assert len(fast_seen) == len(plain_seen) and fast_passes > plain_passes
    np.testing.assert_array_equal(fast.x, plain.x)
    assert all(np.isfinite(p.loglik) for p in fast_seen)


def test_float32_e_step_agrees_with_float64_and_with_a_dense_computation():
    truth = simulate(400, 30, 12, seed=3)
    r = truth.responses
    q = Quadrature.normal()
    a, d = truth.params.a, truth.params.d
    runs = {}
    for dtype in (np.float32, np.float64):
        estep = kernels.EStep(r, q.log_weights, dtype=dtype)
        estep.set_2pl(a, d, q.nodes)
        counts, loglik = estep.run()
        runs[dtype] = counts.reshape(r.n_items, 2, -1)[:, :, :q.nodes.size].copy(), loglik
    # Dense reference: every person's posterior from the full pattern.
    logp = log_curves(a, d, None, q.nodes)
    dense = np.zeros((r.n_items, 2, q.nodes.size))
    loglik = 0.0
    for i in range(r.n_persons):
        items = r.item[r.person_ptr[i]:r.person_ptr[i + 1]]
        ys = r.correct[r.person_ptr[i]:r.person_ptr[i + 1]]
        log_post = q.log_weights + logp[items, ys].sum(axis=0)
        top = log_post.max()
        loglik += top + np.log(np.exp(log_post - top).sum())
        np.add.at(dense, (items, ys), np.exp(log_post - top) / np.exp(log_post - top).sum())
    for dtype, limit in ((np.float64, 1e-12), (np.float32, 1e-6)):
        counts, ll = runs[dtype]
        np.testing.assert_allclose(counts, dense, rtol=0, atol=limit * dense.max())
        # The float32 run corrects its log-likelihood for the table's rounding.
        assert ll == pytest.approx(loglik, rel=1e-12 if dtype is np.float64 else 1e-10)
    # The one-off E-step of the public API stays all float64.
    counts, ll = kernels.expected_counts(r, logp, q.log_weights)
    np.testing.assert_allclose(counts, dense, rtol=0, atol=1e-12 * dense.max())
    assert ll == pytest.approx(loglik, rel=1e-12)


def test_model_names():
    assert model_name("rasch") == "1PL"
    assert model_name(" 2pl ") == "2PL"
    with pytest.raises(ValueError, match="unknown IRT model '4PL'"):
        model_name("4PL")


def test_recovers_known_3pl_parameters():
    truth = simulate(20000, 100, 50, seed=31, guessing=0.2)
    fit = estimate_items(truth.responses, "3PL")
    assert fit.converged and fit.model == "3PL"
    assert rmse(fit.params.a, truth.params.a) < 0.15
    assert rmse(fit.params.b, truth.params.b) < 0.15
    assert rmse(fit.params.c, truth.params.c) < 0.06
    assert abs(fit.params.c.mean() - 0.2) < 0.03
    # The c prior enters what EM maximises.
    assert fit.log_posterior < fit.loglik


def test_3pl_fits_guessing_data_better_than_2pl():
    truth = simulate(8000, 60, 40, seed=32, guessing=0.25)
    two, three = estimate_items(truth.responses, "2PL"), estimate_items(truth.responses, "3PL")
    # 60 more parameters, but a far better likelihood: AIC prefers the model that generated the data.
    assert -2 * three.loglik + 2 * 180 < -2 * two.loglik + 2 * 120


def test_bayes_modal_priors_steady_sparse_items():
    truth = simulate(3000, 200, 20, seed=3)  # about 300 answers per item
    plain = estimate_items(truth.responses, "2PL")
    modal = estimate_items(truth.responses, "2PL", priors=Priors(on_a_b=True))
    assert modal.converged
    assert rmse(modal.params.a, truth.params.a) < rmse(plain.params.a, truth.params.a)
    assert modal.params.a.max() < plain.params.a.max()


def faulty_items_data():
    """Sparse 2PL data in which three items cannot be estimated: 3 splits its students perfectly by
    ability (its slope runs away), 7's answers are unrelated to ability, 9's key is reversed."""
    truth = simulate(4000, 40, 40, seed=5)
    r = truth.responses
    correct = r.correct.copy()
    theta = truth.theta[r.person_index()]
    correct[r.item == 3] = theta[r.item == 3] > 0.3
    correct[r.item == 7] = np.random.default_rng(0).random(int((r.item == 7).sum())) < 0.7
    correct[r.item == 9] = 1 - correct[r.item == 9]
    return truth, Responses(r.person_ptr, r.item, correct, r.n_items)


@pytest.mark.parametrize("model", ["2PL", "3PL"])
@pytest.mark.parametrize("accelerate", [True, False])
def test_items_the_answers_do_not_identify_are_held_back_and_the_rest_converge(model, accelerate):
    truth, responses = faulty_items_data()
    fit = estimate_items(responses, model, accelerate=accelerate)

    assert sorted(fit.held_back) == [3, 7, 9]
    assert "ran away" in fit.held_back[3]
    assert "check its answer key" in fit.held_back[9]
    assert all(fit.excluded[j] == fit.held_back[j] for j in (3, 7, 9))
    assert not fit.estimated[[3, 7, 9]].any() and np.isnan(fit.params.a[[3, 7, 9]]).all()
    # Recognised within a bounded number of passes; the others converge, finite, inside the bounds.
    assert fit.converged and fit.iterations < 100
    others = fit.estimated
    assert others.sum() == 37
    assert np.all((fit.params.a[others] > A_BOUNDS[0]) & (fit.params.a[others] < A_BOUNDS[1]))
    # (The 3PL's c prior shifts b on these 2PL data; the order stays.)
    assert np.corrcoef(fit.params.b[others], truth.params.b[others])[0, 1] > 0.97


def test_an_item_answered_only_by_students_with_no_other_answer_is_not_identified():
    truth = simulate(3000, 30, 10, seed=6)
    r = truth.responses
    lone = Responses.from_triplets(np.arange(3000, 3100), np.full(100, 30), np.arange(100) % 2, 3100, 31)
    both = Responses.from_triplets(np.concatenate([r.person_index(), np.arange(3000, 3100)]),
                                   np.concatenate([r.item, np.full(100, 30)]),
                                   np.concatenate([r.correct, lone.correct]), 3100, 31)
    fit = estimate_items(both, "2PL")
    assert list(fit.held_back) == [30] and "only 0 of its 100 answers" in fit.held_back[30]
    # A common slope is identified by the other items: the 1PL estimates it.
    assert estimate_items(both, "1PL").estimated[30]


def test_an_item_drifting_towards_a_bound_is_held_back_and_one_converging_slowly_is_not():
    watch = _Watch(0, 1e-8, 6.0, common_slope=False)
    x = np.array([[1.0, 1.2, 0.8], [0.0, 0.5, -0.5]])
    for passes in range(1, 60):
        step = np.zeros_like(x)
        step[0, 1] = 0.01  # item 1's slope climbs a hundredth a pass, on and on: it will reach a = 10
        step[1, 2] = 0.01 * 0.97**passes  # item 2's intercept moves less each pass: it settles 0.33 further on
        try:
            watch(passes, _Point(x, -1000.0, x + step, 0.01))
        except _HoldBack as stop:
            assert passes >= 20 and list(stop.items) == [1] and "ran away to the bound" in stop.items[1]
            return
        x = x + step
    pytest.fail("an item drifting steadily towards a slope bound was not held back")


def sparse_log_posterior(responses: Responses, a, d, priors: Priors) -> float:
    """Marginal log-likelihood of sparse 2PL data plus the log prior densities of a and b, in plain numpy."""
    quadrature = Quadrature.normal()
    z = a[:, None] * quadrature.nodes[None, :] + d[:, None]
    log_p = np.where(responses.correct[:, None] == 1, -np.logaddexp(0, -z[responses.item]),
                     -np.logaddexp(0, z[responses.item]))
    per_person = np.add.reduceat(log_p, responses.person_ptr[:-1], axis=0) + quadrature.log_weights
    top = per_person.max(axis=1, keepdims=True)
    loglik = float((top[:, 0] + np.log(np.exp(per_person - top).sum(axis=1))).sum())
    b = -d / a
    return loglik + float((-(np.log(a) - priors.log_a_mode) ** 2 / (2 * priors.a_sdlog**2)
                           - (b - priors.b_mean) ** 2 / (2 * priors.b_sd**2)).sum())


@pytest.mark.parametrize("empirical", [False, True], ids=["fixed", "empirical"])
def test_the_2pl_under_priors_ends_at_the_mode_of_the_posterior(empirical):
    truth = simulate(1500, 30, 12, seed=17)  # 600 answers per item, 12 per student
    fit = estimate_items(truth.responses, "2PL", priors=Priors(on_a_b=True, empirical=empirical), tolerance=1e-7)
    # Empirical priors: the mode under the locations the fit ended with (which its items give them).
    priors = fit.priors
    assert not priors.empirical
    if empirical:
        centred = Priors(on_a_b=True).at(fit.params.a, fit.params.b)
        assert priors.log_a_mode == pytest.approx(centred.log_a_mode, abs=1e-6)
        assert priors.b_mean == pytest.approx(centred.b_mean, abs=1e-6)
    a, d = fit.params.a, fit.params.d
    assert fit.log_posterior == pytest.approx(sparse_log_posterior(truth.responses, a, d, priors), abs=1e-6)
    h = 1e-5
    for j in range(30):
        for which in (a, d):
            up, down = which.copy(), which.copy()
            up[j] += h
            down[j] -= h
            args_up = (up, d) if which is a else (a, up)
            args_down = (down, d) if which is a else (a, down)
            slope = (sparse_log_posterior(truth.responses, *args_up, priors)
                     - sparse_log_posterior(truth.responses, *args_down, priors)) / (2 * h)
            assert abs(slope) < 2e-3, (j, slope)


def marginal_loglik(responses: Responses, a, d) -> tuple[float, np.ndarray]:
    """The 2PL's marginal log-likelihood and its gradient in (a, d) (Fisher's identity), in plain numpy."""
    quadrature = Quadrature.normal()
    z = a[responses.item, None] * quadrature.nodes[None, :] + d[responses.item, None]
    log_p = np.where(responses.correct[:, None] == 1, -np.logaddexp(0, -z), -np.logaddexp(0, z))
    per_person = np.add.reduceat(log_p, responses.person_ptr[:-1], axis=0) + quadrature.log_weights
    top = per_person.max(axis=1, keepdims=True)
    posterior = np.exp(per_person - top)
    total = posterior.sum(axis=1, keepdims=True)
    posterior /= total
    residual = (responses.correct[:, None] - 1 / (1 + np.exp(-z))) * posterior[responses.person_index()]
    gradient = np.stack([np.bincount(responses.item, residual @ quadrature.nodes, responses.n_items),
                         np.bincount(responses.item, residual.sum(axis=1), responses.n_items)])
    return float((top[:, 0] + np.log(total[:, 0])).sum()), gradient


def direct_maximum_likelihood(responses: Responses) -> tuple[np.ndarray, np.ndarray, float]:
    """The 2PL's (a, d, log-likelihood) by maximising the marginal likelihood directly (BFGS), not by EM."""
    from scipy.optimize import minimize

    m = responses.n_items

    def minus(v):
        loglik, gradient = marginal_loglik(responses, v[:m], v[m:])
        return -loglik, -gradient.ravel()

    found = minimize(minus, np.r_[np.ones(m), np.zeros(m)], jac=True, method="BFGS", options={"gtol": 1e-8})
    return found.x[:m], found.x[m:], -found.fun


@pytest.mark.parametrize("data", [lsat6, lsat7], ids=["LSAT6", "LSAT7"])
@pytest.mark.parametrize("tolerance, accelerate", [(1e-8, True), (1e-8, False), (1e-4, False)])
def test_a_slow_or_tight_em_on_the_lsat_data_holds_back_nothing_and_lands_on_the_direct_ml_point(
        data, tolerance, accelerate):
    responses = dense_to_responses(data.response_matrix())
    a, d, loglik = direct_maximum_likelihood(responses)

    fit = estimate_items(responses, "2PL", tolerance=tolerance, accelerate=accelerate)

    assert fit.converged and not fit.held_back and fit.estimated.all()
    # Plain EM at 1e-4 stops where its steps fall below 1e-4, a few of them from the maximum.
    limit = 1e-5 if tolerance < 1e-6 else 2e-3
    np.testing.assert_allclose(fit.params.a, a, atol=limit)
    np.testing.assert_allclose(fit.params.d, d, atol=limit)
    assert fit.loglik == pytest.approx(loglik, abs=1e-4)


@pytest.mark.parametrize("accelerate", [True, False])
def test_a_sparse_design_at_a_tight_tolerance_holds_back_nothing(accelerate):
    truth = simulate(3000, 100, 30, seed=1)

    fit = estimate_items(truth.responses, "2PL", tolerance=1e-8, accelerate=accelerate)

    assert fit.converged and not fit.held_back and fit.estimated.all()
    # Every item sits where the marginal likelihood is flat in its own slope and intercept: the ML point.
    loglik, gradient = marginal_loglik(truth.responses, fit.params.a, fit.params.d)
    assert fit.loglik == pytest.approx(loglik, abs=1e-6)
    assert np.abs(gradient).max() < 1e-3


class Stop(Exception):
    pass


def test_the_checkpoint_is_asked_before_every_e_step_pass_not_only_at_accepted_points():
    """A shutdown must not wait for an accepted point (``progress``): a rejected extrapolation is a pass too."""
    truth = simulate(2000, 100, 20, seed=3)
    asked = []
    fit = estimate_items(truth.responses, tolerance=1e-6, checkpoint=lambda: asked.append(len(asked)))
    assert len(asked) == fit.iterations

    # What it raises ends the fit at once, within the pass it was asked before.
    calls = []

    def stop_at_the_fifth_pass():
        calls.append(1)
        if len(calls) == 5:
            raise Stop
    with pytest.raises(Stop):
        estimate_items(truth.responses, checkpoint=stop_at_the_fifth_pass)
    assert len(calls) == 5


def test_squarem_driver_asks_the_checkpoint_before_each_of_its_passes_the_rejected_ones_too():
    toy = ToyEM(reject_extrapolations=True)
    asked, accepted = [], []
    _, passes, converged = _run_em(toy, np.zeros((2, 2)), 1e-10, 10_000, True, lambda n, p: accepted.append(n),
                                   checkpoint=lambda: asked.append(len(toy.images)))
    assert converged and len(asked) == passes == len(toy.images) > len(accepted)
    assert asked == list(range(passes)), "the checkpoint came after a pass, not before it"
