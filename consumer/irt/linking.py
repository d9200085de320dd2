"""Linking a new calibration onto the scale of earlier ones through anchor items.

Constants follow SPEC: theta_old = slope * theta_new + intercept, so that
b_old = slope * b_new + intercept and a_old = a_new / slope (``c`` is
unchanged). Stocking & Lord (1983, Applied Psychological Measurement 7,
201-210) choose the constants that make the anchors' test characteristic
curve, placed on the old scale, match the one their reference parameters
give, in least squares over a grid of old-scale abilities. The grid and
weights are those of ``mirt.equating.link`` (61 points on [-4, 4], standard
normal weights), which this module reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from .model import ItemParameters

STOCKING_LORD = "stocking-lord"
MEAN_SIGMA = "mean-sigma"
UNLINKED = "none"
METHODS = (STOCKING_LORD, MEAN_SIGMA)

#: Fewer anchors than this cannot fix both a slope and an intercept.
MIN_ANCHORS = 2

_GRID = np.linspace(-4.0, 4.0, 61)
_GRID_WEIGHTS = np.exp(-0.5 * _GRID**2) / np.exp(-0.5 * _GRID**2).sum()


@dataclass(frozen=True)
class LinkingConstants:
    """theta_old = slope * theta_new + intercept, found by ``method`` on ``n_anchors`` anchors."""

    method: str
    slope: float
    intercept: float
    n_anchors: int = 0

    def as_dict(self) -> dict:
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept,
                "n_anchors": self.n_anchors}


IDENTITY = LinkingConstants(UNLINKED, 1.0, 0.0, 0)


def mean_sigma(reference: ItemParameters, new: ItemParameters) -> LinkingConstants:
    """Marco's (1977) mean/sigma constants from the anchors' difficulties."""
    _require_anchors(reference, new)
    slope = float(np.std(reference.b, ddof=1) / np.std(new.b, ddof=1))
    intercept = float(reference.b.mean() - slope * new.b.mean())
    return LinkingConstants(MEAN_SIGMA, slope, intercept, len(new))


def stocking_lord(reference: ItemParameters, new: ItemParameters) -> LinkingConstants:
    """Stocking-Lord constants, by least squares in (log slope, intercept)."""
    _require_anchors(reference, new)
    root_w = np.sqrt(_GRID_WEIGHTS)
    target = reference.probability(_GRID).sum(axis=1)

    def placed(params):
        return new.on_scale(float(np.exp(params[0])), float(params[1]))

    def residuals(params):
        return root_w * (target - placed(params).probability(_GRID).sum(axis=1))

    def jacobian(params):
        # The placed curves depend on (slope, intercept) only through
        # u = (theta - intercept) / slope, so d/d intercept = -d/d theta
        # and d/d log slope = -(theta - intercept) d/d theta.
        items = placed(params)
        p_star = 1.0 / (1.0 + np.exp(-items.a * (_GRID[:, None] - items.b)))
        dtheta = ((1.0 - items.c) * items.a * p_star * (1.0 - p_star)).sum(axis=1)
        # residual = target - placed, hence the signs flip.
        return np.column_stack((root_w * dtheta * (_GRID - params[1]), root_w * dtheta))

    start = mean_sigma(reference, new)
    if not np.isfinite(start.slope) or start.slope <= 0:
        start = LinkingConstants(MEAN_SIGMA, 1.0, 0.0, len(new))
    fit = least_squares(residuals, x0=[np.log(start.slope), start.intercept], jac=jacobian,
                        method="lm", xtol=1e-12, ftol=1e-12)
    if not fit.success or not np.all(np.isfinite(fit.x)):
        raise LinkingError(f"Stocking-Lord did not converge: {fit.message}")
    return LinkingConstants(STOCKING_LORD, float(np.exp(fit.x[0])), float(fit.x[1]), len(new))


class LinkingError(ValueError):
    """The anchors cannot determine linking constants."""


def _require_anchors(reference: ItemParameters, new: ItemParameters) -> None:
    if len(reference) != len(new):
        raise LinkingError("reference and new anchor parameters differ in length")
    if len(new) < MIN_ANCHORS:
        raise LinkingError(f"{len(new)} usable anchors; at least {MIN_ANCHORS} are needed")
    if np.std(new.b) == 0 or np.std(reference.b) == 0:
        raise LinkingError("the anchors' difficulties have no spread")


_METHODS = {STOCKING_LORD: stocking_lord, MEAN_SIGMA: mean_sigma}


def link(reference: ItemParameters, new: ItemParameters, method: str = STOCKING_LORD) -> LinkingConstants:
    """Constants placing ``new`` anchor estimates on the scale of their ``reference`` values."""
    try:
        return _METHODS[method](reference, new)
    except KeyError:
        raise ValueError(f"unknown linking method {method!r}; choose one of {', '.join(METHODS)}") from None
