"""The simulated weekly cohorts (``simulate_weeks``): the truth moves as configured, new items come, drift is planted."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.irt.simulate import simulate_weeks

DESIGN = dict(students=2000, items=60, answers=12, new_items=8, new_answers=2, weeks=4, seed=3)


def answers_per_item(week) -> np.ndarray:
    return np.bincount(week.responses.item, minlength=week.responses.n_items)


def test_the_population_moves_by_the_configured_growth_from_a_base_week_of_n01():
    weeks = simulate_weeks(**DESIGN, mean_growth=0.1, sd_growth=0.05)

    assert [w.index for w in weeks] == [0, 1, 2, 3, 4]
    assert [w.mean for w in weeks] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert [w.sd for w in weeks] == pytest.approx([1.0, 1.05, 1.1, 1.15, 1.2])
    for week in weeks:  # the cohort is drawn from that population (2000 students: within sampling error)
        assert week.theta.size == 2000
        assert week.theta.mean() == pytest.approx(week.mean, abs=0.08)
        assert week.theta.std() == pytest.approx(week.sd, abs=0.06)


def test_a_negative_sd_growth_shrinks_the_population_and_one_that_leaves_no_spread_is_refused():
    weeks = simulate_weeks(**DESIGN, sd_growth=-0.05)
    assert weeks[-1].sd == pytest.approx(0.8) and weeks[-1].theta.std() < 0.9
    with pytest.raises(ValueError, match="no spread"):
        simulate_weeks(**DESIGN, sd_growth=-0.25)


def test_each_week_brings_its_own_new_items_answered_that_week_only():
    weeks = simulate_weeks(**DESIGN)
    base = weeks[0]
    assert base.new_items.size == 0
    assert answers_per_item(base)[60:].sum() == 0, "the base week answers operational items only"
    seen = set()
    for week in weeks[1:]:
        assert week.new_items.size == 8 and not seen & set(week.new_items.tolist())
        seen |= set(week.new_items.tolist())
        counts = answers_per_item(week)
        assert np.all(counts[week.new_items] > 0)
        others = np.setdiff1d(np.arange(60, week.responses.n_items), week.new_items)
        assert counts[others].sum() == 0, "another week's new items were answered"
    assert seen == set(range(60, 60 + 4 * 8))


def test_every_student_answers_the_configured_number_of_distinct_items():
    for week in simulate_weeks(**DESIGN):
        r = week.responses
        assert r.n_persons == 2000 and np.all(np.diff(r.person_ptr) == 12)
        by_student = r.item.reshape(2000, 12)
        assert all(np.unique(row).size == 12 for row in by_student[:200])
        new = np.isin(by_student, week.new_items).sum(axis=1)
        assert np.all(new == (2 if week.index else 0)), "each student answers new_answers of the week's new items"


def test_drift_is_planted_in_the_items_asked_from_the_week_asked_and_moves_only_their_b():
    weeks = simulate_weeks(**DESIGN, drifting=(4, 17), drift_b=0.5, drift_from=2)
    base = weeks[0].params
    for week in weeks:
        shift = week.params.b - base.b
        expected = np.zeros_like(shift)
        if week.index >= 2:
            expected[[4, 17]] = 0.5
        assert shift == pytest.approx(expected), f"week {week.index}"
        assert np.array_equal(week.params.a, base.a)
        assert week.drifting.tolist() == ([4, 17] if week.index >= 2 else [])


def test_drifting_items_picked_at_random_are_operational_and_the_answers_follow_the_drift():
    weeks = simulate_weeks(students=20000, items=40, answers=20, new_items=0, new_answers=0, weeks=1,
                           mean_growth=0.0, sd_growth=0.0, drifting=2, drift_b=1.5, drift_from=1, seed=5)
    planted = weeks[1].drifting
    assert planted.size == 2 and np.all(planted < 40)

    def proportion_correct(week):
        right = np.bincount(week.responses.item, weights=week.responses.correct, minlength=40)
        return right / answers_per_item(week)[:40]

    drop = proportion_correct(weeks[0]) - proportion_correct(weeks[1])
    steady = np.setdiff1d(np.arange(40), planted)
    assert np.all(drop[planted] > 0.15) and np.all(np.abs(drop[steady]) < 0.05)


def test_the_same_seed_gives_the_same_weeks():
    one, two = simulate_weeks(**DESIGN), simulate_weeks(**DESIGN)
    for x, y in zip(one, two):
        assert np.array_equal(x.theta, y.theta) and np.array_equal(x.responses.correct, y.responses.correct)
        assert np.array_equal(x.params.b, y.params.b)
