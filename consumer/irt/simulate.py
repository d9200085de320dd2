"""Simulated sparse response data with known true parameters.

Each simulated student answers a random subset of the bank, as on the
platform; a ~ lognormal(0, 0.3), b ~ N(0, 1), theta ~ N(0, 1) unless given.
Used by the demo, the tests and the benchmarks to check recovery of truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import int64, njit

from .model import ItemParameters
from .responses import Responses


@dataclass(frozen=True)
class SimulatedData:
    responses: Responses
    params: ItemParameters
    theta: np.ndarray


@njit((int64, int64, int64, int64), cache=True)  # compiled when imported (see kernels)
def _distinct_subsets(n_persons, n_items, per_person, seed):
    """``per_person`` distinct items for each person (Floyd's sampling), in the order drawn.

    (``simulate`` sorts them with numpy: numba's sort would take seconds to
    compile on the first run after an install.)
    """
    np.random.seed(seed)
    out = np.empty(n_persons * per_person, dtype=np.int32)
    chosen = np.zeros(n_items, dtype=np.bool_)
    for i in range(n_persons):
        base = i * per_person
        filled = 0
        for j in range(n_items - per_person, n_items):
            t = np.random.randint(0, j + 1)
            pick = j if chosen[t] else t
            chosen[pick] = True
            out[base + filled] = pick
            filled += 1
        for k in range(base, base + per_person):
            chosen[out[k]] = False
    return out


def simulate(
    n_persons: int,
    n_items: int,
    per_person: int,
    *,
    seed: int = 0,
    params: ItemParameters | None = None,
    theta: np.ndarray | None = None,
    guessing: float = 0.0,
) -> SimulatedData:
    """Sparse dichotomous responses from a logistic model with known truth."""
    if not 0 < per_person <= n_items:
        raise ValueError("per_person must lie in [1, n_items]")
    rng = np.random.default_rng(seed)
    if params is None:
        a = rng.lognormal(0.0, 0.3, n_items)
        b = rng.normal(0.0, 1.0, n_items)
        c = np.full(n_items, float(guessing))
        params = ItemParameters(a, b, c)
    if theta is None:
        theta = rng.normal(0.0, 1.0, n_persons)
    item = _distinct_subsets(n_persons, n_items, per_person, int(rng.integers(2**31 - 1)))
    item.reshape(n_persons, per_person).sort(axis=1)
    person = np.repeat(np.arange(n_persons), per_person)
    z = params.a[item] * (theta[person] - params.b[item])
    p = params.c[item] + (1.0 - params.c[item]) / (1.0 + np.exp(-z))
    correct = (rng.random(item.size) < p).astype(np.uint8)
    ptr = np.arange(n_persons + 1, dtype=np.int64) * per_person
    return SimulatedData(Responses(ptr, item, correct, n_items), params, theta)


@dataclass(frozen=True)
class Week:
    """One simulated week: who sat it, with what true abilities, and what they answered.

    Items are numbered over the whole simulation: the operational bank first
    (``0 .. n_operational - 1``), then each week's new items in turn. Every
    parameter is on the base scale, the scale of week 0's population N(0, 1).
    """

    index: int
    #: The population's true mean and SD on the base scale this week.
    mean: float
    sd: float
    #: The cohort's true abilities (base scale), one per student of this week.
    theta: np.ndarray
    #: The cohort's answers, items numbered over the whole simulation.
    responses: Responses
    #: Every item's true parameters this week (planted drift included), base scale.
    params: ItemParameters
    #: This week's new (pretest) items, answered this week only.
    new_items: np.ndarray
    #: The operational items whose planted drift is in effect this week.
    drifting: np.ndarray


def simulate_weeks(
    *,
    students: int = 3000,
    items: int = 300,
    answers: int = 40,
    new_items: int = 20,
    new_answers: int = 4,
    weeks: int = 6,
    mean_growth: float = 0.08,
    sd_growth: float = 0.03,
    drifting: int | tuple[int, ...] = 3,
    drift_b: float = 0.5,
    drift_from: int = 3,
    pretest_weeks: int = 1,
    seed: int = 0,
) -> list[Week]:
    """A base week and ``weeks`` weekly cohorts on one operational bank, with known truth.

    Week 0 (the base week) is ``students`` students from N(0, 1), each
    answering ``answers`` distinct items of the ``items`` operational items;
    its population defines the base scale. Week ``w`` = 1 .. ``weeks`` is a
    new cohort of ``students`` from N(``mean_growth`` * w, (1 + ``sd_growth``
    * w)^2) (a negative ``sd_growth`` shrinks it), each answering
    ``answers - new_answers`` operational items and ``new_answers`` of that
    week's ``new_items`` new items (pretest items). A week's new items are
    answered in ``pretest_weeks`` weeks, theirs and the ones after: each
    week's new answers spread over the batches still in pretest.
    ``Week.new_items`` are the items first shown that week. Item truths:
    a ~ lognormal(0, 0.3), b ~ N(0, 1), as ``simulate``.

    Drift is planted in operational items: ``drifting`` is how many, picked
    at random, or their positions; each one's b is ``drift_b`` higher from
    week ``drift_from`` on (its a unchanged). ``Week.params`` carries it.

    Pure and deterministic for a ``seed``: no I/O; student ids, timestamps
    and the database are the caller's.
    """
    if weeks < 0 or students < 1 or items < 1:
        raise ValueError("weeks must be >= 0, students and items >= 1")
    if new_items < 0 or not 0 <= new_answers <= new_items or new_answers >= answers:
        raise ValueError("new_answers must lie in [0, new_items] and below answers")
    if not 0 < answers - new_answers <= items or answers > items:
        raise ValueError("answers must lie in [1, items]")
    if pretest_weeks < 1:
        raise ValueError("pretest_weeks must be at least 1")
    if 1.0 + sd_growth * weeks <= 0:
        raise ValueError(f"sd_growth {sd_growth} leaves no spread by week {weeks}")
    rng = np.random.default_rng(seed)
    bank = ItemParameters(rng.lognormal(0.0, 0.3, items), rng.normal(0.0, 1.0, items), np.zeros(items))
    fresh = [ItemParameters(rng.lognormal(0.0, 0.3, new_items), rng.normal(0.0, 1.0, new_items),
                            np.zeros(new_items)) for _ in range(weeks)]
    if isinstance(drifting, (int, np.integer)):
        planted = np.sort(rng.choice(items, size=int(drifting), replace=False))
    else:
        planted = np.unique(np.asarray(drifting, dtype=np.int64))
        if planted.size and not (0 <= planted.min() and planted.max() < items):
            raise ValueError("drifting positions must be operational items, in [0, items)")
    n_total = items + weeks * new_items
    out = []
    for w in range(weeks + 1):
        mean, sd = mean_growth * w, 1.0 + sd_growth * w
        theta = rng.normal(mean, sd, students)
        drift = planted if w >= drift_from else planted[:0]
        b = bank.b.copy()
        b[drift] += drift_b
        operational = ItemParameters(bank.a, b, bank.c)
        pieces = [operational] + fresh
        params = ItemParameters(*(np.concatenate([getattr(p, k) for p in pieces]) for k in "abc"))
        week_new = items + (w - 1) * new_items + np.arange(new_items) if w else np.arange(0)
        batches = list(range(max(1, w - pretest_weeks + 1), w + 1)) if w else []
        shown = np.concatenate([items + (k - 1) * new_items + np.arange(new_items) for k in batches]) \
            if batches else np.arange(0)
        per_new = new_answers if w and new_items else 0
        parts = [(np.arange(items), simulate(students, items, answers - per_new, seed=int(rng.integers(2**31 - 1)),
                                             params=operational, theta=theta).responses)]
        if per_new:
            in_pretest = params.take(shown)
            parts.append((shown, simulate(students, shown.size, per_new, seed=int(rng.integers(2**31 - 1)),
                                          params=in_pretest, theta=theta).responses))
        # Each student's operational answers, then their new items' (every student answers the same count).
        item = np.hstack([ids[r.item].reshape(students, -1) for ids, r in parts]).ravel()
        correct = np.hstack([r.correct.reshape(students, -1) for _, r in parts]).ravel()
        ptr = np.arange(students + 1, dtype=np.int64) * answers
        responses = Responses(ptr, item.astype(np.int32), correct, n_total)
        out.append(Week(w, mean, sd, theta, responses, params, week_new, drift))
    return out


@dataclass(frozen=True)
class RapidGuessing:
    """Simulated answers with response times, some of them rapid guesses (which ones is known)."""

    responses: Responses
    #: One per response, in ms.
    times_ms: np.ndarray
    #: One per response: True where the answer was a rapid guess (its correctness drawn at chance).
    rapid: np.ndarray
    #: The students who rapid-guess (a share of their answers).
    guessers: np.ndarray


def add_rapid_guessing(data: SimulatedData, *, guessers: float, share: float = 0.5, chance: float = 0.25,
                       mean_time_ms: float = 30_000.0, seed: int = 0) -> RapidGuessing:
    """``data`` with a share ``guessers`` of its students rapid-guessing a share ``share`` of their answers.

    Solution behaviour takes a lognormal time around each item's own time
    intensity (median ``mean_time_ms`` times a lognormal(0, 0.3) factor, SD
    0.4 on the log scale around it) and keeps the model's answer; a rapid
    guess takes 300 to 2,500 ms and is right with probability ``chance``
    whatever the student's ability (Wise & DeMars 2006's effort-moderated
    model).
    """
    rng = np.random.default_rng(seed)
    r = data.responses
    is_guesser = rng.random(r.n_persons) < guessers
    rapid = is_guesser[r.person_index()] & (rng.random(r.n_obs) < share)
    intensity = mean_time_ms * rng.lognormal(0.0, 0.3, r.n_items)
    times = intensity[r.item] * rng.lognormal(0.0, 0.4, r.n_obs)
    times[rapid] = rng.uniform(300.0, 2_500.0, int(rapid.sum()))
    correct = r.correct.copy()
    correct[rapid] = (rng.random(int(rapid.sum())) < chance).astype(np.uint8)
    return RapidGuessing(Responses(r.person_ptr, r.item, correct, r.n_items), times, rapid,
                         np.flatnonzero(is_guesser))
