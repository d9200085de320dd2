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
