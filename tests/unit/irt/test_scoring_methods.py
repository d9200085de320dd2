"""The scoring menu (EAP, MAP, ML, WLE, EAP-sum) and plausible values, against the Python mirt port (PyPI mirt
1.2.0) on the same item parameters and answers, and against computations of the test's own where the port
defines a method differently (WLE for the 3PL) or cannot be compared draw by draw."""

import numpy as np
import pytest
from scipy import optimize

from consumer.irt import plausible, scoring
from consumer.irt.linking import LinkingConstants
from consumer.irt.model import ItemParameters
from consumer.irt.quadrature import Quadrature
from consumer.irt.responses import Responses

port_models = pytest.importorskip("mirt.models.dichotomous")
from mirt.estimation.quadrature import GaussHermiteQuadrature  # noqa: E402
from mirt.scoring import fscores  # noqa: E402
from mirt.utils.plausible import combine_plausible_values, generate_plausible_values  # noqa: E402

N_ITEMS, N_PERSONS = 12, 200
#: The port's method names, by ours.
PORT_METHOD = {"EAP": "EAP", "MAP": "MAP", "ML": "ML", "WLE": "WLE", "EAP-sum": "EAPsum"}


def items_for(model: str) -> ItemParameters:
    rng = np.random.default_rng(11)
    a = np.ones(N_ITEMS) if model == "1PL" else rng.uniform(0.6, 2.2, N_ITEMS)
    b = rng.normal(0.0, 1.0, N_ITEMS)
    c = np.where(rng.random(N_ITEMS) < 0.6, rng.uniform(0.1, 0.3, N_ITEMS), 0.0) if model == "3PL" \
        else np.zeros(N_ITEMS)
    return ItemParameters(a, b, c)


