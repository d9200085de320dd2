"""Linking constants, against known transforms and an independent package, and the scores they put on the old scale."""

import numpy as np
import pytest

from consumer.irt.estimate import estimate_items
from consumer.irt.linking import (LinkingError, haebara, link, mean_mean, mean_sigma, screen_drift,
                                  stocking_lord)
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


# The same anchors fed to mirt 1.2.0 (PyPI), mirt.equating.linking.link(..., method=...).
MIRT_CONSTANTS = {
    "stocking-lord": (1.23910970798074, -0.37532814695424566),
    "haebara": (1.2109881682785857, -0.38024444414996644),
    "mean-mean": (1.2525439935194884, -0.3670749118206741),
    "mean-sigma": (1.1497275843419088, -0.4131569933795456),
}


def noisy_anchors(seed=5, n=15):
    rng = np.random.default_rng(seed)
    a, b = rng.lognormal(0, 0.3, n), rng.normal(0, 1, n)
    new = ItemParameters(a, b, np.zeros(n))
    reference = ItemParameters(a / 1.2 * np.exp(rng.normal(0, 0.1, n)), 1.2 * b - 0.4 + rng.normal(0, 0.15, n),
                               np.zeros(n))
    return reference, new


@pytest.mark.parametrize("method", sorted(MIRT_CONSTANTS))
def test_every_method_matches_mirt_equating_link(method):
    reference, new = noisy_anchors()
    constants = link(reference, new, method)
    assert constants.method == method
    assert (constants.slope, constants.intercept) == pytest.approx(MIRT_CONSTANTS[method], abs=1e-6)


@pytest.mark.parametrize("linker", [stocking_lord, haebara, mean_mean, mean_sigma])
def test_every_method_recovers_an_exact_transform(linker):
    rng = np.random.default_rng(3)
    new = ItemParameters(rng.lognormal(0, 0.3, 10), rng.normal(0, 1, 10), np.zeros(10))
    constants = linker(new.on_scale(0.7, 1.1), new)
    assert (constants.slope, constants.intercept) == pytest.approx((0.7, 1.1), abs=1e-6)


def test_mean_mean_by_hand():
    new = ItemParameters(np.array([1.0, 2.0]), np.array([0.0, 1.0]), np.zeros(2))
    reference = ItemParameters(np.array([0.5, 1.0]), np.array([1.0, 3.0]), np.zeros(2))
    # slope = mean a_new / mean a_ref = 1.5 / 0.75; intercept = 2 - 2 * 0.5.
    assert (mean_mean(reference, new).slope, mean_mean(reference, new).intercept) == pytest.approx((2.0, 1.0))


def test_jackknife_standard_errors_of_the_constants():
    exact_new = ItemParameters(np.linspace(0.8, 1.6, 8), np.linspace(-2, 2, 8), np.zeros(8))
    exact = link(exact_new.on_scale(1.3, 0.2), exact_new, standard_errors=True)
    assert exact.slope_se == pytest.approx(0, abs=1e-6) and exact.intercept_se == pytest.approx(0, abs=1e-6)
    reference, new = noisy_anchors()
    noisy = link(reference, new, standard_errors=True)
    few = link(reference.take(np.arange(5)), new.take(np.arange(5)), standard_errors=True)
    assert 0 < noisy.slope_se < 0.2 and 0 < noisy.intercept_se < 0.2
    assert few.intercept_se > noisy.intercept_se  # fewer anchors, less certain constants


def test_drift_screening_finds_planted_drifting_anchors_and_keeps_the_clean_ones():
    rng = np.random.default_rng(8)
    n = 30
    new = ItemParameters(rng.lognormal(0, 0.3, n), rng.normal(0, 1, n), np.zeros(n))
    reference = new.on_scale(1.1, -0.3)
    b = reference.b + rng.normal(0, 0.05, n)  # estimation noise
    a = reference.a * np.exp(rng.normal(0, 0.03, n))
    b[[4, 17]] += [1.2, 0.9]  # items that got harder (re-worded, say)
    a[22] *= 2.5  # an item that now discriminates very differently
    drifted = ItemParameters(a, b, np.zeros(n))

    screen = screen_drift(drifted, new, threshold=3.0)

    assert set(screen.dropped) == {4, 17, 22}
    assert "difficulty drifted" in screen.dropped[4] and "discrimination drifted" in screen.dropped[22]
    assert screen.kept.sum() == n - 3
    assert screen.constants.slope == pytest.approx(1.1, abs=0.03)
    assert screen.constants.intercept == pytest.approx(-0.3, abs=0.03)
    assert screen.constants.slope_se is not None
    unscreened = link(drifted, new)
    assert abs(unscreened.intercept + 0.3) > abs(screen.constants.intercept + 0.3)


def test_anchors_drifting_every_which_way_are_reported_as_disagreeing():
    rng = np.random.default_rng(4)
    new = ItemParameters(rng.lognormal(0, 0.3, 12), rng.normal(0, 1, 12), np.zeros(12))
    reference = new.on_scale(1.0, 0.0)
    shifted = ItemParameters(reference.a, reference.b + rng.choice([-1.5, 1.5], 12) * rng.uniform(0.7, 1.3, 12),
                             reference.c)
    screen = screen_drift(shifted, new)
    assert "disagree with their reference values as a whole" in screen.disagreement
    clean = screen_drift(ItemParameters(reference.a, reference.b + rng.normal(0, 0.05, 12), reference.c), new)
    assert clean.disagreement == ""


def test_drift_screening_leaves_clean_anchors_alone():
    rng = np.random.default_rng(9)
    new = ItemParameters(rng.lognormal(0, 0.3, 25), rng.normal(0, 1, 25), np.zeros(25))
    reference = new.on_scale(0.9, 0.4)
    noisy = ItemParameters(reference.a * np.exp(rng.normal(0, 0.05, 25)), reference.b + rng.normal(0, 0.08, 25),
                           reference.c)
    assert screen_drift(noisy, new).dropped == {}
    assert screen_drift(noisy, new, threshold=0).kept.all()


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
    with pytest.raises(ValueError, match="unknown linking method 'equipercentile'"):
        link(one, one, "equipercentile")


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
