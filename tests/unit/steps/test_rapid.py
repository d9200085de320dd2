"""The rapid-guess step keeps every per-student and per-answer value beside the student or answer it belongs to."""

from __future__ import annotations

import numpy as np

from consumer.calibration import CalibrationRequest
from consumer.db.queries import Observations
from consumer.irt.responses import Responses
from consumer.settings import Settings
from consumer.steps.context import RunContext
from consumer.steps.rapid import leave_out_rapid_guesses


def test_a_student_left_with_no_answer_takes_their_group_label_along():
    # Three students, two items; "fixed:1000" makes every answer under a second rapid. Student b answered both
    # items rapidly, so b drops out: the students after b must keep their own labels and times.
    person = np.array([0, 0, 1, 1, 2, 2])
    item = np.array([0, 1, 0, 1, 0, 1], dtype=np.int32)
    correct = np.array([1, 0, 1, 1, 0, 1], dtype=np.uint8)
    ms = np.array([5000.0, 800.0, 300.0, 400.0, 7000.0, 6000.0])
    observations = Observations(responses=Responses.from_triplets(person, item, correct, 3, 2),
                                student_ids=["a", "b", "c"], question_ids=np.array([11, 12]), first_at=None,
                                last_at=None, groups=["desktop", "phone", "tablet"], response_ms=ms)
    settings = Settings.load({"MIRT_RESPONSE_TIME_COLUMN": "time_spent_ms", "MIRT_RAPID_GUESS_RULE": "fixed:1000"})
    run = RunContext(None, settings, CalibrationRequest())

    kept = leave_out_rapid_guesses(run, observations)

    assert kept.student_ids == ["a", "c"] and kept.groups == ["desktop", "tablet"]
    assert kept.response_ms.tolist() == [5000.0, 7000.0, 6000.0]
    r = kept.responses
    assert r.person_ptr.tolist() == [0, 1, 3] and r.item.tolist() == [0, 0, 1] and r.correct.tolist() == [1, 0, 1]
    assert run.summary.counts["rapid_guesses"] == 3 and run.summary.fit["rapid_guess"]["students_left_out"] == 1
