"""Simulated sparse response data with known true parameters.

Each simulated student answers a random subset of the bank, as on the
platform; a ~ lognormal(0, 0.3), b ~ N(0, 1), theta ~ N(0, 1) unless given.
Used by the demo, the tests and the benchmarks to check recovery of truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .model import ItemParameters
from .responses import Responses


@dataclass(frozen=True)
class SimulatedData:
    responses: Responses
    params: ItemParameters
    theta: np.ndarray


@njit(cache=True)
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
