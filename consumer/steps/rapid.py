"""Between load and fit, with MIRT_RESPONSE_TIME_COLUMN set: leave the rapid guesses out, and count them.

A student's first answer to a question in the window is the one the run
uses (SPEC); when that first answer is a rapid guess it is left out, not
replaced by the student's later answer to the question, which came after
the student had seen the item (and often its solution). The answers left
out count for neither the calibration nor the student's score: they say
nothing about ability (Wise & DeMars 2006, effort-moderated scoring). A
student whose every answer was a rapid guess is not scored this run.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..db.queries import Observations
from ..irt.rapid import LOW_EFFORT_RTE, RapidGuesses, RapidGuessRule, find_rapid_guesses, leave_out
from .context import RunContext

#: Items listed by name in the summary and the log, most rapid guesses first.
TOP_ITEMS = 20
#: The bins of the students' share of rapid guesses in the summary (a share of 0 is its own bin).
SHARE_EDGES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)
#: Past this share of the timed answers rapid, the run warns: the column may not hold milliseconds.
WARN_SHARE = 0.25


def leave_out_rapid_guesses(run: RunContext, observations: Observations) -> Observations:
    """``observations`` without their rapid guesses (MIRT_RAPID_GUESS_RULE), counted in the run's summary.

    Without MIRT_RESPONSE_TIME_COLUMN the observations come back as they are.
    """
    if observations.response_ms is None:
        return observations
    rule = RapidGuessRule.parse(run.settings.rapid_guess_rule)
    with run.step("rapid_guesses"):
        found = find_rapid_guesses(observations.responses, observations.response_ms, rule)
        kept, persons = leave_out(observations.responses, found.rapid)
    record = rapid_guess_record(found, observations.question_ids, run.settings.response_time_column, rule)
    record["students_left_out"] = observations.responses.n_persons - int(persons.size)
    run.summary.fit["rapid_guess"] = record
    run.summary.counts.update(rapid_guesses=found.count, observations=kept.n_obs, users=kept.n_persons)
    _log(run, record, observations.n_obs)
    if found.count and not kept.n_obs:
        run.warn("every answer in the window was a rapid guess under MIRT_RAPID_GUESS_RULE=%s: none is left to "
                 "calibrate", record["rule"])
    # Per-student values keep only the students left with an answer; per-answer ones only the answers kept.
    groups = observations.groups
    return dataclasses.replace(observations, responses=kept, student_ids=[observations.student_ids[i] for i in persons],
                               groups=None if groups is None else [groups[i] for i in persons],
                               response_ms=observations.response_ms[~found.rapid])


def rapid_guess_record(found: RapidGuesses, question_ids: np.ndarray, column: str, rule: RapidGuessRule) -> dict:
    """What the run records of its rapid guesses: how many, on which items, and how they spread over students."""
    timed = int(found.timed_per_item.sum())
    top = np.argsort(-found.per_item, kind="stable")[:TOP_ITEMS]
    top = top[found.per_item[top] > 0]
    effort = found.effort()
    timed_students = np.isfinite(effort)
    share = 1.0 - effort[timed_students]
    bins = [int(np.sum(share == 0))] + [
        int(np.sum((share > low) & (share <= high))) for low, high in zip(SHARE_EDGES[:-1], SHARE_EDGES[1:])]
    with_rapid = np.flatnonzero(found.per_item)
    return {
        "column": column, "rule": str(rule), "rule_text": rule.describe(),
        "answers_timed": timed, "answers_untimed": int(found.rapid.size - timed),
        "rapid": found.count, "share": found.count / timed if timed else 0.0,
        "items_with_rapid": int(with_rapid.size),
        "students_with_rapid": int(np.sum(found.per_person > 0)),
        "students_low_effort": int(np.sum(effort[timed_students] < LOW_EFFORT_RTE)),
        "low_effort_rte": LOW_EFFORT_RTE,
        "top_items": [{"question_id": int(question_ids[j]), "rapid": int(found.per_item[j]),
                       "answers": int(found.timed_per_item[j]),
                       "share": float(found.per_item[j] / found.timed_per_item[j]),
                       "threshold_ms": round(float(found.thresholds[j]), 1)} for j in top],
        "by_item": {str(int(question_ids[j])): int(found.per_item[j]) for j in with_rapid},
        # Students by their share of rapid guesses among their timed answers: none, then (0, 0.1], (0.1, 0.25], ...
        "student_share": {"edges": list(SHARE_EDGES), "students": bins},
    }


def _log(run: RunContext, record: dict, loaded: int) -> None:
    top = ", ".join(f"{t['question_id']} ({t['rapid']} of {t['answers']})" for t in record["top_items"][:5])
    run.log.info("left out %d rapid guesses (%.1f%% of %d timed answers, %s, MIRT_RAPID_GUESS_RULE=%s) from %d "
                 "answers loaded; on %d items%s; %d students guessed rapidly at least once, %d with response-time "
                 "effort below %.2f, %d left with no answer (not scored this run)", record["rapid"],
                 100 * record["share"], record["answers_timed"], record["rule_text"], record["rule"], loaded,
                 record["items_with_rapid"], f", most on {top}" if top else "", record["students_with_rapid"],
                 record["students_low_effort"], record["low_effort_rte"], record["students_left_out"])
    if record["answers_untimed"]:
        run.log.info("%d answers had no response time in attempt.%s: kept, never counted as rapid",
                     record["answers_untimed"], record["column"])
    if record["share"] > WARN_SHARE:
        run.warn("%.0f%% of the timed answers are rapid guesses under MIRT_RAPID_GUESS_RULE=%s: check that "
                 "attempt.%s holds milliseconds, and the rule", 100 * record["share"], record["rule"], record["column"])
