"""The identification watch: items whose answers do not identify them, found while the EM runs.

An item whose slope runs away to a bound or collapses onto one, or whose
difficulty no answer pins down, would hold the EM for hundreds of passes
and end with no usable estimate. ``Watch`` looks at every point the EM
accepts (``estimate._run_em``) and raises ``HoldBack`` naming such items,
with why; ``estimate.estimate_items`` then drops them and goes on from
where it was. ``unidentified`` applies the same test to finished
estimates (``holdback``).
"""

from __future__ import annotations

import numpy as np

from .model import ItemParameters, model_name
from .mstep import A_BOUNDS, D_BOUND, Point, unpack
from .quadrature import Quadrature

# Identification watch (see ``Watch``): from this many E-step passes on, an
# item whose slope sits on a bound or whose difficulty lies beyond the
# quadrature grid, at an accepted point and in the EM step from it, is held
# back; and so is an item still moving by more than the tolerance whose own
# path, extrapolated from how its steps shrank over the last _STALL_WINDOW
# passes (at most _STALL_HORIZON passes ahead), ends there. (A rule on the
# likelihood's total gain held back well identified items whenever EM was
# slow: at tight tolerances or without acceleration.)
_WATCH_FROM = 10
_STALL_WINDOW = 20
_STALL_HORIZON = 1000


def _unidentified_at(x: np.ndarray, grid_edge: float, common_slope: bool) -> dict[int, str]:
    """Positions of the items whose estimates at ``x`` say their answers do not identify them, with why."""
    a, d, _ = unpack(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = -d / a
    found: dict[int, str] = {}
    for j in range(a.size):
        if not common_slope and a[j] >= A_BOUNDS[1] * 0.9999:
            found[j] = (f"slope ran away to the bound a = {A_BOUNDS[1]:g} (its answers split almost perfectly "
                        f"by ability)")
        elif not common_slope and a[j] <= A_BOUNDS[0] * 1.0001:
            found[j] = (f"slope fell to the bound a = {A_BOUNDS[0]:g} (its answers do not rise with ability; "
                        f"check its answer key)")
        elif not abs(b[j]) <= grid_edge or abs(d[j]) >= D_BOUND * 0.9999:
            found[j] = f"difficulty b = {b[j]:.3g} beyond the ability grid (+-{grid_edge:g})"
    return found


def unidentified(params: ItemParameters, quadrature: Quadrature, model: str) -> dict[int, str]:
    """The items of ``params`` (NaN ones skipped) on a slope bound or with a difficulty off the grid, with why."""
    finite = np.flatnonzero(np.isfinite(params.a) & np.isfinite(params.b))
    x = np.stack([params.a[finite], params.d[finite]])
    found = _unidentified_at(x, float(np.abs(quadrature.nodes).max()), common_slope=model_name(model) == "1PL")
    return {int(finite[j]): why for j, why in found.items()}


class HoldBack(Exception):
    """Raised from inside the EM when items turn out not to be identified: stop, drop them, go on."""

    def __init__(self, point: "Point", passes: int, items: dict[int, str]) -> None:
        super().__init__(items)
        self.point, self.passes, self.items = point, passes, items


class Watch:
    """Watches the accepted points of one EM run for items the data do not identify.

    Two signs, both within a bounded number of passes: an estimate that
    reaches a slope bound or leaves the ability grid, at a point and in the
    plain EM step from it (a slope running away under near-separation, a
    slope collapsing on an item whose answers do not rise with ability, a
    difficulty no answer pins down); and an item whose own path heads there:
    a converging EM shrinks each item's steps by a ratio below 1 a pass
    towards a limit inside the bounds, however slowly, while an item on a
    flat ridge keeps its pace (or slows too little) and its extrapolated
    limit lies on a bound or off the grid (``_heading_off``). Each item is
    judged by its own steps, never by the likelihood's total.
    """

    def __init__(self, first_pass: int, tolerance: float, grid_edge: float, common_slope: bool) -> None:
        self.first_pass = first_pass
        self.tolerance = tolerance
        self.grid_edge = grid_edge
        self.common_slope = common_slope
        self.seen: list[tuple[int, float]] = []

    def __call__(self, passes: int, point: "Point") -> None:
        total = self.first_pass + passes
        step = point.mapped - point.x
        self.seen.append((total, np.abs(step).max(axis=0)))
        if total < _WATCH_FROM or point.change < self.tolerance:
            return
        found = {j: why for j, why in _unidentified_at(point.x, self.grid_edge, self.common_slope).items()
                 if j in _unidentified_at(point.mapped, self.grid_edge, self.common_slope)}
        if not found:
            found = self._heading_off(total, point, step)
        if found:
            raise HoldBack(point, passes, found)

    def _heading_off(self, total: int, point: "Point", step: np.ndarray) -> dict[int, str]:
        """Items still moving whose own path, extrapolated to its limit, ends on a slope bound or off the grid.

        Each item's plain EM step is compared with its step ``_STALL_WINDOW``
        passes before: a converging EM shrinks it by a ratio rho < 1 a pass
        and so has moved, after this step, a further step * rho / (1 - rho)
        at most (Aitken's extrapolation of a geometric path); an item whose
        steps do not shrink is projected ``_STALL_HORIZON`` passes ahead at
        its pace. Only items whose projected limit is not identified are
        held back, so a slow EM converging inside the bounds loses none.
        """
        while len(self.seen) > 1 and self.seen[1][0] <= total - _STALL_WINDOW:
            del self.seen[0]
        then, before = self.seen[0]
        if then > total - _STALL_WINDOW:
            return {}
        now = self.seen[-1][1]
        moving = now > self.tolerance
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.where(before > 0, (now / before) ** (1.0 / (total - then)), np.inf)
            ahead = np.where(rho < 1.0 - 1.0 / _STALL_HORIZON, rho / (1.0 - rho), _STALL_HORIZON)
        limit = point.mapped + step * ahead
        found = _unidentified_at(limit, self.grid_edge, self.common_slope)
        return {j: (f"its EM path heads off the identified range: {why} at the limit its steps lead to "
                    f"(still moving by {now[j]:.2g} a pass, the steps shrinking by a factor {rho[j]:.3g} a pass)")
                for j, why in found.items() if moving[j]}

    def at_end(self, point: "Point") -> None:
        """Items that ended the EM on a slope bound or off the grid are not identified either."""
        found = _unidentified_at(point.x, self.grid_edge, self.common_slope)
        if found:
            raise HoldBack(point, 0, found)
