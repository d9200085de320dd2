"""Anchor items: their reference parameters from ``question.meta->'irt'``, checked one by one.

An anchor whose stored parameters are malformed is skipped with its reason,
never allowed to bend the linking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .irt.model import ItemParameters


@dataclass(frozen=True)
class Anchor:
    question_id: int
    a: float
    b: float
    c: float
    model: str | None = None
    run_id: str | None = None
    a_se: float | None = None
    b_se: float | None = None


def parse_anchor(question_id: int, irt: object) -> Anchor:
    """The anchor's reference parameters, or ``ValueError`` saying what is wrong with them."""
    if not isinstance(irt, dict):
        raise ValueError("meta.irt is missing" if irt is None else "meta.irt is not a JSON object")
    values = {}
    for key, required in (("a", True), ("b", True), ("c", False)):
        raw = irt.get(key)
        if raw is None and not required:
            values[key] = 0.0
            continue
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
            raise ValueError(f"meta.irt.{key} is {'missing' if raw is None else repr(raw)}, not a finite number")
        values[key] = float(raw)
    if values["a"] <= 0:
        raise ValueError(f"meta.irt.a is {values['a']}, not a positive discrimination")
    if not 0.0 <= values["c"] < 1.0:
        raise ValueError(f"meta.irt.c is {values['c']}, not in [0, 1)")
    model, run_id = irt.get("model"), irt.get("run_id")
    errors = {key: float(irt[key]) for key in ("a_se", "b_se")
              if isinstance(irt.get(key), (int, float)) and not isinstance(irt.get(key), bool)
              and math.isfinite(irt[key]) and irt[key] > 0}
    return Anchor(int(question_id), values["a"], values["b"], values["c"],
                  str(model) if model is not None else None, str(run_id) if run_id is not None else None,
                  errors.get("a_se"), errors.get("b_se"))


def parse_anchors(rows: list[tuple[int, object]]) -> tuple[list[Anchor], dict[int, str]]:
    """Valid anchors, and the reason each malformed one was skipped."""
    anchors, skipped = [], {}
    for question_id, irt in rows:
        try:
            anchors.append(parse_anchor(question_id, irt))
        except ValueError as problem:
            skipped[int(question_id)] = str(problem)
    return anchors, skipped


def reference_parameters(anchors: list[Anchor]) -> ItemParameters:
    return ItemParameters(np.array([x.a for x in anchors]), np.array([x.b for x in anchors]),
                          np.array([x.c for x in anchors]))


def reference_errors(anchors: list[Anchor]) -> tuple[np.ndarray, np.ndarray]:
    """The reference standard errors of b and a (NaN where the anchor's meta.irt has none)."""
    return (np.array([np.nan if x.b_se is None else x.b_se for x in anchors]),
            np.array([np.nan if x.a_se is None else x.a_se for x in anchors]))


@dataclass(frozen=True)
class AnchorCriteria:
    """What makes an item a good anchor candidate."""

    max_candidates: int = 50
    min_responses: int = 200
    min_a: float = 0.5
    max_a: float = 2.5
    max_b_se: float = 0.25
    max_abs_b: float = 3.0


def choose_anchor_candidates(item_ids: np.ndarray, a: np.ndarray, b: np.ndarray, b_se: np.ndarray,
                             n_responses: np.ndarray, excluded: set[int],
                             criteria: AnchorCriteria = AnchorCriteria()) -> tuple[np.ndarray, dict[str, int]]:
    """Well-measured items, difficulties spread over the scale: at most ``max_candidates`` of them.

    Eligible: not in ``excluded`` (already anchors, flagged for misfit, or not taggable),
    enough responses, moderate discrimination, small standard error of b,
    b inside +-max_abs_b. The eligible items are sorted by difficulty and cut
    into ``max_candidates`` groups of equal size; from each group the item
    with the most responses is taken (the first in ``item_ids`` among equals).
    Returns the chosen ids (sorted by difficulty) and how many items each
    criterion ruled out.

    Not the smallest standard error within a group: with the number of
    answers about equal, an item's SE of b is smallest where its slope
    came out high by chance, so that rule picked the items whose slopes were
    overestimated (a winner's curse), whose reference values then make every
    later link read a slope too low. The number of responses is a quantity
    of the design, not of the estimation noise.
    """
    checks = {
        "already an anchor, flagged or not taggable": np.array([int(i) not in excluded for i in item_ids], bool),
        f"fewer than {criteria.min_responses} responses": n_responses >= criteria.min_responses,
        f"a outside [{criteria.min_a}, {criteria.max_a}]": (a >= criteria.min_a) & (a <= criteria.max_a),
        f"standard error of b above {criteria.max_b_se}": np.nan_to_num(b_se, nan=np.inf) <= criteria.max_b_se,
        f"|b| above {criteria.max_abs_b}": np.abs(b) <= criteria.max_abs_b,
    }
    eligible = np.ones(len(item_ids), bool)
    ruled_out = {}
    for reason, ok in checks.items():
        ruled_out[reason] = int((eligible & ~ok).sum())
        eligible &= ok
    index = np.flatnonzero(eligible)
    if index.size <= criteria.max_candidates:
        chosen = index
    else:
        by_difficulty = index[np.argsort(b[index], kind="stable")]
        groups = np.array_split(by_difficulty, criteria.max_candidates)
        chosen = np.array([group[n_responses[group] == n_responses[group].max()].min() for group in groups])
    chosen = chosen[np.argsort(b[chosen], kind="stable")]
    return np.asarray(item_ids)[chosen], ruled_out
