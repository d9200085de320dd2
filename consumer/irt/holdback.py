"""Which estimated items a calibration holds back, and why: the one policy a run applies.

An item held back is not written, not scored on and not linked on; it is
named with its reason. The rules, in the order a run meets them:

- during the EM, an item whose answers turn out not to identify its
  parameters (a slope on a bound, a difficulty off the grid, a stall) is
  held back and the EM goes on without it (``watch.Watch``);
- after the EM, an item still moving when the EM stopped at its cap has no
  estimate yet (``unconverged``);
- after a fixed-parameter calibration, a free item that ended on a slope
  bound or off the grid, or was still moving (``after_fixed_calibration``);
- an item whose information is singular has no standard errors, and a
  parameter without a standard error is not one to write (``without_errors``).
"""

from __future__ import annotations

import numpy as np

from .estimate import ItemCalibration
from .quadrature import Quadrature
from .watch import unidentified


def unconverged(fit: ItemCalibration) -> ItemCalibration:
    """``fit`` without the items still moving by more than its tolerance when the EM stopped."""
    return fit.hold_back({j: f"not converged: still moving by {v:.2g} a pass after {fit.iterations} EM passes"
                          for j, v in fit.still_moving.items()})


def after_fixed_calibration(fit: ItemCalibration, free: np.ndarray, still_moving: dict[int, float],
                            cycles: int, quadrature: Quadrature) -> ItemCalibration:
    """``fit`` (a fixed-parameter calibration's estimates) without its free items unidentified or still moving."""
    problems = {j: f"not identified: {why} in the fixed-parameter calibration"
                for j, why in unidentified(fit.params, quadrature, fit.model).items() if free[j]}
    problems.update({j: f"not converged: still moving by {v:.2g} a cycle after {cycles} fixed-parameter "
                        f"calibration cycles" for j, v in still_moving.items()})
    return fit.hold_back(problems)


def without_errors(fit: ItemCalibration, a_se: np.ndarray, b_se: np.ndarray, free: np.ndarray) -> ItemCalibration:
    """``fit`` without the free items whose standard errors could not be computed."""
    singular = free & fit.estimated & ~(np.isfinite(a_se) & np.isfinite(b_se))
    return fit.hold_back({int(j): "not identified: the information about its parameters is singular, so it has "
                                  "no standard errors" for j in np.flatnonzero(singular)})
