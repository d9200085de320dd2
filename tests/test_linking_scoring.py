"""Linking constants and EAP scores, against known transforms and an independent package."""

import numpy as np
import pytest

from consumer.irt.estimate import estimate_items
from consumer.irt.linking import LinkingError, link, mean_sigma, stocking_lord
from consumer.irt.model import ItemParameters
from consumer.irt.scoring import score_eap
from consumer.irt.simulate import simulate


def test_stocking_lord_recovers_an_exact_transform():
    rng = np.random.default_rng(1)
    new = ItemParameters(rng.lognormal(0, 0.3, 12), rng.normal(0, 1, 12), np.zeros(12))
    reference = new.on_scale(1.25, -0.4)
    constants = stocking_lord(reference, new)
    assert constants.slope == pytest.approx(1.25, abs=1e-6)
    assert constants.intercept == pytest.approx(-0.4, abs=1e-6)
    assert constants.method == "stocking-lord" and constants.n_anchors == 12


def test_stocking_lord_matches_mirt_equating_link():
    # Same anchors fed to mirt 1.2.0 (PyPI): mirt.equating.linking.link(...,
    # method="stocking_lord") gave A = 1.23910970798074, B = -0.37532814695424566.
    rng = np.random.default_rng(5)
    a, b = rng.lognormal(0, 0.3, 15), rng.normal(0, 1, 15)
    new = ItemParameters(a, b, np.zeros(15))
    reference = ItemParameters(a / 1.2 * np.exp(rng.normal(0, 0.1, 15)), 1.2 * b - 0.4 + rng.normal(0, 0.15, 15),
                               np.zeros(15))
    constants = link(reference, new)
    assert constants.slope == pytest.approx(1.2391097, abs=1e-6)
    assert constants.intercept == pytest.approx(-0.3753281, abs=1e-6)


def test_mean_sigma_by_hand():
    new = ItemParameters(np.ones(3), np.array([-1.0, 0.0, 1.0]), np.zeros(3))
    reference = ItemParameters(np.ones(3), np.array([-1.5, 0.5, 2.5]), np.zeros(3))
    constants = mean_sigma(reference, new)
    # sd ratio 2/1, then 0.5 - 2 * 0.
    assert (constants.slope, constants.intercept) == pytest.approx((2.0, 0.5))


def test_too_few_anchors_is_a_linking_error():
    one = ItemParameters(np.ones(1), np.zeros(1), np.zeros(1))
    with pytest.raises(LinkingError, match="at least 2"):
        link(one, one)


def test_linking_and_scoring_recover_a_shifted_and_stretched_old_scale():
    truth = simulate(8000, 300, 40, seed=21)
    fit = estimate_items(truth.responses)
    # The anchors' reference parameters sit on an old scale: theta_old = 0.8 theta + 0.6.
    anchors = np.arange(0, 300, 15)
    reference = truth.params.take(anchors).on_scale(0.8, 0.6)

    constants = link(reference, fit.params.take(anchors))
    assert constants.slope == pytest.approx(0.8, abs=0.05)
    assert constants.intercept == pytest.approx(0.6, abs=0.05)

    abilities = score_eap(truth.responses, fit.params, linking=constants)
    theta_old = 0.8 * truth.theta + 0.6
    assert abilities.scored.all()
    assert np.corrcoef(abilities.theta, theta_old)[0, 1] > 0.9
    # EAP shrinks towards the mean, but the errors match the reported SEs.
    rmse = np.sqrt(np.mean((abilities.theta - theta_old) ** 2))
    assert rmse == pytest.approx(np.sqrt(np.mean(abilities.se**2)), rel=0.1)
    linked = fit.params.on_scale(constants.slope, constants.intercept)
    assert np.sqrt(np.mean((linked.b - truth.params.on_scale(0.8, 0.6).b) ** 2)) < 0.15


def test_persons_with_no_estimated_items_are_not_scored():
    truth = simulate(100, 10, 3, seed=2)
    params = ItemParameters(truth.params.a.copy(), truth.params.b.copy(), truth.params.c)
    params.a[:] = np.nan  # nothing estimated
    abilities = score_eap(truth.responses, params)
    assert not abilities.scored.any() and np.isnan(abilities.theta).all()


def test_eap_by_brute_force_for_one_person():
    params = ItemParameters(np.array([1.0, 1.5, 0.7]), np.array([-0.5, 0.2, 1.0]), np.zeros(3))
    from consumer.irt.responses import Responses
    responses = Responses.from_triplets(np.zeros(3, int), np.arange(3), np.array([1, 0, 1]), 1, 3)
    abilities = score_eap(responses, params)
    grid = np.linspace(-6, 6, 20001)
    p = params.probability(grid)
    like = p[:, 0] * (1 - p[:, 1]) * p[:, 2] * np.exp(-grid**2 / 2)
    mean = (grid * like).sum() / like.sum()
    sd = np.sqrt(((grid - mean) ** 2 * like).sum() / like.sum())
    assert abilities.theta[0] == pytest.approx(mean, abs=1e-3)
    assert abilities.se[0] == pytest.approx(sd, abs=1e-3)
