"""Two groups of simulated students whose items differ on purpose: DIF of known size, planted.

The reference group answers items with parameters ``params``; the focal
group the same items, except that ``uniform`` items are shifted in b (harder
for the focal group by ``shift``) and ``non_uniform`` items have their slope
multiplied by ``ratio``. The focal group's abilities may differ too
(impact: ``focal_mean``), which must not read as DIF.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from consumer.irt.model import ItemParameters
from consumer.irt.responses import Responses
from consumer.irt.simulate import simulate


@dataclass(frozen=True)
class GroupData:
    responses: Responses
    #: 0 for the reference group, 1 for the focal group.
    group: np.ndarray
    params: ItemParameters
    focal_params: ItemParameters
    planted: np.ndarray


def planted_dif(n_per_group: int, n_items: int = 30, per_person: int = 30, *, uniform=(0, 1), non_uniform=(2,),
                shift: float = 0.6, ratio: float = 2.0, focal_mean: float = -0.5, seed: int = 0) -> GroupData:
    rng = np.random.default_rng(seed)
    params = ItemParameters(rng.lognormal(0.0, 0.25, n_items), rng.uniform(-1.5, 1.5, n_items), np.zeros(n_items))
    a, b = params.a.copy(), params.b.copy()
    b[list(uniform)] += shift
    a[list(non_uniform)] *= ratio
    focal_params = ItemParameters(a, b, params.c)
    reference = simulate(n_per_group, n_items, per_person, seed=seed + 1, params=params)
    focal = simulate(n_per_group, n_items, per_person, seed=seed + 2, params=focal_params,
                     theta=np.random.default_rng(seed + 3).normal(focal_mean, 1.0, n_per_group))
    r, f = reference.responses, focal.responses
    ptr = np.concatenate([r.person_ptr, f.person_ptr[1:] + r.person_ptr[-1]])
    responses = Responses(ptr, np.concatenate([r.item, f.item]), np.concatenate([r.correct, f.correct]), n_items)
    group = np.repeat([0, 1], n_per_group)
    planted = np.zeros(n_items, bool)
    planted[list(uniform) + list(non_uniform)] = True
    return GroupData(responses, group, params, focal_params, planted)


def dense(responses: Responses) -> np.ndarray:
    """The persons x items matrix of ``responses`` (NaN where not answered), as other packages take it."""
    out = np.full((responses.n_persons, responses.n_items), np.nan)
    out[responses.person_index(), responses.item] = responses.correct
    return out
