"""The M-steps of the EM, and the EM map that pairs each with its E-step pass.

``em_cycle`` is one plain EM cycle of a model: an E-step pass
(``kernels.EStep``) at x, then the M-step that maximises each item's
expected complete-data log-likelihood (plus its log prior under priors)
from the expected counts: compiled Newton-Raphson for the 1PL and 2PL
(``kernels.newton_1pl`` / ``kernels.newton_2pl``), Fisher scoring with step
halving for the 3PL (``_fisher_scoring``). Every path keeps the estimates
inside ``A_BOUNDS``, ``D_BOUND`` and ``C_BOUNDS``. The driver that iterates
the map (SQUAREM, the watch, the items) is ``estimate``; fixed-parameter
calibration (``fipc``) iterates it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import kernels
from .defaults import A_BOUNDS, C_BOUNDS, D_BOUND
from .model import log_curves
from .priors import NO_PRIORS, Priors, log_prior

_NEWTON_STEPS = 25
_NEWTON_TOLERANCE = 1e-10
# A Newton step longer than this (in slope or intercept) is shortened: the
# first EM cycles can start far from the optimum of a sparse item.
_MAX_STEP = 2.0

# The same bounds on the lower asymptote's logit, in which the M-step moves it.
_G_BOUNDS = (float(np.log(C_BOUNDS[0] / (1 - C_BOUNDS[0]))), float(np.log(C_BOUNDS[1] / (1 - C_BOUNDS[1]))))


@dataclass(frozen=True)
class Point:
    """One E-step pass and the M-step after it.

    ``x`` stacks the slopes and intercepts (shape 2 x items), ``loglik`` is
    the marginal log-likelihood at ``x``, ``mapped`` the parameters one plain
    EM cycle gives from ``x``, and ``change`` the largest |mapped - x|.
    """

    x: np.ndarray
    loglik: float
    mapped: np.ndarray
    change: float
    #: What the EM maximises: the log-likelihood, plus the log prior under priors (default: loglik).
    objective: float | None = None

    def __post_init__(self) -> None:
        if self.objective is None:
            object.__setattr__(self, "objective", self.loglik)


def em_cycle(estep: kernels.EStep, model: str, nodes: np.ndarray,
             priors: Priors = NO_PRIORS) -> Callable[[np.ndarray], Point]:
    """The plain EM map of ``model`` under ``priors``: x -> Point(x, loglik(x), EM(x), change).

    The 1PL and the 2PL (with or without priors on a and b) take compiled
    Newton M-steps; the 3PL the general Fisher scoring of ``_general_cycle``.
    Empirical priors take their locations from x (``Priors.at``) before the
    M-step: the cycle first maximises the log prior over the locations, then
    the EM's surrogate over the items, so the objective (log-likelihood plus
    log prior at the locations x gives) never falls.
    """
    if model == "3PL":
        return _general_cycle(estep, model, nodes, priors)

    def cycle(x: np.ndarray) -> Point:
        a, d = x
        estep.set_2pl(a, d, nodes)
        counts, loglik = estep.run()
        if model == "1PL":
            slope, new_d = kernels.newton_1pl(counts, nodes, float(a[0]), d, _NEWTON_STEPS, _NEWTON_TOLERANCE,
                                              _MAX_STEP, A_BOUNDS[0], A_BOUNDS[1], D_BOUND)
            new_a = np.full_like(a, slope)
            objective = loglik
        else:
            here = priors_at(x, priors)
            new_a, new_d = kernels.newton_2pl(counts, nodes, a, d, _NEWTON_STEPS, _NEWTON_TOLERANCE,
                                              _MAX_STEP, A_BOUNDS[0], A_BOUNDS[1], D_BOUND, *here.kernel_arguments())
            objective = loglik + float(_log_prior(x, here).sum()) if here.on_a_b else loglik
        mapped = np.stack([new_a, new_d])
        change = float(np.abs(mapped - x).max(initial=0.0))
        return Point(x, loglik, mapped, change, objective)

    return cycle


def _general_cycle(estep: kernels.EStep, model: str, nodes: np.ndarray,
                   priors: Priors) -> Callable[[np.ndarray], Point]:
    """The EM map for the 3PL, or the 2PL under priors: x = (a, d[, logit c]) per item."""
    n_nodes = nodes.size

    def cycle(x: np.ndarray) -> Point:
        a, d, c = unpack(x)
        estep.set_log_curves(log_curves(a, d, c, nodes))
        padded, loglik = estep.run()
        counts = padded[:, :n_nodes].reshape(a.size, 2, n_nodes)
        here = priors_at(x, priors)
        mapped = _fisher_scoring(counts, nodes, x, here)
        objective = loglik + float(_log_prior(x, here).sum())
        return Point(x, loglik, mapped, float(np.abs(mapped - x).max(initial=0.0)), objective)

    return cycle


def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    a, d = x[0], x[1]
    return a, d, (1.0 / (1.0 + np.exp(-x[2])) if x.shape[0] == 3 else None)


def priors_at(x: np.ndarray, priors: Priors) -> Priors:
    """``priors`` with the locations the items at x = (a, d[, logit c]) give them (fixed priors unchanged)."""
    if not (priors.on_a_b and priors.empirical):
        return priors
    with np.errstate(divide="ignore", invalid="ignore"):
        return priors.at(x[0], -x[1] / x[0])


def _log_prior(x: np.ndarray, priors: Priors) -> np.ndarray:
    """Log prior density per item at x = (a, d[, logit c]) (constants dropped; locations fixed)."""
    return log_prior(*unpack(x), priors)


def _item_objective(x: np.ndarray, n: np.ndarray, r: np.ndarray, nodes: np.ndarray, priors: Priors) -> np.ndarray:
    """Each item's expected complete-data log-likelihood plus its log prior."""
    a, d, c = unpack(x)
    curves = log_curves(a, d, c, nodes)
    return (r * curves[:, 1] + (n - r) * curves[:, 0]).sum(axis=1) + _log_prior(x, priors)


