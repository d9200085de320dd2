"""Marginal maximum likelihood item calibration by Bock-Aitkin EM, accelerated by SQUAREM.

The method of Bock & Aitkin (1981, Psychometrika 46, 443-459) on the sparse
response list: the E-step spreads each person's posterior over the
quadrature grid and adds it to the expected counts of the items the person
answered (``kernels.EStep``); the M-step maximises each item's expected
complete-data log-likelihood (``mstep``: Newton-Raphson for the 1PL and
2PL, Fisher scoring for the 3PL). The population is N(0, 1), the metric logistic
(D = 1), the grid and the convergence rule (the largest change of any slope
or intercept below ``tolerance``) those of R mirt, so that the estimates can
be held against mirt's. Plain 1PL/2PL uses no item priors.

Plain EM converges linearly and slowly; by default the iterations are
accelerated with SQUAREM (Varadhan & Roland 2008, Scand. J. Statist. 35,
335-353), scheme S3, with the step-length safeguards of the authors' R
package ``SQUAREM`` and a fallback to plain EM whenever an extrapolated point
would lower the log-likelihood; see ``_run_em``. On simulated sparse data it
needs a third to a half of the E-step passes of plain EM and lands on the
same fixed point: the convergence rule is applied to a plain EM cycle from
the point returned. Items that turn out not to be identified are held back
while it runs (``watch``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import kernels
from .model import ItemParameters, model_name
from .defaults import A_BOUNDS, C_BOUNDS, D_BOUND, DEFAULT_MAX_ITERATIONS, DEFAULT_MIN_RESPONSES, DEFAULT_TOLERANCE
from .mstep import Point, em_cycle, priors_at, unpack
from .priors import NO_PRIORS, Priors
from .quadrature import Quadrature
from .responses import Responses
from .watch import HoldBack, Watch

#: Progress callback: (iteration, log-likelihood, largest parameter change).
#: Called once for every point the EM accepts, with the number of E-step
#: passes so far, the log-likelihood at that point, and the largest change a
#: plain EM cycle from that point makes.
Progress = Callable[[int, float, float], None]


#: The smallest tolerance for which the E-step may store log curves and
#: posteriors in float32 (see kernels.EStep).
FLOAT32_TOLERANCE = 1e-6

# SQUAREM step-length control (the R package's defaults step.min0 = 1,
# step.max0 = 1, mstep = 4): the step length alpha is kept in
# [1, step_max]; step_max starts at 1 (plain EM), is multiplied by 4 each
# time a step as long as allowed succeeds, and divided by 4 (not below 1)
# when one fails.
_SQUAREM_STEP_MAX0 = 1.0
_SQUAREM_MSTEP = 4.0


@dataclass(frozen=True)
class ItemCalibration:
    """What a calibration found, item by item, and how the EM went.

    ``params`` has one entry per item of the input; items that were not
    estimated hold NaN and are named, with the reason, in ``excluded``.
    ``iterations`` counts E-step passes (each followed by an M-step; with
    acceleration this includes passes spent on extrapolations that were
    rejected). ``loglik`` is the log-likelihood at the returned parameters,
    and ``max_change`` the largest change of a slope or intercept that one
    plain EM cycle from them makes (``converged`` when below ``tolerance``).
    ``history`` holds the log-likelihood of every accepted point in order.
    """

    model: str
    params: ItemParameters
    estimated: np.ndarray
    excluded: dict[int, str]
    responses_per_item: np.ndarray
    loglik: float
    iterations: int
    converged: bool
    max_change: float
    n_persons: int
    n_obs: int
    tolerance: float
    quadrature_points: int
    history: list[float] = field(default_factory=list, repr=False)
    #: Items whose estimate ended on a bound, and which bound.
    at_bounds: dict[int, str] = field(default_factory=dict)
    #: log-likelihood + log prior density at the estimates (equal to ``loglik`` without priors).
    log_posterior: float | None = None
    #: Items held back, with why: their answers do not identify their parameters, or (``hold_back``)
    #: they failed a later check. All of them are in ``excluded`` too.
    held_back: dict[int, str] = field(default_factory=dict)
    #: When the EM did not converge: the items still moving by more than the tolerance, and by how much.
    still_moving: dict[int, float] = field(default_factory=dict)
    #: The priors the estimates are modes under, empirical locations where the EM left them.
    priors: Priors = NO_PRIORS

    def hold_back(self, reasons: dict[int, str]) -> "ItemCalibration":
        """This calibration without the items of ``reasons`` (item index -> why), which it lists as held back."""
        if not reasons:
            return self
        index = np.fromiter(reasons, dtype=np.int64)
        a, b, c = self.params.a.copy(), self.params.b.copy(), self.params.c.copy()
        a[index], b[index], c[index] = np.nan, np.nan, 0.0
        estimated = self.estimated.copy()
        estimated[index] = False
        return dataclasses.replace(
            self, params=ItemParameters(a, b, c), estimated=estimated,
            excluded=dict(sorted({**self.excluded, **reasons}.items())),
            held_back=dict(sorted({**self.held_back, **reasons}.items())),
            still_moving={j: v for j, v in self.still_moving.items() if j not in reasons})


def _item_counts(responses: Responses) -> tuple[np.ndarray, np.ndarray]:
    """Responses and correct responses per item (integer counts, no float64 copies of the data)."""
    return kernels.count_by_item(responses.item, responses.correct, responses.n_items)


def screen_items(responses: Responses, min_responses: int, model: str = "1PL") -> tuple[np.ndarray, dict[int, str]]:
    """Which items can be estimated, and why each of the others cannot.

    An item needs ``min_responses`` answers, some right and some wrong; for
    the 2PL and 3PL, ``min_responses`` of its answers must also come from
    students who answered another such item, since a student's only answer
    says nothing about how the item discriminates.
    """
    n, r = _item_counts(responses)
    keep = (n >= min_responses) & (r > 0) & (r < n)
    excluded: dict[int, str] = {}
    for j in np.flatnonzero(~keep):
        if n[j] < min_responses:
            excluded[int(j)] = f"held back: only {n[j]} responses (minimum {min_responses})"
        elif r[j] == n[j]:
            excluded[int(j)] = f"all {n[j]} responses correct"
        else:
            excluded[int(j)] = f"all {n[j]} responses wrong"
    if model != "1PL" and keep.any():
        on_kept = keep[responses.item]
        running = np.concatenate([[0], np.cumsum(on_kept)])
        per_person = running[responses.person_ptr[1:]] - running[responses.person_ptr[:-1]]
        linked = on_kept & np.repeat(per_person >= 2, np.diff(responses.person_ptr))
        informative = np.bincount(responses.item[linked], minlength=responses.n_items)
        for j in np.flatnonzero(keep & (informative < min_responses)):
            keep[j] = False
            excluded[int(j)] = (f"not identified: only {informative[j]} of its {n[j]} answers come from students who "
                                f"answered other items (minimum {min_responses})")
    return keep, excluded


#: The logistic-normal ogive scaling constant: 1 / (1 + exp(-x)) ~ Phi(x / 1.702).
_OGIVE = 1.702


def _start_values(counts_n: np.ndarray, counts_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slopes 1, and intercepts that give each item its proportion correct p in the N(0, 1) population.

    With the normal-ogive approximation of the logistic, P(correct) =
    E[1 / (1 + exp(-(a theta + d)))] ~ Phi(d / sqrt(1.702^2 + a^2)), so
    logit(p) ~ 1.702 d / sqrt(1.702^2 + a^2). (The first version scaled
    logit(p) by 1.7, which starts the intercepts too far out: EM then
    needed up to twice the iterations.)
    """
    p = np.clip(counts_r / counts_n, 0.02, 0.98)
    a = np.ones(p.size)
    return a, np.log(p / (1.0 - p)) * np.sqrt(_OGIVE**2 + a**2) / _OGIVE


