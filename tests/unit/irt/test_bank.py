"""The bank's rules as plain functions: drift watch, suspension, promotion gates, a recalibration's impact."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.irt import bank, linking
from consumer.irt.model import ItemParameters


def noisy_estimates(n: int, *, slope: float = 1.2, intercept: float = 0.4, se: float = 0.08, seed: int = 0,
                    drift: dict[int, float] | None = None):
    """Bank values, and free estimates of them on a run's own scale (theta_bank = slope * theta + intercept)."""
    rng = np.random.default_rng(seed)
    a = rng.lognormal(0.0, 0.25, n)
    b = rng.normal(0.0, 1.0, n)
    values = ItemParameters(a, b, np.zeros(n))
    true_b = b.copy()
    for j, shift in (drift or {}).items():
        true_b[j] += shift
    new_b = (true_b - intercept) / slope + rng.normal(0.0, se, n)
    new_a = a * slope * np.exp(rng.normal(0.0, se, n))
    errors = linking.AnchorErrors(new_b=np.full(n, se), new_a=np.full(n, se) * new_a,
                                  reference_b=np.full(n, 0.05), reference_a=np.full(n, 0.05) * a)
    return values, ItemParameters(new_a, new_b, np.zeros(n)), errors


def test_the_drift_watch_flags_the_items_that_moved_and_links_on_the_rest():
    values, free, errors = noisy_estimates(300, drift={3: 0.8, 150: -0.9})

    drift = bank.watch_drift(values, free, errors)

    assert set(np.flatnonzero(drift.flagged)) == {3, 150}
    assert drift.constants.slope == pytest.approx(1.2, abs=0.03)
    assert drift.constants.intercept == pytest.approx(0.4, abs=0.03)
    assert abs(drift.z_b[3]) > 3 and abs(drift.z_b[150]) > 3
    assert "difficulty drifted" in drift.reasons[3]


def test_the_drift_watch_flags_at_most_one_item_in_300_by_chance():
    false_flags = [int(bank.watch_drift(*noisy_estimates(300, seed=seed)).flagged.sum()) for seed in range(10)]
    assert sum(false_flags) <= 10, false_flags


def test_a_shift_too_small_to_matter_is_not_drift_however_precise():
    values, free, errors = noisy_estimates(300, se=0.01, drift={5: 0.2})
    drift = bank.watch_drift(values, free, errors)
    assert not drift.flagged[5]


def test_an_item_is_suspended_only_when_flagged_in_enough_of_its_last_runs():
    flagged_now = np.array([True, True, False, True])
    streak_before = np.array([0, 1, 3, 2])
    assert bank.suspend(flagged_now, streak_before, runs_to_suspend=2).tolist() == [False, True, False, True]
    assert bank.suspend(flagged_now, streak_before, runs_to_suspend=1).tolist() == [True, True, False, True]


GATES = bank.PromotionGates(min_answers=300, max_b_se=0.25, max_rmsd=0.1, runs=2)


@pytest.mark.parametrize("item, failure", [
    (bank.PretestItem(0.3, 0.1, 150, 0.02, ((0.35, 0.1),)), "150 answers"),
    (bank.PretestItem(0.3, 0.4, 500, 0.02, ((0.35, 0.1),)), "SE of b 0.400"),
    (bank.PretestItem(0.3, 0.1, 500, 0.2, ((0.35, 0.1),)), "RMSD 0.200"),
    (bank.PretestItem(0.3, 0.1, 500, 0.02), "estimated in 1 run(s) in a row"),
    (bank.PretestItem(1.3, 0.1, 500, 0.02, ((0.3, 0.1),)), "b moved 0.300 -> 1.300"),
])
def test_a_pretest_item_that_fails_a_gate_says_which(item, failure):
    failed = bank.promotion_gates(item, GATES)
    assert len(failed) == 1 and failure in failed[0]


def test_a_pretest_item_that_passes_every_gate_is_promoted():
    assert bank.promotion_gates(bank.PretestItem(0.3, 0.1, 500, 0.02, ((0.35, 0.1),)), GATES) == []


def test_the_impact_of_a_recalibration_counts_students_moved_past_their_standard_error():
    theta_bank = np.array([0.0, 1.0, -1.0, np.nan])
    se = np.array([0.3, 0.3, 0.3, 0.3])
    theta_new = np.array([0.1, 1.5, -1.0, 0.2])

    impact = bank.score_impact(theta_bank, se, theta_new)

    assert (impact.n_scored, impact.n_moved) == (3, 1)
    assert impact.max_shift == pytest.approx(0.5) and impact.mean_shift == pytest.approx(0.2)


def test_the_drift_watch_compares_the_last_runs_with_the_items_baseline_and_keeps_a_drift_out_of_it():
    values, free, errors = noisy_estimates(300, se=0.12, seed=4, drift={10: 0.5})

    def earlier(b_latest: float, j: int, flagged: tuple = (False, False, False)) -> bank.EarlierEstimates:
        """Three earlier runs' estimates of item j on the bank's scale, newest first."""
        return bank.EarlierEstimates(a=(values.a[j],) * 3, b=(b_latest, values.b[j], values.b[j]), a_se=(0.1,) * 3,
                                     b_se=(0.12,) * 3, flagged=flagged)

    histories = [earlier(values.b[j], j) for j in range(300)]
    # Item 10 drifted a run ago and was flagged then: its last estimate is 0.5 higher, and stays out of its baseline.
    histories[10] = earlier(values.b[10] + 0.5, 10, flagged=(True, False, False))

    drift = bank.watch_drift(values, free, errors, earlier=histories, window=2)

    assert drift.flagged[10], drift.z_b[10]
    assert drift.flagged.sum() <= 2
    recent, older = histories[10].split(1)
    assert recent.b == (values.b[10] + 0.5,) and older.b == (values.b[10], values.b[10])
    # Flagged a run ago but outside the window now: that run is left out of the baseline, not counted as steady.
    assert histories[10].split(0)[1].b == (values.b[10], values.b[10])


def test_a_discrimination_that_doubled_is_flagged_and_a_merely_noisy_one_is_not():
    values, free, errors = noisy_estimates(300, se=0.05, seed=6)
    a = free.a.copy()
    a[20] *= 2.0  # doubled: far past the margin a discrimination flag asks for
    a[40] *= 1.25  # within its noise band's reach, and under the 1.5 ratio that matters
    drift = bank.watch_drift(values, ItemParameters(a, free.b, free.c), errors)

    assert drift.flagged[20] and "discrimination drifted" in drift.reasons[20]
    assert not drift.flagged[40]
    assert drift.z_a[20] > 3 + bank.A_DRIFT_MARGIN