def answers(params: ItemParameters, seed: int = 5) -> np.ndarray:
    """Simulated answers (-1: not presented), with the extreme patterns in the first rows: all correct, all
    wrong, one answer right, one answer wrong, two answers (one of each)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.0, N_PERSONS)
    x = (rng.random((N_PERSONS, N_ITEMS)) < params.probability(theta)).astype(int)
    x[:, rng.random(N_ITEMS) < 0.3] = np.where(rng.random((N_PERSONS, 1)) < 0.5, -1, x[:, :1])  # some not presented
    x[0], x[1] = 1, 0
    x[2:5] = -1
    x[2, 3], x[3, 5], x[4, 1], x[4, 7] = 1, 0, 1, 0
    return x


def as_responses(x: np.ndarray) -> Responses:
    person, item = np.nonzero(x >= 0)
    return Responses.from_triplets(person, item, x[person, item], n_persons=x.shape[0], n_items=x.shape[1])


def port_model(model: str, params: ItemParameters):
    kind = {"1PL": port_models.OneParameterLogistic, "2PL": port_models.TwoParameterLogistic,
            "3PL": port_models.ThreeParameterLogistic}[model]
    fitted = kind(n_items=N_ITEMS)
    values = {"difficulty": params.b}
    if model != "1PL":
        values["discrimination"] = params.a
    if model == "3PL":
        values["guessing"] = params.c
    fitted.set_parameters(**values)
    fitted._is_fitted = True  # parameters given, not estimated: what fscores scores from
    return fitted


# The 3PL's WLE is not among them: the port maximises L sqrt(I), not Warm's equation, for the 3PL (see the two
# tests below, against Warm's equation solved here and against the port's own criterion).
@pytest.mark.parametrize("model,method", [(model, method) for model in ("1PL", "2PL", "3PL")
                                          for method in ("EAP", "MAP", "ML", "WLE", "EAP-sum")
                                          if (model, method) != ("3PL", "WLE")])
def test_every_method_agrees_with_the_python_mirt_port(model, method):
    params = items_for(model)
    x = answers(params)
    ours = scoring.score(as_responses(x), params, method)
    theirs = fscores(port_model(model, params), x, method=PORT_METHOD[method])
    theta, se = theirs.theta.ravel(), theirs.standard_error.ravel()
    assert ours.method == method and ours.scored.all()
    np.testing.assert_allclose(ours.theta, theta, atol=1e-4, err_msg=f"{model} {method} theta")
    # ML at the end of the range (the likelihood still rising there) has no standard error: NaN here. The port
    # gives inf for all-correct and all-wrong patterns, and for a 3PL pattern whose likelihood rises toward -inf
    # without being all wrong, 1/sqrt(I) at -6: a number for an estimate that is not finite.
    at_bound = ours.bound != 0
    assert np.isnan(ours.se[at_bound]).all() and (method == "ML" or not at_bound.any())
    assert (~np.isfinite(se) <= at_bound).all(), "no infinite SE from the port where ours is inside the range"
    np.testing.assert_allclose(ours.se[~at_bound], se[~at_bound], atol=1e-4, err_msg=f"{model} {method} SE")


@pytest.mark.parametrize("method", ["EAP", "MAP", "EAP-sum"])
def test_a_prior_other_than_the_standard_normal_as_the_port_takes_it(method):
    """N(0.5, 1.2^2): what the window's population would be as a prior; the port's prior_mean and prior_cov.

    On a grid wider than [-6, 6]: the all-correct student's posterior has the prior's right tail, and at 4.6
    prior SDs [-6, 6] (R mirt's grid, the service's) cuts it off enough to move the posterior SD by 2e-4,
    where the port's Gauss-Hermite nodes, centred on the prior, reach past 9 SDs. And with the port's EAP on
    151 nodes instead of its default 49: its 49 nodes, spread by the prior's SD of 1.2, lie about 0.4 apart near
    the centre, as far as a posterior SD of 0.45, which leaves an error of 1e-4 in the SD (151 nodes agree with
    a grid of 0.15 to 1e-9)."""
    params = items_for("2PL")
    x = answers(params)
    ours = scoring.score(as_responses(x), params, method, prior=(0.5, 1.2), quadrature=Quadrature.normal(121, 9.0))
    theirs = fscores(port_model("2PL", params), x, method=PORT_METHOD[method], prior_mean=np.array([0.5]),
                     prior_cov=np.array([[1.44]]), n_quadpts=151 if method == "EAP" else None)
    np.testing.assert_allclose(ours.theta, theirs.theta.ravel(), atol=1e-4)
    np.testing.assert_allclose(ours.se, theirs.standard_error.ravel(), atol=1e-4)


@pytest.mark.parametrize("model", ["1PL", "2PL", "3PL"])
def test_ml_of_all_correct_and_all_wrong_is_the_end_of_the_range_with_no_standard_error(model):
    params = items_for(model)
    x = answers(params)
    ml = scoring.score(as_responses(x), params, "ML", linking=LinkingConstants("stocking-lord", 1.5, 0.25, 5))
    assert ml.theta[0] == pytest.approx(1.5 * 6 + 0.25) and ml.theta[1] == pytest.approx(-1.5 * 6 + 0.25)
    assert ml.bound[0] == 1 and ml.bound[1] == -1 and np.isnan(ml.se[:2]).all()
    # One answer, right or wrong, is as extreme: the likelihood keeps rising.
    assert ml.bound[2] == 1 and ml.bound[3] == -1
    assert ml.at_bound()["upper"] >= 2 and ml.at_bound()["lower"] >= 2
    wle = scoring.score(as_responses(x), params, "WLE")
    assert np.isfinite(wle.theta[:4]).all() and (np.abs(wle.theta[:4]) < 6).all() and not wle.bound[:4].any()


def warm_root(params: ItemParameters, pattern: np.ndarray) -> float:
    """WLE by Warm's equation d log L / d theta + J / (2 I) = 0, written out from P(theta) alone (derivatives by
    their closed forms in P, independent of the service's kernel), solved by brentq on [-6, 6]."""
    seen = pattern >= 0
    a, b, c, y = params.a[seen], params.b[seen], params.c[seen], pattern[seen]

    def warm(theta):
        s = 1.0 / (1.0 + np.exp(-a * (theta - b)))
        p = c + (1 - c) * s
        dp = (1 - c) * a * s * (1 - s)
        d2p = (1 - c) * a**2 * s * (1 - s) * (1 - 2 * s)
        info = np.sum(dp**2 / (p * (1 - p)))
        j = np.sum(dp * d2p / (p * (1 - p)))
        return np.sum((y - p) * dp / (p * (1 - p))) + j / (2 * info)

    grid = np.linspace(-6, 6, 1201)
    values = np.array([warm(t) for t in grid])
    change = np.flatnonzero((values[:-1] > 0) & (values[1:] <= 0))
    assert change.size == 1, "one root of Warm's equation in the range for these items"
    return optimize.brentq(warm, grid[change[0]], grid[change[0] + 1], xtol=1e-12)