class _OutOfPasses(Exception):
    pass


def _bounds_reached(x: np.ndarray, kept: np.ndarray) -> dict[int, str]:
    a, d, c = unpack(x)
    reached: dict[int, str] = {}
    for j, item in enumerate(kept):
        hits = []
        if a[j] <= A_BOUNDS[0] * 1.0001 or a[j] >= A_BOUNDS[1] * 0.9999:
            hits.append(f"a at {a[j]:.3g}")
        if abs(d[j]) >= D_BOUND * 0.9999:
            hits.append(f"d at {d[j]:.3g}")
        if c is not None and (c[j] <= C_BOUNDS[0] * 1.01 or c[j] >= C_BOUNDS[1] * 0.999):
            hits.append(f"c at {c[j]:.3g}")
        if hits:
            reached[int(item)] = ", ".join(hits) + " (a bound)"
    return reached


def _run_em(
    cycle: Callable[[np.ndarray], Point],
    start: np.ndarray,
    tolerance: float,
    max_passes: int,
    accelerate: bool,
    on_accept: Callable[[int, Point], None],
    checkpoint: Callable[[], None] | None = None,
) -> tuple[Point, int, bool]:
    """Iterate the EM map ``cycle`` from ``start``; return (last accepted point, passes, converged).

    Plain EM accepts every point x, EM(x), EM(EM(x)), ... With
    ``accelerate``, after two plain cycles x0 -> x1 = EM(x0) -> x2 = EM(x1)
    SQUAREM (Varadhan & Roland 2008, scheme S3) extrapolates along the
    quadratic path through them:

        r = x1 - x0,  v = (x2 - x1) - r,  alpha = ||r|| / ||v||,
        x' = x0 + 2 alpha r + alpha^2 v

    (alpha = 1 gives x' = x2, plain EM). alpha is clipped to [1, step_max]
    and step_max adapted as in the R package ``SQUAREM``. x' is accepted
    only if its log-likelihood is finite and not below that of x1, the last
    accepted point; otherwise the iteration falls back to the plain EM point
    x2. An accepted x' starts the next cycle.

    Every accepted point's log-likelihood is thus at least that of the one
    before (plain EM points by the EM inequality, x' by the check), and the
    iteration stops at the first accepted point from which one plain EM
    cycle changes no parameter by more than ``tolerance``: that point is
    returned with its own log-likelihood. ``max_passes`` bounds the number of
    E-step passes, rejected extrapolations included. ``checkpoint`` is
    called before every pass (an accepted point may take three), and what
    it raises ends the iteration.
    """
    passes = 0
    accepted: Point | None = None

    def evaluate(x: np.ndarray) -> Point:
        nonlocal passes
        if passes >= max_passes:
            raise _OutOfPasses
        if checkpoint is not None:
            checkpoint()
        passes += 1
        return cycle(x)

    def accept(point: Point) -> bool:
        nonlocal accepted
        accepted = point
        on_accept(passes, point)
        return point.change < tolerance

    step_max = _SQUAREM_STEP_MAX0
    try:
        p0 = evaluate(start)
        if accept(p0):
            return p0, passes, True
        while True:
            p1 = evaluate(p0.mapped)
            if accept(p1):
                return p1, passes, True
            if not accelerate:
                p0 = p1
                continue
            # SQUAREM S3 step length along x0 -> x1 -> x2.
            r = p1.x - p0.x
            v = p1.mapped - p1.x - r
            rr, vv = float(np.vdot(r, r)), float(np.vdot(v, v))
            alpha = min(max(np.sqrt(rr / vv) if vv > 0.0 else step_max, 1.0), step_max)
            candidate = None
            if alpha > 1.0:
                x = p0.x + 2.0 * alpha * r + alpha * alpha * v
                if np.isfinite(x).all():
                    candidate = evaluate(x)
                    if not (np.isfinite(candidate.objective) and candidate.objective >= p1.objective):
                        candidate = None
                if candidate is None:  # rejected: this cycle ends as plain EM
                    if alpha == step_max:
                        step_max = max(_SQUAREM_STEP_MAX0, step_max / _SQUAREM_MSTEP)
                    alpha = 1.0
            if alpha == step_max:
                step_max *= _SQUAREM_MSTEP
            p0 = candidate if candidate is not None else evaluate(p1.mapped)
            if accept(p0):
                return p0, passes, True
    except _OutOfPasses:
        pass
    assert accepted is not None
    return accepted, passes, False


