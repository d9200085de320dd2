"""The E-step at the final estimates, shared by what is computed from it.

Standard errors (``information``) and item fit (``itemfit``) both start
from the expected counts at the estimates a calibration ends with; building
them once saves a full pass over the responses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .model import ItemParameters
from .quadrature import Quadrature
from .responses import Responses


@dataclass(frozen=True)
class FinalEStep:
    """Expected counts ``[j, y, q]`` of the estimated items (those of ``params`` that are finite)."""

    quadrature: Quadrature
    data: Responses  # the responses to the estimated items, renumbered
    kept: np.ndarray  # each estimated item's index in ``params``
    items: ItemParameters
    log_curves: np.ndarray  # [j, y, q]
    counts: np.ndarray  # [j, y, q]
    mass: np.ndarray  # [q]: the posteriors of the persons who answered them, summed

    @classmethod
    def at(cls, responses: Responses, params: ItemParameters, quadrature: Quadrature | None = None) -> "FinalEStep":
        quadrature = quadrature or Quadrature.normal()
        data, kept = responses.restrict_items(np.isfinite(params.a) & np.isfinite(params.b))
        items = params.take(kept)
        log_curves = items.log_curves(quadrature.nodes)
        counts, _, mass = kernels.expected_counts(data, log_curves, quadrature.log_weights, with_mass=True)
        return cls(quadrature, data, kept, items, log_curves, counts, mass)
