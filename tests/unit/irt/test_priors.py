"""Item priors: where they sit, that they leave the scale to the data, and when a run uses them."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.irt import linking
from consumer.irt.estimate import estimate_items
from consumer.irt.model import ItemParameters
from consumer.irt.priors import NO_PRIORS, Priors, choose, log_prior
from consumer.irt.simulate import simulate


def test_the_prior_on_a_has_its_mode_at_exp_log_a_mode_and_the_kernels_form_agrees():
    priors = Priors(on_a_b=True, log_a_mode=0.1, empirical=False)
    a = np.linspace(0.5, 2.0, 30001)
    d = -priors.b_mean * a  # every b at the prior's mean: only the prior on a varies
    assert a[np.argmax(log_prior(a, d, None, priors))] == pytest.approx(np.exp(0.1), abs=1e-4)
    # The M-step kernels take the lognormal density in a, -log a - (log a - m)^2 / (2 s^2), with
    # m = a_meanlog: the same function up to a constant, so the same mode (not exp(m - s^2) = 0.78 at m = 0).
    lognormal = -np.log(a) - (np.log(a) - priors.a_meanlog) ** 2 / (2 * priors.a_sdlog**2)
    difference = lognormal - log_prior(a, d, None, priors)
    assert np.ptp(difference) < 1e-9
    assert Priors(on_a_b=True, empirical=False).log_a_mode == 0.0  # fixed priors: mode a = 1, not 0.78


def test_empirical_priors_follow_the_items_when_the_scale_changes_and_their_total_does_not():
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(0.1, 0.3, 300), rng.normal(0.2, 1.1, 300)
    here = Priors(on_a_b=True).at(a, b)
    for unit, origin in ((1.1, 0.3), (0.9, -0.2), (1.5, 0.0)):
        # theta -> unit * theta + origin: a -> a / unit, b -> unit * b + origin
        there = Priors(on_a_b=True).at(a / unit, unit * b + origin)
        assert there.log_a_mode == pytest.approx(here.log_a_mode - np.log(unit))
        assert there.b_mean == pytest.approx(unit * here.b_mean + origin)
        assert there.b_sd == pytest.approx(unit * here.b_sd)
        total = log_prior(a, -a * b, None, here).sum()
        moved = log_prior(a / unit, -(a / unit) * (unit * b + origin), None, there).sum()
        assert moved == pytest.approx(total), "the items' log prior must not depend on the unit or origin"
    # The mode of a sits at the items' centre, a little below their geometric mean.
    assert np.exp(here.log_a_mode) < np.exp(np.log(a).mean()) and here.log_a_mode > np.log(a).mean() - 0.15
    assert not here.empirical and here.at(a * 2, b) == here  # resolved priors stay where they are


def thin_link(priors: Priors, slope: float, intercept: float, seed: int) -> linking.LinkingConstants:
    """Stocking-Lord through 50 anchors with their true parameters, after a 2PL fit on ~200 answers per item.

    The bank's items sit on the old scale; this window's population is N(intercept, slope^2) there.
    """
    rng = np.random.default_rng(seed)
    old = ItemParameters(rng.lognormal(0, 0.3, 600), rng.normal(0, 1, 600), np.zeros(600))
    truth = old.on_scale(1 / slope, -intercept / slope)  # the same items on the run's own N(0, 1) scale
    data = simulate(3_000, 600, 40, seed=seed + 1, params=truth)
    fit = estimate_items(data.responses, "2PL", priors=priors)
    anchors = np.argsort(old.b)[6::12]  # 50 anchors spread over the difficulties, chosen on true values
    anchors = anchors[fit.estimated[anchors]]
    return linking.link(old.take(anchors), fit.params.take(anchors), standard_errors=True)


@pytest.mark.parametrize("slope, intercept", [(1.1, 0.3), (0.9, -0.2)])
def test_a_link_through_true_anchors_on_thin_data_recovers_the_slope_under_the_default_priors(slope, intercept):
    data = simulate(3_000, 600, 40, seed=1)
    chosen = choose(data.responses, "2PL", "auto", 20)
    assert chosen.used and chosen.priors.empirical  # ~200 answers per item: the default run uses priors

    found = thin_link(chosen.priors, slope, intercept, seed=11)

    assert abs(found.slope - slope) < 3 * found.slope_se, (found.slope, found.slope_se)
    assert abs(found.intercept - intercept) < 3 * found.intercept_se, (found.intercept, found.intercept_se)


def test_the_old_fixed_priors_fail_that_check():
    # R mirt's lognormal(0, 0.5) density in a (mode 0.78) read the slope ~10% low (issue 17): the check has teeth.
    old = Priors(on_a_b=True, log_a_mode=-0.25, empirical=False)
    found = thin_link(old, 1.1, 0.3, seed=11)
    assert found.slope < 1.1 - 3 * found.slope_se


def test_choose_mirrors_the_setting():
    thin = simulate(2_000, 400, 20, seed=2).responses  # 100 answers per item
    thick = simulate(6_000, 20, 10, seed=2).responses  # 3,000 per item
    assert choose(thin, "2PL", "auto", 20).used and not choose(thick, "2PL", "auto", 20).used
    assert choose(thin, "2PL", "auto", 20).why == "auto: the median item has 100 answers, fewer than 500"
    assert choose(thick, "3PL", "true", 20).used and choose(thick, "3PL", "true", 20).why == "MIRT_ITEM_PRIORS=true"
    assert not choose(thin, "2PL", "false", 20).used and choose(thin, "2PL", "false", 20).priors == NO_PRIORS
    assert not choose(thin, "1PL", "auto", 20).used and not choose(thin, "1PL", "true", 20).used
    with pytest.raises(ValueError, match="MIRT_ITEM_PRIORS"):
        choose(thin, "2PL", "sometimes", 20)
