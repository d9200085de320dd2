"""Marginal maximum likelihood item calibration by Bock-Aitkin EM.

The method of Bock & Aitkin (1981, Psychometrika 46, 443-459) on the sparse
response list: the E-step spreads each person's posterior over the
quadrature grid and adds it to the expected counts of the items the person
answered (``kernels.expected_counts``); the M-step maximises each item's
expected complete-data log-likelihood by Newton-Raphson. The population is
N(0, 1), the metric logistic (D = 1), the grid and the convergence rule (the
largest change of any slope or intercept below ``tolerance``) those of R
mirt, so that the estimates can be held against mirt's. Plain 1PL/2PL uses
no item priors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import kernels
from .model import ItemParameters, log_curves, model_name
from .quadrature import Quadrature
from .responses import Responses

#: Progress callback: (iteration, log-likelihood, largest parameter change).
Progress = Callable[[int, float, float], None]

DEFAULT_TOLERANCE = 1e-4
DEFAULT_MAX_ITERATIONS = 500
DEFAULT_MIN_RESPONSES = 20

_NEWTON_STEPS = 25
_NEWTON_TOLERANCE = 1e-10
# A Newton step longer than this (in slope or intercept) is shortened: the
# first EM cycles can start far from the optimum of a sparse item.
_MAX_STEP = 2.0


@dataclass(frozen=True)
class ItemCalibration:
    """What a calibration found, item by item, and how the EM went.

    ``params`` has one entry per item of the input; items that were not
    estimated hold NaN and are named, with the reason, in ``excluded``.
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


def screen_items(responses: Responses, min_responses: int) -> tuple[np.ndarray, dict[int, str]]:
    """Which items can be estimated, and why each of the others cannot."""
    n, r = responses.item_counts()
    keep = (n >= min_responses) & (r > 0) & (r < n)
    excluded: dict[int, str] = {}
    for j in np.flatnonzero(~keep):
        if n[j] < min_responses:
            excluded[int(j)] = f"only {n[j]} responses (minimum {min_responses})"
        elif r[j] == n[j]:
            excluded[int(j)] = f"all {n[j]} responses correct"
        else:
            excluded[int(j)] = f"all {n[j]} responses wrong"
    return keep, excluded


def _start_values(counts_n: np.ndarray, counts_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.clip(counts_r / counts_n, 0.02, 0.98)
    return np.ones(p.size), np.log(p / (1.0 - p)) * 1.7


def _newton_2pl(counts: np.ndarray, nodes: np.ndarray, a: np.ndarray, d: np.ndarray):
    """Maximise every item's expected log-likelihood in (a, d), all items at once."""
    n = counts[:, 0, :] + counts[:, 1, :]
    r = counts[:, 1, :]
    t = nodes[None, :]
    for _ in range(_NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(a[:, None] * t + d[:, None])))
        resid = r - n * p
        w = n * p * (1.0 - p)
        g_a = (resid * t).sum(1)
        g_d = resid.sum(1)
        h_aa = (w * t * t).sum(1)
        h_ad = (w * t).sum(1)
        h_dd = w.sum(1)
        det = h_aa * h_dd - h_ad**2
        det = np.where(det > 1e-12, det, 1e-12)
        step_a = (h_dd * g_a - h_ad * g_d) / det
        step_d = (h_aa * g_d - h_ad * g_a) / det
        longest = np.maximum(np.abs(step_a), np.abs(step_d))
        shrink = np.where(longest > _MAX_STEP, _MAX_STEP / np.maximum(longest, 1e-300), 1.0)
        a = a + shrink * step_a
        d = d + shrink * step_d
        if longest.max(initial=0.0) < _NEWTON_TOLERANCE:
            break
    return a, d