def test_wle_of_the_3pl_solves_warms_equation():
    params = items_for("3PL")
    x = answers(params)
    wle = scoring.score(as_responses(x), params, "WLE")
    for i in list(range(6)) + list(range(10, N_PERSONS, 19)):
        assert wle.theta[i] == pytest.approx(warm_root(params, x[i]), abs=1e-6), f"person {i}"
    seen = x[10] >= 0
    p = params.take(np.flatnonzero(seen)).probability(np.array([wle.theta[10]]))[0]
    a, c = params.a[seen], params.c[seen]
    s = (p - c) / (1 - c)
    info = np.sum(((1 - c) * a * s * (1 - s)) ** 2 / (p * (1 - p)))
    assert wle.se[10] == pytest.approx(1 / np.sqrt(info), rel=1e-8)


def test_the_ports_3pl_wle_maximises_l_sqrt_i_which_is_not_warms_estimator():
    """Why the port differs for the 3PL: it maximises log L + log(I) / 2, whose derivative has I' / (2 I) where
    Warm's equation has J / (2 I); J = I' for the 1PL and 2PL only. This test checks that reading of the port
    (by scipy on its objective) and that the two differ by more than the comparison's tolerance."""
    params = items_for("3PL")
    x = answers(params)
    theirs = fscores(port_model("3PL", params), x, method="WLE").theta.ravel()
    ours = scoring.score(as_responses(x), params, "WLE").theta
    for i in (0, 1, 10, 29, 48):
        seen = x[i] >= 0
        items = params.take(np.flatnonzero(seen))

        def negative(theta):
            p = items.probability(np.array([theta]))[0]
            s = (p - items.c) / (1 - items.c)
            info = np.sum(((1 - items.c) * items.a * s * (1 - s)) ** 2 / (p * (1 - p)))
            return -(np.sum(x[i][seen] * np.log(p) + (1 - x[i][seen]) * np.log(1 - p)) + 0.5 * np.log(info))

        best = optimize.minimize_scalar(negative, bounds=(-6, 6), method="bounded", options={"xatol": 1e-10}).x
        assert theirs[i] == pytest.approx(best, abs=1e-4), f"the port's WLE of person {i} is argmax L sqrt(I)"
    assert np.max(np.abs(theirs - ours)) > 1e-3


@pytest.mark.parametrize("method", ["EAP", "MAP", "ML", "WLE", "EAP-sum"])
def test_scores_on_the_linked_scale_are_the_linked_items_scored_with_the_carried_prior(method):
    """Scoring on the calibration scale and carrying the scores by theta' = A theta + B is scoring the linked
    items (a / A, A b + B) with the N(0, 1) prior carried to N(B, A^2) and the grid carried with it."""
    params = items_for("3PL")
    x = answers(params)
    slope, intercept = 1.3, -0.4
    carried = scoring.score(as_responses(x), params, method,
                            linking=LinkingConstants("stocking-lord", slope, intercept, 5))
    grid = Quadrature.normal()
    linked_grid = Quadrature(nodes=slope * grid.nodes + intercept, weights=grid.weights)
    direct = scoring.score(as_responses(x), params.on_scale(slope, intercept), method, quadrature=linked_grid,
                           prior=(intercept, slope) if method == "MAP" else None)
    np.testing.assert_allclose(carried.theta, direct.theta, atol=1e-7)
    np.testing.assert_allclose(carried.se[np.isfinite(carried.se)], direct.se[np.isfinite(direct.se)], atol=1e-7)


def test_eap_sum_against_lord_wingersky_by_hand_on_a_tiny_form():
    """Three items; P(score | theta) by enumerating the 8 patterns (not by the recursion), the posterior of each
    score on a fine grid."""
    params = ItemParameters(np.array([1.0, 1.6, 0.8]), np.array([-0.7, 0.1, 0.9]), np.array([0.0, 0.2, 0.0]))
    patterns = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 1], [1, 1, 0], [1, 1, 1], [0, 0, 1]])
    got = scoring.score(as_responses(patterns), params, "EAP-sum", quadrature=Quadrature.normal(401))
    grid = np.linspace(-6, 6, 4001)
    p = params.probability(grid)
    by_score = np.zeros((4, grid.size))
    for bits in range(8):
        y = np.array([(bits >> k) & 1 for k in range(3)])
        by_score[y.sum()] += np.prod(np.where(y == 1, p, 1 - p), axis=1)
    prior = np.exp(-grid**2 / 2)
    for i, y in enumerate(patterns):
        post = by_score[y.sum()] * prior
        mean = np.sum(grid * post) / post.sum()
        sd = np.sqrt(np.sum((grid - mean) ** 2 * post) / post.sum())
        assert got.theta[i] == pytest.approx(mean, abs=1e-6) and got.se[i] == pytest.approx(sd, abs=1e-6)
    assert got.theta[2] == got.theta[3], "one form, one summed score, one score"


