"""The review page's derived numbers, each held against something computed another way."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.irt import itemfit
from consumer.irt.expected import FinalEStep
from consumer.irt.model import ItemParameters
from consumer.irt.quadrature import Quadrature
from consumer.irt.scoring import score_eap
from consumer.irt.simulate import simulate
from consumer.review import statistics as stats


def test_test_information_is_the_fisher_information_of_the_curves_by_numerical_derivative():
    items = ItemParameters(np.array([0.6, 1.4, 2.2, 1.0]), np.array([-1.5, 0.0, 0.8, 2.0]),
                           np.array([0.0, 0.2, 0.1, 0.25]))
    theta = np.linspace(-4, 4, 33)
    h = 1e-5
    p = items.probability(theta)
    slope = (items.probability(theta + h) - items.probability(theta - h)) / (2 * h)
    fisher = (slope**2 / (p * (1 - p))).sum(axis=1)  # I(theta) = sum_j P_j'^2 / (P_j Q_j) for binary items
    assert np.allclose(stats.test_information(items, theta, chunk=3), fisher, rtol=1e-6)
    assert np.allclose(stats.conditional_sem(fisher), 1 / np.sqrt(fisher))


def test_items_without_parameters_add_no_information():
    items = ItemParameters(np.array([1.0, np.nan]), np.array([0.0, np.nan]), np.zeros(2))
    assert stats.test_information(items, np.array([0.0]))[0] == pytest.approx(0.25)


def test_both_reliabilities_match_the_squared_correlation_with_the_true_abilities_in_a_simulation():
    # 20,000 students answer the same 25 items; the truth is known, so reliability is corr(EAP, theta)^2.
    data = simulate(20_000, 25, 25, seed=11)
    quadrature = Quadrature.normal(61)
    scores = score_eap(data.responses, data.params, quadrature=quadrature)
    truth = np.corrcoef(scores.theta, data.theta)[0, 1] ** 2
    assert 0.8 < truth < 0.95  # a test worth measuring
    assert stats.empirical_reliability(scores.theta, scores.se) == pytest.approx(truth, abs=0.01)
    information = stats.test_information(data.params, quadrature.nodes)
    assert stats.marginal_reliability(quadrature.nodes, information, 0.0, 1.0) == pytest.approx(truth, abs=0.03)


def test_robust_z_of_the_anchors_drift_by_hand():
    # Five anchors, reference b all 0; new b on the old scale 0.1, -0.2, 0, 0.3 and 2.0 (the last one dropped),
    # each with SE 0.1: standardized shifts 1, -2, 0, 3, 20. Over the four kept: median 0.5, absolute
    # deviations 0.5, 2.5, 0.5, 2.5 with median 1.5, so the spread is 1.4826 * 1.5 = 2.2239.
    reference = ItemParameters(np.ones(5), np.zeros(5), np.zeros(5))
    linked = ItemParameters(np.array([1.0, 1.0, 1.0, 1.0, 2.0]), np.array([0.1, -0.2, 0.0, 0.3, 2.0]), np.zeros(5))
    kept = np.array([True, True, True, True, False])
    drift = stats.anchor_drift(reference, linked, kept, linked_b_se=np.full(5, 0.1), linked_a_se=np.full(5, 0.1))
    assert drift.standardized
    assert drift.b_z == pytest.approx([(1 - 0.5) / 2.2239, (-2 - 0.5) / 2.2239, -0.5 / 2.2239, 2.5 / 2.2239,
                                       19.5 / 2.2239], rel=1e-4)
    # log a: shifts 0, 0, 0, 0 and log 2 with SEs 0.1 / a = 0.1, 0.1, 0.1, 0.1, 0.05; the kept ones agree
    # exactly, so the spread is floored at one standard error: z = log(2) / 0.05 for the last.
    assert drift.log_a_z == pytest.approx([0, 0, 0, 0, np.log(2) / 0.05])
    assert drift.b_shift_se == pytest.approx([0.1] * 5)


def test_reference_standard_errors_widen_the_shift_and_without_new_ones_raw_shifts_are_used():
    reference = ItemParameters(np.ones(4), np.zeros(4), np.zeros(4))
    linked = ItemParameters(np.ones(4), np.array([0.0, 0.1, -0.1, 0.5]), np.zeros(4))
    kept = np.array([True, True, True, True])
    widened = stats.anchor_drift(reference, linked, kept, np.full(4, 0.3), np.full(4, 0.1),
                                 reference_b_se=np.full(4, 0.4))
    assert widened.b_shift_se == pytest.approx([0.5] * 4)  # sqrt(0.3^2 + 0.4^2)
    raw = stats.anchor_drift(reference, linked, kept, np.full(4, np.nan), np.full(4, np.nan))
    # Raw shifts 0, 0.1, -0.1, 0.5: median 0.05, deviations 0.05, 0.05, 0.15, 0.45 (median 0.1), spread 0.14826.
    assert not raw.standardized
    assert raw.b_z == pytest.approx([-0.05 / 0.14826, 0.05 / 0.14826, -0.15 / 0.14826, 0.45 / 0.14826], rel=1e-4)


def test_item_movement_is_the_change_over_the_standard_error_of_the_difference():
    now = ItemParameters(np.array([1.2, 0.8]), np.array([0.3, -1.0]), np.zeros(2))
    before = ItemParameters(np.array([1.0, 0.8]), np.array([0.0, -1.0]), np.zeros(2))
    moved = stats.item_movement(now, np.array([0.1, 0.1]), np.array([0.12, 0.08]),
                                before, np.array([0.2, 0.1]), np.array([0.1, 0.08]))
    assert moved.b_change == pytest.approx([0.3, 0.0])
    assert moved.b_z[0] == pytest.approx(0.3 / np.sqrt(0.1**2 + 0.2**2))
    # log a: log(1.2 / 1.0) over sqrt((0.12 / 1.2)^2 + (0.1 / 1.0)^2) = sqrt(0.02)
    assert moved.log_a_z[0] == pytest.approx(np.log(1.2) / np.sqrt(0.02))
    assert moved.b_z[1] == 0 and moved.log_a_z[1] == 0


def test_node_proportions_follow_an_items_true_curve_and_give_back_its_rmsd():
    # 30 well-behaved 2PL items and one whose true curve is a step the 2PL cannot follow.
    data = simulate(20_000, 31, 31, seed=5)
    step = lambda theta: np.where(theta < 0.5, 0.2, 0.9)  # noqa: E731
    hit = data.responses.item == 30
    person = data.responses.person_index()[hit]
    data.responses.correct[hit] = (np.random.default_rng(1).random(hit.sum()) < step(data.theta[person]))
    params = ItemParameters(data.params.a.copy(), data.params.b.copy(), data.params.c.copy())
    params.a[30], params.b[30] = 1.0, 0.5  # a 2PL through the step's middle
    final = FinalEStep.at(data.responses, params)
    curves = itemfit.node_proportions(final, np.array([30, 0]))
    well_measured = curves.answered[0] > 500
    away = well_measured & (np.abs(curves.nodes - 0.5) > 0.85)  # away from the step, which posteriors blur
    assert away.sum() >= 6
    assert np.allclose(curves.observed[0][away], step(curves.nodes[away]), atol=0.05)
    assert np.allclose(curves.expected[0], params.take(np.array([30])).probability(curves.nodes)[:, 0])
    # RMSD from the node proportions, as itemfit defines it
    weights = curves.answered / curves.answered.sum(axis=1, keepdims=True)
    by_hand = np.sqrt((weights * (curves.observed - curves.expected) ** 2).sum(axis=1))
    assert by_hand == pytest.approx(itemfit.rmsd(data.responses, params, final=final)[[30, 0]])


def test_misfit_curves_keep_the_worst_items_first_and_no_more_than_the_cap():
    data = simulate(3_000, 12, 12, seed=2)
    final = FinalEStep.at(data.responses, data.params)
    rmsd = np.array([0.01, 0.3, 0.2, np.nan, 0.25, 0.13, 0.02, 0.5, 0.01, 0.01, 0.01, 0.01])
    kept = itemfit.misfit_curves(final, rmsd, threshold=0.12, limit=3)
    assert [c["item"] for c in kept] == [7, 1, 4]
    assert all(min(c["answers"]) >= 1.0 and len(c["theta"]) == len(c["observed"]) == len(c["expected"])
               for c in kept)
    assert itemfit.misfit_curves(final, rmsd, threshold=0.9) == []