def estimate_items(
    responses: Responses,
    model: str = "2PL",
    *,
    quadrature: Quadrature | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    min_responses: int = DEFAULT_MIN_RESPONSES,
    progress: Progress | None = None,
    accelerate: bool = True,
    priors: Priors = NO_PRIORS,
    checkpoint: Callable[[], None] | None = None,
) -> ItemCalibration:
    """Calibrate the items of ``responses`` by marginal maximum likelihood.

    Items with fewer than ``min_responses`` answers, or whose answers are all
    right or all wrong, carry no information on their parameters: they are
    not estimated and are listed in ``excluded``. Items whose answers turn
    out not to identify their parameters while the EM runs (``Watch``) are
    held back the same way, named in ``held_back`` too, and the EM goes
    on for the others from where it was.

    ``checkpoint`` is called before every E-step pass, not only at accepted
    points as ``progress`` is: a caller that must stop promptly (a shutdown)
    raises from it, and the exception ends the fit.

    ``max_iterations`` bounds the E-step passes. ``accelerate=False`` runs
    plain EM; the default SQUAREM acceleration reaches the same fixed point
    (within ``tolerance``-sized steps of plain EM) in fewer passes.

    The 3PL's lower asymptote has a Beta prior (``Priors``); ``priors`` with
    ``on_a_b`` adds normal priors on log a and b to the 2PL and 3PL
    (Bayes modal estimation; the 1PL stays plain ML), empirical ones
    centred on the items every cycle (``priors.Priors``).
    """
    model = model_name(model)
    if tolerance <= 0 or max_iterations < 1:
        raise ValueError("tolerance must be positive and max_iterations at least 1")
    quadrature = quadrature or Quadrature.normal()
    nodes = np.ascontiguousarray(quadrature.nodes, dtype=np.float64)
    grid_edge = float(np.abs(nodes).max())

    keep, excluded = screen_items(responses, min_responses, model)
    held_back = {j: why for j, why in excluded.items() if why.startswith("not identified")}
    kept = np.flatnonzero(keep)
    n_items, r_items = _item_counts(responses)
    a, d = _start_values(n_items[kept], r_items[kept])
    x = np.stack([a, d])
    if model == "3PL":
        prior_mean = priors.c_alpha / (priors.c_alpha + priors.c_beta)
        x = np.stack([a, d, np.full(a.size, np.log(prior_mean / (1 - prior_mean)))])

    history: list[float] = []
    passes, converged, final = 0, False, None
    # float32 tables are exact enough for tolerances down to 1e-6 (their
    # rounding moves the EM map by about 3e-8); below that, float64.
    dtype = np.float32 if tolerance >= FLOAT32_TOLERANCE else np.float64

    def cycle_over(items: np.ndarray) -> Callable[[np.ndarray], Point]:
        """The EM map over the responses to ``items`` (a fresh E-step each time items are held back)."""
        mask = np.zeros(responses.n_items, bool)
        mask[items] = True
        data, _ = responses.restrict_items(mask)
        return em_cycle(kernels.EStep(data, quadrature.log_weights, dtype=dtype), model, nodes, priors)

    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        while kept.size and passes < max_iterations:
            cycle = cycle_over(kept)
            watch = Watch(passes, tolerance, grid_edge, common_slope=model == "1PL")

            def on_accept(done: int, point: Point, offset: int = passes, watch: Watch = watch) -> None:
                history.append(point.objective)
                if progress is not None:
                    progress(offset + done, point.objective, point.change)
                watch(done, point)

            try:
                final, used, converged = _run_em(cycle, x, tolerance, max_iterations - passes, accelerate, on_accept,
                                                 checkpoint)
                passes += used
                watch.at_end(final)
                break
            except HoldBack as stop:
                passes += stop.passes
                final, converged = stop.point, False
                still = np.ones(kept.size, bool)
                for position, why in stop.items.items():
                    still[position] = False
                    excluded[int(kept[position])] = held_back[int(kept[position])] = f"not identified: {why}"
                x, kept, final = stop.point.x[:, still], kept[still], None
        if final is None and kept.size:
            # The passes ran out right after items were held back: one more
            # pass gives the log-likelihood of what is left.
            final = cycle_over(kept)(x)
            passes += 1
    still_moving: dict[int, float] = {}
    if final is not None:
        x, loglik, change, log_posterior = final.x, final.loglik, final.change, final.objective
        at_bounds = _bounds_reached(x, kept)
        if not converged:
            moved = np.abs(final.mapped - final.x).max(axis=0)
            still_moving = {int(kept[j]): float(moved[j]) for j in np.flatnonzero(moved >= tolerance)}
    else:
        loglik, change, log_posterior, at_bounds = 0.0, np.inf, 0.0, {}
        converged = converged and not kept.size

    estimated = np.zeros(responses.n_items, bool)
    estimated[kept] = True
    a, d, c = unpack(x)
    full_a = np.full(responses.n_items, np.nan)
    full_d = np.full(responses.n_items, np.nan)
    full_c = np.zeros(responses.n_items)
    full_a[kept], full_d[kept] = a, d
    if c is not None:
        full_c[kept] = c
    params = ItemParameters.from_intercepts(full_a, full_d, full_c)
    return ItemCalibration(
        model=model,
        params=params,
        estimated=estimated,
        excluded=dict(sorted(excluded.items())),
        responses_per_item=n_items,
        loglik=float(loglik),
        iterations=passes,
        converged=converged,
        max_change=float(change),
        n_persons=responses.n_persons,
        n_obs=int(n_items[kept].sum()),
        tolerance=tolerance,
        quadrature_points=nodes.size,
        history=history,
        at_bounds=at_bounds,
        log_posterior=float(log_posterior),
        held_back=dict(sorted(held_back.items())),
        still_moving=still_moving,
        priors=priors_at(x, priors) if model != "1PL" and final is not None else priors,
    )
