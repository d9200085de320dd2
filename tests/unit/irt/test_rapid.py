"""Rapid guesses: the threshold rules against thresholds worked out by hand, and the filter on simulated guessing."""

import numpy as np
import pytest

from consumer.irt.estimate import estimate_items
from consumer.irt.rapid import RapidGuessRule, find_rapid_guesses, item_thresholds, leave_out
from consumer.irt.responses import Responses
from consumer.irt.simulate import add_rapid_guessing, simulate

NAN = float("nan")


def three_students() -> tuple[Responses, np.ndarray]:
    """Student 0 answers items 0, 1, 2; student 1 items 0, 1; student 2 items 0, 2."""
    person = np.array([0, 0, 0, 1, 1, 2, 2])
    item = np.array([0, 1, 2, 0, 1, 0, 2])
    correct = np.array([1, 0, 1, 1, 1, 0, 0])
    times = np.array([20_000, 200_000, NAN, 40_000, 300_000, 1_000, NAN])
    return Responses.from_triplets(person, item, correct, 3, 3), times


def test_the_normative_threshold_is_a_tenth_of_the_items_mean_time_capped_at_ten_seconds():
    responses, times = three_students()
    thresholds = item_thresholds(responses.item, times, 3, RapidGuessRule.parse("nt10"))
    # Item 0: mean (20,000 + 40,000 + 1,000) / 3 = 20,333.3 ms, a tenth 2,033.3 ms.
    # Item 1: mean 250,000 ms, a tenth 25,000 ms, capped at 10,000 ms. Item 2: no timed answer.
    assert thresholds[0] == pytest.approx(2_033.333, abs=1e-3)
    assert thresholds[1] == 10_000
    assert np.isnan(thresholds[2])


def test_nt_with_its_own_cap_and_a_fixed_floor():
    responses, times = three_students()
    nt20 = item_thresholds(responses.item, times, 3, RapidGuessRule.parse("NT20:30000"))
    assert nt20[0] == pytest.approx(4_066.667, abs=1e-3) and nt20[1] == 30_000  # 20% of 250 s = 50 s > 30 s
    fixed = item_thresholds(responses.item, times, 3, RapidGuessRule.parse("fixed:1500"))
    assert fixed[:2].tolist() == [1500, 1500] and np.isnan(fixed[2])


def test_only_answers_below_their_items_threshold_are_rapid_and_they_are_counted_per_item_and_student():
    responses, times = three_students()
    found = find_rapid_guesses(responses, times, RapidGuessRule.parse("nt10"))
    # Only student 2's 1,000 ms answer to item 0 lies below its threshold (2,033 ms); untimed answers never do.
    assert found.rapid.tolist() == [False, False, False, False, False, True, False]
    assert found.count == 1
    assert found.per_item.tolist() == [1, 0, 0] and found.timed_per_item.tolist() == [3, 2, 0]
    assert found.per_person.tolist() == [0, 0, 1] and found.timed_per_person.tolist() == [2, 2, 1]
    # Response-time effort: student 2 answered their one timed item rapidly.
    assert found.effort().tolist() == [1.0, 1.0, 0.0]


def test_leaving_out_keeps_the_other_answers_in_order_and_drops_students_left_with_none():
    responses, _ = three_students()
    drop = np.array([False, True, False, True, True, False, False])
    kept, persons = leave_out(responses, drop)
    assert persons.tolist() == [0, 2]  # student 1's two answers were both dropped
    assert kept.person_ptr.tolist() == [0, 2, 4]
    assert kept.item.tolist() == [0, 2, 0, 2] and kept.correct.tolist() == [1, 1, 0, 0]
    assert kept.n_items == 3


@pytest.mark.parametrize("text", ["", "nt", "nt0", "nt101", "nt10:0", "fixed", "fixed:0", "fixed:-5", "p10",
                                  "10%"])
def test_a_rule_that_is_not_one_is_refused(text):
    with pytest.raises(ValueError):
        RapidGuessRule.parse(text)


def test_a_rule_reads_back_as_it_is_written():
    for text in ("nt10:10000", "nt15:5000", "fixed:2500"):
        assert str(RapidGuessRule.parse(text)) == text
    assert str(RapidGuessRule.parse("nt10")) == "nt10:10000"


def rmse(estimate, truth):
    return float(np.sqrt(np.mean((estimate - truth) ** 2)))


def test_on_simulated_rapid_guessing_the_filter_finds_the_guesses_and_recovers_the_items_better():
    truth = simulate(3000, 40, 20, seed=3)
    guessing = add_rapid_guessing(truth, guessers=0.3, share=0.5, seed=4)
    found = find_rapid_guesses(guessing.responses, guessing.times_ms, RapidGuessRule.parse("nt10"))

    # Guesses take 0.3-2.5 s, answers around 30 s; the items' thresholds (a tenth of a mean that the guesses pull
    # down) lie between about 1.3 and 6 s: most guesses fall below theirs, almost no answer does.
    caught = found.rapid[guessing.rapid].mean()
    false_flags = found.rapid[~guessing.rapid].mean()
    assert caught > 0.9 and false_flags < 0.001

    with_guesses = estimate_items(guessing.responses, "2PL")
    filtered, _ = leave_out(guessing.responses, found.rapid)
    without = estimate_items(filtered, "2PL")
    no_guessing = estimate_items(truth.responses, "2PL")  # the same students answering every item in earnest
    a, b = truth.params.a, truth.params.b
    # Chance-level answers flatten the curves (a too low) and make the items look harder (b too high) ...
    assert np.mean(with_guesses.params.a - a) < -0.1 and np.mean(with_guesses.params.b - b) > 0.15
    # ... and without them the bias is gone, the error close to what the data without guessing give.
    assert abs(np.mean(without.params.a - a)) < 0.05 and abs(np.mean(without.params.b - b)) < 0.1
    assert rmse(without.params.a, a) < 0.5 * rmse(with_guesses.params.a, a)
    assert rmse(without.params.b, b) < 0.6 * rmse(with_guesses.params.b, b)
    assert rmse(without.params.a, a) < 1.4 * rmse(no_guessing.params.a, a)
    assert rmse(without.params.b, b) < 1.4 * rmse(no_guessing.params.b, b)