def test_eap_sum_scores_each_form_apart():
    """Students who answered different items are scored by their own form's summed-score table: the same sum on
    different forms is a different score, each the one that form alone would give."""
    params = items_for("2PL")
    x = np.full((4, N_ITEMS), -1)
    x[0, :6], x[1, :6] = [1, 1, 0, 0, 1, 0], [0, 1, 1, 1, 0, 0]  # form A, sum 3 twice
    x[2, 6:], x[3, 6:] = [1, 1, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1]  # form B, sum 3 twice
    got = scoring.score(as_responses(x), params, "EAP-sum")
    assert got.theta[0] == got.theta[1] and got.theta[2] == got.theta[3] and got.theta[0] != got.theta[2]
    alone = scoring.score(as_responses(x[2:, 6:]), params.take(np.arange(6, N_ITEMS)), "EAP-sum")
    assert got.theta[2] == pytest.approx(alone.theta[0], abs=1e-12)
    form, representative = scoring.forms(as_responses(x))
    assert form.tolist()[0] == form.tolist()[1] != form.tolist()[2] == form.tolist()[3] and representative.size == 2


def test_plausible_values_are_the_ports_draws_on_the_same_grid_and_uniforms():
    """The port draws a quadrature node by its posterior mass from rng.random((draws, persons)); on its own
    Gauss-Hermite grid and with the same seed, our draws are its draws."""
    params = items_for("2PL")
    x = answers(params)
    quadrature = GaussHermiteQuadrature(n_points=21)
    grid = Quadrature(nodes=quadrature.nodes.ravel(), weights=quadrature.weights.ravel())
    ours = plausible.draw_plausible_values(as_responses(x), params, 5, np.random.default_rng(3), quadrature=grid)
    theirs = generate_plausible_values(port_model("2PL", params), x, n_plausible=5, n_quadpts=21, seed=3)
    np.testing.assert_array_equal(ours, theirs[:, 0, :])


def test_plausible_values_recover_a_known_population_that_eap_scores_shrink():
    truth_mean, truth_sd, n = 0.3, 1.2, 4000
    rng = np.random.default_rng(7)
    params = ItemParameters(rng.uniform(0.8, 2.0, 15), rng.normal(0.3, 1.2, 15), np.zeros(15))
    theta = rng.normal(truth_mean, truth_sd, n)
    x = (rng.random((n, 15)) < params.probability(theta)).astype(int)
    values = plausible.draw_plausible_values(as_responses(x), params, 10, np.random.default_rng(8),
                                             population=(truth_mean, truth_sd))
    estimate = plausible.population_statistics(values)
    # Against the simulated students' own mean and SD: what is left is the draws' error, about the total SE.
    assert abs(estimate.mean - theta.mean()) < 3 * estimate.mean_between + 0.02
    assert abs(estimate.sd - theta.std(ddof=1)) < 0.03
    assert abs(estimate.mean - truth_mean) < 3 * estimate.mean_se and abs(estimate.sd - truth_sd) < 3 * estimate.sd_se
    eap = scoring.score(as_responses(x), params, "EAP", prior=(truth_mean, truth_sd))
    assert eap.theta.std() < truth_sd - 0.1, "EAP scores shrink toward the prior: their SD is no population SD"


def test_rubins_rules_as_the_port_combines_them():
    rng = np.random.default_rng(4)
    values = rng.normal(0.2, 1.0, (500, 6)) + rng.normal(0, 0.05, 6)
    estimate = plausible.population_statistics(values)
    means, sds = values.mean(axis=0), values.std(axis=0, ddof=1)
    for ours, ours_between, ours_se, estimates, variances in (
            (estimate.mean, estimate.mean_between, estimate.mean_se, means, sds**2 / 500),
            (estimate.sd, estimate.sd_between, estimate.sd_se, sds, sds**2 / (2 * 499))):
        theirs = combine_plausible_values(list(estimates), list(variances))
        assert ours == pytest.approx(theirs["estimate"], abs=1e-12)
        assert ours_between == pytest.approx(np.sqrt(theirs["between_var"]), abs=1e-12)
        assert ours_se == pytest.approx(theirs["se"], abs=1e-12)


def test_method_names():
    assert [scoring.method_name(n) for n in ("eap", "Map", "ml", "wle", "eapsum", "EAP_SUM", "eap-sum")] == \
        ["EAP", "MAP", "ML", "WLE", "EAP-sum", "EAP-sum", "EAP-sum"]
    with pytest.raises(ValueError, match="unknown scoring method"):
        scoring.method_name("bayes")
