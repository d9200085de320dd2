"""Rapid guesses: answers given too fast to have read the item, found from response times.

On low-stakes practice a share of answers comes in a second or two, without
reading: they are right at about chance whatever the student's ability, so
they make items look harder and less discriminating than they are. An
answer faster than its item's threshold is a rapid guess (Schnipke & Scrams
1997; Wise & Kong 2005). The thresholds follow a ``RapidGuessRule``:

- the normative threshold NTp (Wise & Ma 2012): p% of the item's mean
  response time, capped at a maximum; NT10 capped at 10 seconds is the
  published default, so that a long item's threshold never reaches a time
  in which it can be read and answered;
- or a fixed floor in milliseconds for every item.

A student's response-time effort (RTE, Wise & Kong 2005) is the share of
their timed answers that are solution behaviour (not rapid); below 0.90 the
student is flagged as a low-effort test taker.

Plain arrays in, plain results out: the run decides what to do with them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .responses import Responses

#: The normative threshold's default share of the mean time, in percent, and its cap in ms (Wise & Ma 2012: NT10,
#: at most 10 s).
DEFAULT_PERCENT = 10.0
DEFAULT_CAP_MS = 10_000.0
DEFAULT_RULE = f"nt{DEFAULT_PERCENT:g}:{DEFAULT_CAP_MS:g}"
#: Response-time effort below which a student is flagged (Wise & Kong 2005).
LOW_EFFORT_RTE = 0.90


@dataclass(frozen=True)
class RapidGuessRule:
    """How an item's threshold is set: ``percent`` of its mean time capped at ``cap_ms``, or ``floor_ms`` for all."""

    percent: float | None = DEFAULT_PERCENT
    cap_ms: float | None = DEFAULT_CAP_MS
    floor_ms: float | None = None

    @classmethod
    def parse(cls, text: str) -> "RapidGuessRule":
        """``ntP`` (P% of the mean, capped at 10 s), ``ntP:CAP_MS``, or ``fixed:MS``; ValueError otherwise."""
        spelled = str(text).strip().lower().replace("_", "")
        normative = re.fullmatch(r"nt(\d+(?:\.\d+)?)(?::(\d+(?:\.\d+)?))?", spelled)
        if normative:
            percent = float(normative.group(1))
            cap = float(normative.group(2)) if normative.group(2) else DEFAULT_CAP_MS
            if not 0 < percent <= 100 or not cap > 0:
                raise ValueError(f"the percent must lie in (0, 100] and the cap be > 0 ms: {text!r}")
            return cls(percent, cap, None)
        fixed = re.fullmatch(r"fixed:(\d+(?:\.\d+)?)", spelled)
        if fixed and float(fixed.group(1)) > 0:
            return cls(None, None, float(fixed.group(1)))
        raise ValueError(f"not a rapid-guess rule: {text!r}")

    def __str__(self) -> str:
        if self.floor_ms is not None:
            return f"fixed:{self.floor_ms:g}"
        return f"nt{self.percent:g}:{self.cap_ms:g}"

    def describe(self) -> str:
        """The rule in words, for the log and the review page."""
        if self.floor_ms is not None:
            return f"answers faster than {self.floor_ms:,g} ms"
        return f"answers faster than {self.percent:g}% of their item's mean time, at most {self.cap_ms:,g} ms"


def item_thresholds(item: np.ndarray, times_ms: np.ndarray, n_items: int, rule: RapidGuessRule) -> np.ndarray:
    """Each item's threshold in ms under ``rule``: NaN for an item with no timed answer (nothing is rapid there).

    The normative threshold's mean is over the item's answers with a known,
    positive time (NaN marks an unknown time).
    """
    timed = np.isfinite(times_ms) & (times_ms > 0)
    answers = np.bincount(item[timed], minlength=n_items)
    if rule.floor_ms is not None:
        return np.where(answers > 0, rule.floor_ms, np.nan)
    total = np.bincount(item[timed], weights=times_ms[timed], minlength=n_items)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / answers
    return np.minimum(mean * (rule.percent / 100.0), rule.cap_ms)


@dataclass(frozen=True)
class RapidGuesses:
    """Which answers are rapid guesses, and how many per item and per person."""

    #: One per response: True for a rapid guess.
    rapid: np.ndarray
    #: Per item: its threshold (ms, NaN when it has no timed answer), its rapid guesses, its timed answers.
    thresholds: np.ndarray
    per_item: np.ndarray
    timed_per_item: np.ndarray
    #: Per person: their rapid guesses and their timed answers.
    per_person: np.ndarray
    timed_per_person: np.ndarray

    @property
    def count(self) -> int:
        return int(self.rapid.sum())

    def effort(self) -> np.ndarray:
        """Each person's response-time effort: the share of their timed answers that are not rapid (NaN: none timed)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - self.per_person / self.timed_per_person


def find_rapid_guesses(responses: Responses, times_ms: np.ndarray, rule: RapidGuessRule) -> RapidGuesses:
    """The rapid guesses among ``responses`` (``times_ms`` one per response, NaN where unknown) under ``rule``.

    An answer is rapid when its time is known and below its item's threshold.
    """
    times_ms = np.asarray(times_ms, dtype=np.float64)
    if times_ms.shape != responses.item.shape:
        raise ValueError("times_ms must hold one time per response")
    thresholds = item_thresholds(responses.item, times_ms, responses.n_items, rule)
    timed = np.isfinite(times_ms) & (times_ms > 0)
    with np.errstate(invalid="ignore"):
        rapid = np.isfinite(times_ms) & (times_ms < thresholds[responses.item])
    person = responses.person_index()
    return RapidGuesses(
        rapid=rapid, thresholds=thresholds,
        per_item=np.bincount(responses.item[rapid], minlength=responses.n_items),
        timed_per_item=np.bincount(responses.item[timed], minlength=responses.n_items),
        per_person=np.bincount(person[rapid], minlength=responses.n_persons),
        timed_per_person=np.bincount(person[timed], minlength=responses.n_persons))


def leave_out(responses: Responses, drop: np.ndarray) -> tuple[Responses, np.ndarray]:
    """``responses`` without the answers where ``drop`` is True, and the original index of each person kept.

    A person with no answer left is left out too (items keep their numbers).
    """
    keep = ~np.asarray(drop, dtype=bool)
    left = np.bincount(responses.person_index()[keep], minlength=responses.n_persons)
    kept_persons = np.flatnonzero(left > 0)
    ptr = np.zeros(kept_persons.size + 1, dtype=np.int64)
    np.cumsum(left[kept_persons], out=ptr[1:])
    return Responses(ptr, responses.item[keep], responses.correct[keep], responses.n_items), kept_persons
