"""Rapid-guess filtering in a run on a real PostgreSQL: which answers are left out, how they are counted."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest

from consumer.db import platform, queries
from consumer.irt.simulate import add_rapid_guessing, simulate
from consumer.run import CalibrationRequest, calibrate
from consumer.scope import WHOLE_BANK
from consumer.settings import Settings

from tests.support.database import rows
from tests.support.platform_data import AS_OF, FIRST_QUESTION_ID, load_timed_simulation
from tests.support.review_pages import page_of, section
from tests.support.runs import REQUEST

TIMED = Settings.load({"MIRT_RESPONSE_TIME_COLUMN": "time_spent_ms"})

# The rule NT10 capped at 10 s, worked out by PostgreSQL on the first answers: the reference the run must match.
EXPECTED_BY_ITEM = """
WITH firsts AS (SELECT DISTINCT ON (student_id, question_id) question_id, time_spent_ms FROM attempt
                 ORDER BY student_id, question_id, completed_at),
     thresholds AS (SELECT question_id, least(0.1 * avg(time_spent_ms), 10000) AS ms FROM firsts
                     WHERE time_spent_ms > 0 GROUP BY question_id)
SELECT f.question_id, count(*) FROM firsts f JOIN thresholds t USING (question_id)
 WHERE f.time_spent_ms < t.ms GROUP BY f.question_id"""


@pytest.fixture
def guessing():
    truth = simulate(2000, 40, 20, seed=21)
    return truth, add_rapid_guessing(truth, guessers=0.3, share=0.5, seed=22)


def test_a_run_with_the_time_column_leaves_the_rapid_guesses_out_and_counts_them(engine, guessing):
    truth, data = guessing
    with engine.begin() as conn:
        load_timed_simulation(conn, dataclasses.replace(truth, responses=data.responses), data.times_ms)
    expected = {str(q): n for q, n in rows(engine, EXPECTED_BY_ITEM)}

    plain = calibrate(engine, Settings.load({}), REQUEST)
    plain_items = rows(engine, "SELECT item_id, params FROM mirt_item_params ORDER BY item_id")
    filtered = calibrate(engine, TIMED, CalibrationRequest(request_id="req-2", requested_by="tests", as_of=AS_OF))

    assert plain.status == filtered.status == "succeeded", filtered.error
    assert "rapid_guess" not in plain.fit and "rapid_guesses" not in plain.counts
    record = filtered.fit["rapid_guess"]
    assert record["by_item"] == expected
    assert filtered.counts["rapid_guesses"] == record["rapid"] == sum(expected.values())
    assert filtered.counts["observations"] == data.responses.n_obs - record["rapid"]
    assert record["column"] == "time_spent_ms" and record["rule"] == "nt10:10000"
    # Most planted guesses are found, hardly any earnest answer is taken for one.
    assert 0.9 * data.rapid.sum() < record["rapid"] < data.rapid.sum() + 0.001 * data.responses.n_obs
    assert record["top_items"][0]["rapid"] == max(expected.values())
    assert sum(record["student_share"]["students"]) == 2000
    assert record["students_with_rapid"] <= data.guessers.size
    # The run record keeps it, and the items are recovered better than by the run that kept the guesses.
    (stored,) = rows(engine, "SELECT summary, fit_stats, model_spec FROM mirt_fit_meta WHERE request_id = 'req-2'")
    assert stored[0]["counts"]["rapid_guesses"] == record["rapid"] and stored[1]["rapid_guess"]["rapid"] == record["rapid"]
    assert stored[2]["settings"]["response_time_column"] == "time_spent_ms"
    with_filter = rows(engine, "SELECT item_id, params FROM mirt_item_params ORDER BY item_id")
    for name, truth_values in (("a", truth.params.a), ("b", truth.params.b)):
        kept = np.array([p[name] for _, p in plain_items])
        left_out = np.array([p[name] for _, p in with_filter])
        assert np.sqrt(np.mean((left_out - truth_values) ** 2)) < 0.7 * np.sqrt(np.mean((kept - truth_values) ** 2))


    # The review page: a line in the summary, and where they fell in the Run section.
    page = page_of(engine, filtered.run_id)
    summary = section(page, "summary")
    assert "<h3>Rapid guesses</h3>" in summary
    assert f"{record['rapid']:,} of {data.responses.n_obs:,} timed answers" in summary
    run = section(page, "run")
    top = record["top_items"][0]
    assert f"Rapid guesses left out ({record['rapid']:,})" in run
    assert f"<td class=n>{top['question_id']}<td class=n>{top['rapid']:,}" in run
    assert "Students by their share of rapid guesses" in run
    assert "Rapid guesses" not in page_of(engine, plain.run_id)


def test_a_rapid_first_answer_is_left_out_not_replaced_by_the_later_one(engine):
    with engine.begin() as conn:
        platform.create_platform_tables(conn)
        platform.insert_questions(conn, [1, 2], [{}, {}])
        t = lambda days: f"{(AS_OF - timedelta(days=days)).isoformat()}"
        # s1 guessed q1 in 0.4 s, then answered it again in earnest; q2 took s1 20 s. s2 has no time for q1.
        platform.copy_rows(conn, "attempt", ("student_id", "question_id", "correct", "completed_at", "time_spent_ms"),
                           [("s1", 1, "f", t(5), 400), ("s1", 1, "t", t(2), 30000), ("s1", 2, "t", t(4), 20000),
                            ("s2", 1, "t", t(3), None), ("s2", 2, "f", t(3), 25000), ("s3", 1, "t", t(1), 35000)])
        observations = queries.load_observations(conn, AS_OF - timedelta(days=60), AS_OF, 100, WHOLE_BANK,
                                                 response_time_column="time_spent_ms")
    r = observations.responses
    answers = {(observations.student_ids[p], int(observations.question_ids[r.item[k]])): observations.response_ms[k]
               for p in range(r.n_persons) for k in range(r.person_ptr[p], r.person_ptr[p + 1])}
    assert answers[("s1", 1)] == 400 and answers[("s1", 2)] == 20000 and np.isnan(answers[("s2", 1)])

    from consumer.irt.rapid import RapidGuessRule, find_rapid_guesses
    found = find_rapid_guesses(r, observations.response_ms, RapidGuessRule.parse("nt10"))
    # q1's mean time over its timed first answers: (400 + 35000) / 2 = 17,700 ms, threshold 1,770 ms.
    assert found.thresholds[0] == pytest.approx(1770)
    rapid = {key for key, k in zip(answers, range(len(answers))) if found.rapid[k]}
    assert rapid == {("s1", 1)}


def test_a_time_column_attempt_lacks_fails_the_run_naming_the_setting(engine, guessing):
    truth, data = guessing
    with engine.begin() as conn:
        load_timed_simulation(conn, truth, data.times_ms)
    summary = calibrate(engine, Settings.load({"MIRT_RESPONSE_TIME_COLUMN": "seconds_taken"}), REQUEST)
    assert summary.status == "failed"
    assert "MIRT_RESPONSE_TIME_COLUMN" in summary.error and "seconds_taken" in summary.error
    assert rows(engine, "SELECT count(*) FROM mirt_item_params")[0][0] == 0

    summary = calibrate(engine, Settings.load({"MIRT_RESPONSE_TIME_COLUMN": "correct"}),
                        CalibrationRequest(request_id="req-3", as_of=AS_OF))
    assert summary.status == "failed" and "boolean" in summary.error


def test_each_time_stays_with_its_answer_when_the_cap_keeps_the_most_recent(engine):
    """Times ride beside the packed answers, capped or not: each must land on its own (student, question)."""
    with engine.begin() as conn:
        platform.create_platform_tables(conn)
        platform.insert_questions(conn, range(1, 11), [{}] * 10)
        rng = np.random.default_rng(3)
        attempts = [(f"s{s}", q, "t" if (s + q) % 2 else "f",
                     (AS_OF - timedelta(hours=int(rng.integers(1, 200)))).isoformat(), 1000 * s + q)
                    for s in range(30) for q in range(1, 11) if rng.random() < 0.7]
        platform.copy_rows(conn, "attempt", ("student_id", "question_id", "correct", "completed_at", "time_spent_ms"),
                           attempts)
        capped = queries.load_observations(conn, AS_OF - timedelta(days=60), AS_OF, 100, WHOLE_BANK,
                                          response_time_column="time_spent_ms")
        whole = queries.load_observations(conn, AS_OF - timedelta(days=60), AS_OF, 10_000, WHOLE_BANK,
                                          response_time_column="time_spent_ms")
    assert capped.capped and capped.n_obs == 100 and whole.n_obs == len(attempts)
    for observations in (capped, whole):
        r = observations.responses
        person = r.person_index()
        student = np.array([int(observations.student_ids[p][1:]) for p in person])
        question = observations.question_ids[r.item]
        # Each time was written as 1000 * student + question: it names the answer it belongs to.
        assert np.array_equal(observations.response_ms, 1000 * student + question)
        assert np.array_equal(r.correct, (student + question) % 2)


def test_times_and_group_labels_ride_together_each_with_its_own_answer_and_student(engine):
    """With MIRT_RESPONSE_TIME_COLUMN and MIRT_DIF_GROUP_COLUMN both set, each answer keeps its own time and each
    student the label of the earliest answer, capped or not (the two aggregates follow the fixed columns)."""
    with engine.begin() as conn:
        platform.create_platform_tables(conn)
        conn.exec_driver_sql("ALTER TABLE attempt ADD COLUMN device text")
        platform.insert_questions(conn, range(1, 11), [{}] * 10)
        rng = np.random.default_rng(4)
        attempts = [(f"s{s}", q, "t" if (s + q) % 2 else "f",
                     (AS_OF - timedelta(hours=int(rng.integers(1, 200)))).isoformat(), 1000 * s + q,
                     "phone" if q % 2 else "desktop")
                    for s in range(30) for q in range(1, 11) if rng.random() < 0.7]
        platform.copy_rows(conn, "attempt", ("student_id", "question_id", "correct", "completed_at",
                                             "time_spent_ms", "device"), attempts)
        loads = [queries.load_observations(conn, AS_OF - timedelta(days=60), AS_OF, cap, WHOLE_BANK,
                                           group_column="device", response_time_column="time_spent_ms")
                 for cap in (100, 10_000)]
    # Each student's group, worked out here: the label of the student's earliest answer (among those loaded).
    for observations in loads:
        r = observations.responses
        for p, student in enumerate(observations.student_ids):
            answered = range(r.person_ptr[p], r.person_ptr[p + 1])
            questions = [int(observations.question_ids[r.item[k]]) for k in answered]
            assert [observations.response_ms[k] for k in answered] == [1000 * int(student[1:]) + q for q in questions]
            earliest = min((a for a in attempts if a[0] == student and a[1] in questions), key=lambda a: a[3])
            assert observations.groups[p] == earliest[5]
    assert loads[0].capped and not loads[1].capped and loads[1].n_obs == len(attempts)