def _newton_1pl(counts: np.ndarray, nodes: np.ndarray, a: np.ndarray, d: np.ndarray):
    """Maximise in (common a, d_1..d_J): Newton with the Schur complement of the slope."""
    n = counts[:, 0, :] + counts[:, 1, :]
    r = counts[:, 1, :]
    t = nodes[None, :]
    slope = float(a[0])
    for _ in range(_NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(slope * t + d[:, None])))
        resid = r - n * p
        w = n * p * (1.0 - p)
        g_a = float((resid * t).sum())
        g_d = resid.sum(1)
        h_aa = float((w * t * t).sum())
        h_ad = (w * t).sum(1)
        h_dd = np.maximum(w.sum(1), 1e-12)
        schur = h_aa - float((h_ad**2 / h_dd).sum())
        step_a = (g_a - float((h_ad * g_d / h_dd).sum())) / max(schur, 1e-12)
        step_d = (g_d - h_ad * step_a) / h_dd
        longest = max(abs(step_a), float(np.abs(step_d).max(initial=0.0)))
        shrink = _MAX_STEP / longest if longest > _MAX_STEP else 1.0
        slope += shrink * step_a
        d = d + shrink * step_d
        if longest < _NEWTON_TOLERANCE:
            break
    return np.full_like(a, slope), d


_M_STEPS = {"1PL": _newton_1pl, "2PL": _newton_2pl}


def estimate_items(
    responses: Responses,
    model: str = "2PL",
    *,
    quadrature: Quadrature | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_iterations: int = DEFAULT_MAX_ITERATIONS,
    min_responses: int = DEFAULT_MIN_RESPONSES,
    progress: Progress | None = None,
) -> ItemCalibration:
    """Calibrate the items of ``responses`` by marginal maximum likelihood.

    Items with fewer than ``min_responses`` answers, or whose answers are all
    right or all wrong, carry no information on their parameters: they are
    not estimated and are listed in ``excluded``.
    """
    model = model_name(model)
    if model not in _M_STEPS:
        raise NotImplementedError(f"model {model} is not available yet")
    if tolerance <= 0 or max_iterations < 1:
        raise ValueError("tolerance must be positive and max_iterations at least 1")
    quadrature = quadrature or Quadrature.normal()
    nodes, log_prior = quadrature.nodes, quadrature.log_weights

    keep, excluded = screen_items(responses, min_responses)
    data, kept = responses.restrict_items(keep)
    n_items, r_items = data.item_counts()
    a, d = _start_values(n_items, r_items)
    if model == "1PL":
        a[:] = 1.0
    m_step = _M_STEPS[model]

    history: list[float] = []
    converged = False
    change = np.inf
    iteration = 0
    if kept.size:
        for iteration in range(1, max_iterations + 1):
            counts, loglik = kernels.expected_counts(data, log_curves(a, d, None, nodes), log_prior)
            history.append(loglik)
            new_a, new_d = m_step(counts, nodes, a, d)
            change = float(max(np.abs(new_a - a).max(), np.abs(new_d - d).max()))
            a, d = new_a, new_d
            if progress is not None:
                progress(iteration, loglik, change)
            if change < tolerance:
                converged = True
                break
        # The log-likelihood at the estimates returned, not one cycle before.
        _, loglik = kernels.expected_counts(data, log_curves(a, d, None, nodes), log_prior)
    else:
        loglik = 0.0

    full_a = np.full(responses.n_items, np.nan)
    full_d = np.full(responses.n_items, np.nan)
    full_a[kept], full_d[kept] = a, d
    params = ItemParameters.from_intercepts(full_a, full_d)
    return ItemCalibration(
        model=model,
        params=params,
        estimated=keep,
        excluded=excluded,
        responses_per_item=responses.item_counts()[0],
        loglik=float(loglik),
        iterations=iteration,
        converged=converged,
        max_change=float(change),
        n_persons=responses.n_persons,
        n_obs=data.n_obs,
        tolerance=tolerance,
        quadrature_points=nodes.size,
        history=history,
    )
