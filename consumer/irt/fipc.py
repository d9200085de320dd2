"""Fixed-parameter calibration: anchors held at their reference values, the population estimated.

Kim (2006, Journal of Educational Measurement 43, 355-381) compares ways of
calibrating new items onto an existing scale by fixing the anchors'
parameters; the one that recovers the scale is "multiple weights updating,
multiple EM cycles" (MWU-MEM): in every EM cycle the population
distribution on the quadrature grid is re-estimated from the posteriors
before the next E-step, and the cycles go on until the free items and the
population settle. Here the population is normal, N(mean, sd^2) on the
anchors' (old) scale, its mean and SD updated every cycle from the summed
posteriors; the nodes stay those of the quadrature.

The result is on the old scale already; ``mean`` and ``sd`` are where the
new population sits on it, which is what linking constants say
(theta_old = sd * theta_new + mean), so FIPC and Stocking-Lord can be put
side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import estimate, kernels, mstep
from .priors import NO_PRIORS, Priors
from .model import ItemParameters
from .quadrature import Quadrature
from .responses import Responses

#: The population's SD is kept in this range (in old-scale units) while it is re-estimated.
_SD_BOUNDS = (0.05, 5.0)


@dataclass(frozen=True)
class FixedCalibration:
    """Item parameters on the anchors' scale (anchors at their reference values) and the population there."""

    params: ItemParameters
    mean: float
    sd: float
    loglik: float
    iterations: int
    converged: bool
    #: When not converged: the free items still moving by more than the tolerance, and by how much.
    still_moving: dict[int, float] = field(default_factory=dict)


def fixed_parameter_calibration(
    responses: Responses,
    start: ItemParameters,
    fixed: np.ndarray,
    reference: ItemParameters,
    model: str = "2PL",
    *,
    population: tuple[float, float] = (0.0, 1.0),
    quadrature: Quadrature | None = None,
    tolerance: float = estimate.DEFAULT_TOLERANCE,
    max_iterations: int = estimate.DEFAULT_MAX_ITERATIONS,
    priors: Priors = NO_PRIORS,
    checkpoint: Callable[[], None] | None = None,
) -> FixedCalibration:
    """MWU-MEM fixed-parameter calibration of the items of ``responses``.

    ``start`` holds every item's starting parameters on the old scale (NaN
    for items not to estimate), ``fixed`` the positions of the anchors and
    ``reference`` their parameters, which stay as they are. ``population``
    is the starting (mean, sd) of the population on the old scale.
    ``checkpoint`` is called before every cycle; what it raises ends the calibration.
    """
    if model not in ("2PL", "3PL"):
        raise ValueError(f"fixed-parameter calibration is available for the 2PL and 3PL, not the {model}")
    quadrature = quadrature or Quadrature.normal()
    nodes = np.ascontiguousarray(quadrature.nodes, dtype=np.float64)
    usable = np.isfinite(start.a) & np.isfinite(start.b)
    usable[fixed] = True
    data, kept = responses.restrict_items(usable)
    position = {int(j): i for i, j in enumerate(kept)}
    anchors = np.array([position[int(j)] for j in fixed], dtype=np.int64)

    items = start.take(kept)
    a, d, c = items.a.copy(), items.d.copy(), items.c.copy()
    a[anchors], d[anchors], c[anchors] = reference.a, reference.d, reference.c
    x = np.stack([a, d]) if model == "2PL" else np.stack([a, d, np.log(np.clip(c, 1e-4, 0.5) / (1 - np.clip(c, 1e-4, 0.5)))])
    pinned = x[:, anchors].copy()

    mean, sd = population
    dtype = np.float32 if tolerance >= estimate.FLOAT32_TOLERANCE else np.float64
    estep = kernels.EStep(data, quadrature.with_population(mean, sd).log_weights, dtype=dtype)
    cycle = mstep.em_cycle(estep, model, nodes, priors)
    converged, loglik, iteration, moved = False, float("nan"), 0, np.zeros(kept.size)
    for iteration in range(1, max_iterations + 1):
        if checkpoint is not None:
            checkpoint()
        estep.set_log_prior(quadrature.with_population(mean, sd).log_weights)
        point = cycle(x)
        loglik = point.loglik
        weights = estep.population_posterior()
        weights /= weights.sum()
        new_mean = float(weights @ nodes)
        new_sd = float(np.clip(np.sqrt(weights @ (nodes - new_mean) ** 2), *_SD_BOUNDS))
        mapped = point.mapped.copy()
        mapped[:, anchors] = pinned
        moved = np.abs(mapped - x).max(axis=0)
        change = max(float(moved.max(initial=0.0)), abs(new_mean - mean), abs(new_sd - sd))
        x, mean, sd = mapped, new_mean, new_sd
        if change < tolerance:
            converged = True
            break

    a, d, c = mstep.unpack(x)
    full_a, full_d, full_c = (np.full(len(start), np.nan) for _ in range(3))
    full_a[kept], full_d[kept] = a, d
    full_c[kept] = 0.0 if c is None else c
    still_moving = {} if converged else {int(kept[j]): float(moved[j]) for j in np.flatnonzero(moved >= tolerance)}
    return FixedCalibration(ItemParameters.from_intercepts(full_a, full_d, np.nan_to_num(full_c)),
                            mean, sd, loglik, iteration, converged, still_moving)
