"""Simulated answers with one item no logistic curve follows, for the item-fit statistics."""

from __future__ import annotations

import numpy as np

from consumer.irt.responses import Responses
from consumer.irt.simulate import simulate


def with_a_misfitting_item(seed=21, item=7):
    """Simulated 2PL data in which ``item`` rises with ability up to the middle, then falls back: the
    2PL gives it a positive slope, and the curve does not follow it."""
    truth = simulate(5000, 60, 30, seed=seed)
    r = truth.responses
    theta = truth.theta[r.person_index()]
    correct = r.correct.copy()
    mask = r.item == item
    rng = np.random.default_rng(seed)
    correct[mask] = rng.random(mask.sum()) < np.where(theta[mask] < -0.6, 0.1, np.where(theta[mask] < 1.0, 0.95, 0.3))
    return truth, Responses(r.person_ptr, r.item, correct, r.n_items)