def _fisher_scoring(counts: np.ndarray, nodes: np.ndarray, x: np.ndarray, priors: Priors) -> np.ndarray:
    """M-step: maximise every item's objective by Fisher scoring, halving steps that do not improve it.

    The expected information sum_q n_q grad P grad P' / (P Q) (plus the
    priors' curvature) is positive definite, so every step goes uphill;
    halving guards the first cycles, far from the optimum. Estimates are
    kept inside ``A_BOUNDS``, ``D_BOUND`` and ``C_BOUNDS``.
    """
    n = counts[:, 0] + counts[:, 1]
    r = counts[:, 1]
    t = nodes[None, :]
    k = x.shape[0]
    x = x.copy()
    objective = _item_objective(x, n, r, nodes, priors)
    for _ in range(_NEWTON_STEPS):
        a, d, c = unpack(x)
        sig = 1.0 / (1.0 + np.exp(-(a[:, None] * t + d[:, None])))
        lower = 0.0 if c is None else c[:, None]
        p = np.clip(lower + (1.0 - lower) * sig, 1e-12, 1 - 1e-12)
        dp = np.empty((k,) + p.shape)
        dp[0] = (1.0 - lower) * sig * (1.0 - sig) * t
        dp[1] = (1.0 - lower) * sig * (1.0 - sig)
        if k == 3:
            dp[2] = (1.0 - sig) * (c * (1.0 - c))[:, None]
        weight = (r - n * p) / (p * (1.0 - p))
        gradient = np.einsum("kjq,jq->jk", dp, weight)
        information = np.einsum("kjq,ljq,jq->jkl", dp, dp, n / (p * (1.0 - p)))
        if priors.on_a_b:
            b = -d / a
            gradient[:, 0] += -1.0 / a - (np.log(a) - priors.a_meanlog) / (priors.a_sdlog**2 * a)
            information[:, 0, 0] += 1.0 / (priors.a_sdlog**2 * a**2)
            grad_b = np.stack([d / a**2, -1.0 / a], axis=1)
            gradient[:, :2] += -((b - priors.b_mean) / priors.b_sd**2)[:, None] * grad_b
            information[:, :2, :2] += grad_b[:, :, None] * grad_b[:, None, :] / priors.b_sd**2
        if k == 3:
            gradient[:, 2] += (priors.c_alpha - 1) * (1 - c) - (priors.c_beta - 1) * c
            information[:, 2, 2] += (priors.c_alpha + priors.c_beta - 2) * c * (1 - c)
        information += 1e-9 * np.eye(k)
        step = np.linalg.solve(information, gradient[:, :, None])[:, :, 0].T
        longest = np.abs(step).max(axis=0)
        scale = np.where(longest > _MAX_STEP, _MAX_STEP / np.maximum(longest, 1e-300), 1.0)
        moved = np.zeros(x.shape[1], bool)
        for _ in range(12):
            candidate = _clip(x + scale * step)
            value = _item_objective(candidate, n, r, nodes, priors)
            better = (value >= objective - 1e-10) & ~moved
            x[:, better] = candidate[:, better]
            objective[better] = value[better]
            moved |= better
            if moved.all():
                break
            scale = np.where(moved, scale, scale / 2)
        if float((np.abs(scale * step) * moved).max(initial=0.0)) < _NEWTON_TOLERANCE:
            break
    return x


def _clip(x: np.ndarray) -> np.ndarray:
    x[0] = np.clip(x[0], *A_BOUNDS)
    x[1] = np.clip(x[1], -D_BOUND, D_BOUND)
    if x.shape[0] == 3:
        x[2] = np.clip(x[2], *_G_BOUNDS)
    return x
