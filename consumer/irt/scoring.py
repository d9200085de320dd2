"""Expected a posteriori (EAP) abilities with their posterior standard deviations.

Bock & Mislevy (1982, Applied Psychological Measurement 6, 431-444): the
ability estimate is the mean of the posterior over the quadrature grid, its
standard error the posterior standard deviation. Scoring is done on the
calibration's own N(0, 1) scale and carried to the linked scale by the
linking constants, which is the same as scoring with the linked items and
a N(intercept, slope^2) prior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .linking import IDENTITY, LinkingConstants
from .model import ItemParameters
from .quadrature import Quadrature
from .responses import Responses


@dataclass(frozen=True)
class Abilities:
    """One EAP estimate per person; ``scored`` is False (and theta NaN) for a
    person none of whose answers fell on an estimated item."""

    theta: np.ndarray
    se: np.ndarray
    scored: np.ndarray


def score_eap(
    responses: Responses,
    params: ItemParameters,
    *,
    linking: LinkingConstants = IDENTITY,
    quadrature: Quadrature | None = None,
) -> Abilities:
    """EAP abilities from ``params`` (on the calibration scale), reported on the linked scale.

    Responses to items whose parameters are NaN (not estimated) are ignored.
    """
    if len(params) != responses.n_items:
        raise ValueError("params must hold one entry per item of responses")
    quadrature = quadrature or Quadrature.normal()
    usable = np.isfinite(params.a) & np.isfinite(params.b)
    data, kept = responses.restrict_items(usable)
    mean, sd = kernels.posterior_moments(
        data, params.take(kept).log_curves(quadrature.nodes), quadrature.log_weights, quadrature.nodes,
    )
    return Abilities(
        theta=linking.slope * mean + linking.intercept,
        se=linking.slope * sd,
        scored=np.isfinite(mean),
    )
