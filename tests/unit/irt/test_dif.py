"""The DIF screen against a hand-computed Mantel-Haenszel, the Python mirt port's dif(), and planted DIF."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from consumer.irt import dif
from consumer.irt.estimate import estimate_items
from tests.support.dif_data import dense, planted_dif


def test_mantel_haenszel_matches_the_2x2xk_sums_written_out():
    # One item, two strata. Stratum 1: reference 30 right / 10 wrong, focal 20 right / 20 wrong.
    # Stratum 2: reference 15 right / 5 wrong, focal 12 right / 18 wrong.
    cells = [  # (stratum, focal, correct, count)
        (0, 0, 1, 30), (0, 0, 0, 10), (0, 1, 1, 20), (0, 1, 0, 20),
        (1, 0, 1, 15), (1, 0, 0, 5), (1, 1, 1, 12), (1, 1, 0, 18)]
    stratum = np.concatenate([[k] * n for k, _, _, n in cells])
    focal = np.concatenate([[f] * n for _, f, _, n in cells]).astype(bool)
    correct = np.concatenate([[y] * n for _, _, y, n in cells])
    mh = dif.mantel_haenszel(np.zeros(stratum.size, int), correct, focal, stratum, n_items=1, n_strata=2)

    A, B, C, D = np.array([30, 15]), np.array([10, 5]), np.array([20, 12]), np.array([20, 18])
    N = A + B + C + D
    alpha = (30 * 20 / 80 + 15 * 18 / 50) / (10 * 20 / 80 + 5 * 12 / 50)
    expected_a = 40 * 50 / 80 + 20 * 27 / 50
    var_a = 40 * 40 * 50 * 30 / (80**2 * 79) + 20 * 30 * 27 * 23 / (50**2 * 49)
    chi2 = (abs(45 - expected_a) - 0.5) ** 2 / var_a
    R, S = A * D / N, B * C / N
    P, Q = (A + D) / N, (B + C) / N
    var_log = ((P * R).sum() / (2 * R.sum() ** 2) + (P * S + Q * R).sum() / (2 * R.sum() * S.sum())
               + (Q * S).sum() / (2 * S.sum() ** 2))
    assert mh.alpha[0] == pytest.approx(alpha)
    assert mh.delta[0] == pytest.approx(-2.35 * math.log(alpha))
    assert mh.chi2[0] == pytest.approx(chi2)
    assert mh.p_value[0] == pytest.approx(stats.chi2.sf(chi2, 1))
    assert mh.delta_se[0] == pytest.approx(2.35 * math.sqrt(var_log))
    # delta = -2.35 ln(4.16) = -3.35, significant, and (3.35 - 1) / SE > 1.645: C, against the focal group.
    assert mh.delta[0] < -1.5 and mh.ets[0] == "C"


@pytest.mark.parametrize(("delta", "se", "p", "expected"), [
    (-0.9, 0.1, 1e-6, "A"),   # small, however significant
    (-2.0, 0.5, 0.2, "A"),    # large, not significant
    (-1.2, 0.2, 1e-4, "B"),   # between 1 and 1.5
    (1.6, 0.5, 1e-4, "B"),    # past 1.5 but not significantly past 1 ((1.6 - 1) / 0.5 < 1.645)
    (1.6, 0.2, 1e-4, "C"),
    (float("nan"), 0.2, 0.01, ""),
])
def test_ets_classes_follow_zwick_2012(delta, se, p, expected):
    assert dif.ets_class(np.array([delta]), np.array([se]), np.array([p]))[0] == expected


@pytest.fixture(scope="module")
def screened():
    data = planted_dif(1000, seed=1)
    pooled = estimate_items(data.responses, "2PL")
    result = dif.screen(data.responses, data.group, ["reference", "focal"], pooled.params, "2PL")
    return data, result


def test_the_largest_group_is_the_reference_unless_one_is_named():
    group = np.array([0, 1, 1, 2, 1, -1])
    assert dif.choose_reference(["a", "b", "c"], group) == 1
    assert dif.choose_reference(["a", "b", "c"], group, "c") == 2
    with pytest.raises(ValueError, match="'d' is not among"):
        dif.choose_reference(["a", "b", "c"], group, "d")


def test_agrees_with_mirt_dif_on_the_same_data_and_anchors(screened):
    # mirt.dif() is compute_dif() returned as a DataFrame (which needs pandas); the numbers are compute_dif's.
    compute_dif = pytest.importorskip("mirt.diagnostics.dif").compute_dif
    data, result = screened
    comparison = result.comparisons[0]
    matrix = dense(data.responses)
    labels = np.where(data.group == 0, "reference", "focal")
    anchors = [int(j) for j in comparison.anchors]
    studied = np.setdiff1d(np.arange(data.responses.n_items), anchors)
    options = dict(model="2PL", focal_group="focal", anchors=anchors, n_quadpts=61)

    wald = compute_dif(matrix, labels, method="wald", **options)
    # The same separate calibrations, linked by Stocking-Lord over the same anchors.
    assert wald["linking_constants"][0] == pytest.approx(comparison.focal_sd, abs=2e-3)
    assert wald["linking_constants"][1] == pytest.approx(comparison.focal_mean, abs=2e-3)
    b_gap = comparison.focal_params.b - comparison.reference_params.b
    np.testing.assert_allclose(b_gap[studied], wald["effect_size"][studied], atol=5e-3)

    lord = compute_dif(matrix, labels, method="lord", **options)  # Lord's chi-square: mirt's other name for it
    np.testing.assert_allclose(b_gap[studied], lord["effect_size"][studied], atol=5e-3)

    raju = compute_dif(matrix, labels, method="raju", **options)
    # mirt's areas are reference minus focal; ours focal minus reference.
    np.testing.assert_allclose(comparison.effect.unsigned_area[studied], raju["statistic"][studied], atol=5e-3)
    np.testing.assert_allclose(-comparison.effect.signed_area[studied], raju["effect_size"][studied], atol=5e-3)

    # The likelihood ratio of the multiple-group model (focal mean and variance free, anchors equal):
    # asymptotically the Wald test's chi-square; ours uses the full covariance of (a, b), which mirt's
    # Wald (no covariances) does not.
    lr = compute_dif(matrix, labels, method="likelihood_ratio", **options)
    for j in studied:
        assert comparison.wald_chi2[j] == pytest.approx(lr["statistic"][j], rel=0.35), f"item {j}"
        assert (comparison.wald_p[j] < 0.01) == (lr["p_value"][j] < 0.01), f"item {j}"


def test_planted_dif_is_flagged_and_clean_items_mostly_are_not(screened):
    data, result = screened
    comparison = result.comparisons[0]
    assert result.reference == "reference" and comparison.focal == "focal"
    assert comparison.flagged[data.planted].all(), comparison.why
    assert comparison.flagged[~data.planted].mean() <= 0.1, comparison.why
    # Uniform DIF against the focal group: MH delta and the signed difference are negative (harder for them).
    assert (comparison.mh.delta[[0, 1]] < -1).all() and (comparison.effect.signed[[0, 1]] < -0.05).all()
    # The slope difference (item 2) shows in the Wald test whatever MH says.
    assert comparison.wald_p_adjusted[2] < 0.05 and comparison.effect.rmsd[2] >= dif.RMSD_FLAG
    # Impact is not DIF: the focal group sits 0.5 below on the reference scale.
    assert comparison.focal_mean == pytest.approx(-0.5, abs=0.15)
    assert comparison.purified and not set(np.flatnonzero(data.planted)) & set(comparison.anchors.tolist())


def test_without_dif_few_items_are_flagged():
    data = planted_dif(1000, uniform=(), non_uniform=(), seed=7)
    pooled = estimate_items(data.responses, "2PL")
    comparison = dif.screen(data.responses, data.group, ["r", "f"], pooled.params, "2PL").comparisons[0]
    assert comparison.flagged.sum() <= 2, comparison.why
    assert (comparison.mh.ets != "C").all()


def test_a_focal_group_too_small_to_calibrate_is_skipped_with_why():
    data = planted_dif(500, seed=3)
    group = data.group.copy()
    group[-495:] = 2  # leaves five students in group 1
    pooled = estimate_items(data.responses, "2PL")
    result = dif.screen(data.responses, group, ["r", "small", "other"], pooled.params, "2PL")
    assert "small" in result.skipped and "at least" in result.skipped["small"]
    assert [c.focal for c in result.comparisons] == ["other"]


def test_the_1pl_tests_b_alone_and_finds_uniform_dif():
    data = planted_dif(1500, non_uniform=(), seed=2)
    pooled = estimate_items(data.responses, "1PL")
    comparison = dif.screen(data.responses, data.group, ["r", "f"], pooled.params, "1PL").comparisons[0]
    assert set(comparison.wald_df[comparison.tested]) == {1.0}
    assert comparison.flagged[[0, 1]].all() and comparison.flagged[2:].mean() <= 0.1, comparison.why
