"""Anchor candidates: well-measured items, spread over the scale, not chosen on estimation noise."""

from __future__ import annotations

import numpy as np

from consumer.anchors import AnchorCriteria, choose_anchor_candidates


def test_candidates_are_well_measured_and_spread_over_the_scale():
    rng = np.random.default_rng(0)
    n = 400
    ids = np.arange(n) + 1
    a, b = rng.lognormal(0, 0.4, n), rng.normal(0, 1.2, n)
    b_se = rng.uniform(0.05, 0.4, n)
    responses = rng.integers(50, 2000, n)
    chosen, ruled_out = choose_anchor_candidates(ids, a, b, b_se, responses, excluded={1, 2, 3},
                                                 criteria=AnchorCriteria(max_candidates=20))
    assert len(chosen) == 20 and not {1, 2, 3} & set(chosen)
    pick = chosen - 1
    assert np.all(responses[pick] >= 200) and np.all((a[pick] >= 0.5) & (a[pick] <= 2.5))
    assert np.all(b_se[pick] <= 0.25) and list(b[pick]) == sorted(b[pick])
    # Spread: the picks cover the eligible difficulties from end to end.
    eligible = (responses >= 200) & (a >= 0.5) & (a <= 2.5) & (b_se <= 0.25) & (np.abs(b) <= 3)
    eligible[:3] = False
    assert b[pick].min() <= np.quantile(b[eligible], 0.05) and b[pick].max() >= np.quantile(b[eligible], 0.95)
    assert ruled_out["already an anchor, flagged or not taggable"] == 3


def test_candidates_are_not_chosen_on_estimation_noise():
    # 2,000 items of slope 1 whose estimates scatter by 20% in log a. On equal answers an item's SE
    # of b is smallest where its slope came out high, so the smallest SE in each difficulty group
    # is the slope most overestimated (a winner's curse). The most answered item is not.
    rng = np.random.default_rng(8)
    n = 2000
    ids = np.arange(n) + 1
    a_hat, b = np.exp(rng.normal(0, 0.2, n)), rng.normal(0, 1, n)
    responses = rng.integers(300, 400, n)
    b_se = 3.0 / (a_hat * np.sqrt(responses))  # ~0.16 at a = 1
    criteria = AnchorCriteria(max_candidates=50)

    chosen, _ = choose_anchor_candidates(ids, a_hat, b, b_se, responses, excluded=set(), criteria=criteria)

    pick = chosen - 1
    eligible = np.flatnonzero((a_hat >= 0.5) & (a_hat <= 2.5) & (b_se <= 0.25) & (np.abs(b) <= 3))
    # The 50 picks' slopes are as noisy as any 50 eligible items', no higher.
    assert abs(np.log(a_hat[pick]).mean() - np.log(a_hat[eligible]).mean()) < 0.06
    groups = np.array_split(eligible[np.argsort(b[eligible], kind="stable")], 50)
    smallest_se = np.array([g[np.argmin(b_se[g])] for g in groups])
    assert np.log(a_hat[smallest_se]).mean() > 0.3  # what the old rule picked: slopes ~40% too high


def test_among_items_with_as_many_answers_the_first_one_is_taken():
    ids = np.arange(10) + 1
    chosen, _ = choose_anchor_candidates(ids, np.ones(10), np.linspace(-1, 1, 10), np.full(10, 0.1),
                                         np.array([300, 500, 500, 200, 900, 900, 400, 400, 250, 250]),
                                         excluded=set(), criteria=AnchorCriteria(max_candidates=5))
    assert list(chosen) == [2, 3, 5, 7, 9]
