"""What every method of standard errors shares: the derivatives, the free parameters, the exact blocks.

``information`` computes standard errors from the observed information by
one of two methods (``information_exact``, ``information_approximate``);
both start here: the score and curvature of log P(y | theta) per item,
answer and node (``_derivative_tables``), the population's and the priors'
terms, where each free parameter sits in the matrix (``Design``, built by
``make_design``), the first pass over the persons with the exact diagonal
blocks it gives (``first_pass_blocks``), and the small inverses both
methods need. The mathematics: docs/psychometrics.md, "Standard errors".
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy.special import expit

from . import information_kernels as passes
from .expected import FinalEStep
from .model import ItemParameters
from .responses import Responses

#: Polynomials of theta per person on which the approximation projects the cross terms (the first pass's cache).
BASIS = 3
#: A block with an eigenvalue below this fraction of its largest (after scaling to unit diagonal, for the
#: whole matrix) does not identify its parameters.
SINGULAR = 1e-10


# --------------------------------------------------------------------------- derivatives


def _derivative_tables(params: ItemParameters, nodes: np.ndarray, free_c: bool):
    """Per item, response and node: the score s (k) and minus the Hessian -h (k x k) of log P(y | theta).

    Parameters (a, d[, c]), k = 2 or 3, with P = c + (1 - c) sig(a t + d).
    Written without dividing by P Q, so that items far from a node (P or Q
    below 1e-300) give finite values: with v = (t, 1), n = 1 - sig and
    r = (1 - c) sig / P (1 when c = 0),

        y = 1:  s = (r n v, n / P),
                -h = [[r n (r n - 1 + 2 sig) v v', r n v (1 + (1 - c) n / P) / (1 - c)], [., n^2 / P^2]];
        y = 0:  s = (-sig v, -1 / (1 - c)),
                -h = [[sig n v v', 0], [0, 1 / (1 - c)^2]].

    The slope's score is always t times the intercept's (the passes rely on it).
    """
    a, d, c = params.a[:, None], params.d[:, None], params.c[:, None]
    t = nodes[None, :]
    z = a * t + d
    sig = expit(z)
    rest = expit(-z)  # 1 - sig without cancellation
    k = 3 if free_c else 2
    shape = (len(params), 2, nodes.size)
    scores = np.zeros(shape + (k,))
    neg_hessian = np.zeros(shape + (k, k))
    if free_c:
        p = c + (1.0 - c) * sig
        r = (1.0 - c) * sig / p
    else:
        p = sig
        r = np.ones_like(sig)
    right, wrong = r * rest, -sig
    curvature_right = r * rest * (r * rest - 1.0 + 2.0 * sig)
    curvature_wrong = sig * rest
    for y, first, second in ((1, right, curvature_right), (0, wrong, curvature_wrong)):
        scores[:, y, :, 0] = first * t
        scores[:, y, :, 1] = first
        neg_hessian[:, y, :, 0, 0] = second * t * t
        neg_hessian[:, y, :, 0, 1] = neg_hessian[:, y, :, 1, 0] = second * t
        neg_hessian[:, y, :, 1, 1] = second
    if free_c:
        scores[:, 1, :, 2] = rest / p
        scores[:, 0, :, 2] = -1.0 / (1.0 - c)
        cross = r * rest / (1.0 - c) * (1.0 + (1.0 - c) * rest / p)
        neg_hessian[:, 1, :, 0, 2] = neg_hessian[:, 1, :, 2, 0] = cross * t
        neg_hessian[:, 1, :, 1, 2] = neg_hessian[:, 1, :, 2, 1] = cross
        neg_hessian[:, 1, :, 2, 2] = (rest / p) ** 2
        neg_hessian[:, 0, :, 2, 2] = 1.0 / (1.0 - c) ** 2 + 0.0 * t
    return scores, neg_hessian


def _population_derivatives(nodes: np.ndarray, mean: float, sd: float):
    """Derivatives over (mean, sd) of log w_q, w = N(mean, sd^2) normalised on the nodes.

    log w_q = u_q - log sum exp(u), u_q = -(t_q - mean)^2 / (2 sd^2). Returns
    (grad u [Q, 2], -Hess u [Q, 2, 2], E_w[Hess u] + Cov_w(grad u) [2, 2]):
    the scores need only grad u (centring under each posterior drops the
    normalisation's gradient), and minus the Hessian of log w_q is the
    second plus the third.
    """
    z = nodes - mean
    grad = np.stack([z / sd**2, z**2 / sd**3], axis=1)
    neg_hess = np.empty((nodes.size, 2, 2))
    neg_hess[:, 0, 0] = 1.0 / sd**2
    neg_hess[:, 0, 1] = neg_hess[:, 1, 0] = 2.0 * z / sd**3
    neg_hess[:, 1, 1] = 3.0 * z**2 / sd**4
    u = -0.5 * (z / sd) ** 2
    w = np.exp(u - u.max())
    w /= w.sum()
    centred = grad - w @ grad
    normaliser = -(w @ neg_hess.reshape(-1, 4)).reshape(2, 2) + centred.T @ (w[:, None] * centred)
    return grad, neg_hess, normaliser


def prior_curvature(params: ItemParameters, priors, model: str) -> np.ndarray:
    """Minus the Hessian of the log prior per item over (a, d[, c]), for Bayes-modal estimates.

    The 3PL's lower asymptote has its Beta prior always; with ``priors.on_a_b``
    the 2PL and 3PL have log a ~ N(log_a_mode, a_sdlog^2) and b = -d / a ~
    N(b_mean, b_sd^2), empirical priors centred where these items put them
    (``Priors.at``: the locations the EM converged to, taken as known, as
    empirical Bayes does). In (a, d) the penalty on a is, up to a constant,
    the lognormal's log density -log a - (log a - m)^2 / (2 s^2) with
    m = ``priors.a_meanlog``; the normal on b contributes
    (grad b grad b' + (b - b_mean) Hess b) / b_sd^2 with grad b = (d / a^2, -1 / a)
    and Hess b = [[-2 d / a^3, 1 / a^2], [1 / a^2, 0]]. The Beta prior is on c
    itself, so its curvature in c is (alpha - 1) / c^2 + (beta - 1) / (1 - c)^2:
    the EM maximises the same log posterior over logit c, whose mode is the
    same point, and the SE of c is taken in c.
    """
    k = 3 if model == "3PL" else 2
    out = np.zeros((len(params), k, k))
    if priors is None or model == "1PL":
        return out
    a, d, c = params.a, params.d, params.c
    priors = priors.at(a, params.b)
    if model == "3PL":
        out[:, 2, 2] = (priors.c_alpha - 1) / c**2 + (priors.c_beta - 1) / (1 - c) ** 2
    if priors.on_a_b:
        shifted = np.log(a) - priors.a_meanlog
        out[:, 0, 0] += -1.0 / a**2 + (1.0 - shifted) / (priors.a_sdlog**2 * a**2)
        grad_b = np.stack([d / a**2, -1.0 / a], axis=1)
        hess_b = np.zeros((len(params), 2, 2))
        hess_b[:, 0, 0] = -2.0 * d / a**3
        hess_b[:, 0, 1] = hess_b[:, 1, 0] = 1.0 / a**2
        residual = (-d / a - priors.b_mean)[:, None, None]
        out[:, :2, :2] += (grad_b[:, :, None] * grad_b[:, None, :] + residual * hess_b) / priors.b_sd**2
    return out


# --------------------------------------------------------------------------- the free parameters


def n_chunks() -> int:
    return max(1, numba.get_num_threads())


@dataclass
class Design:
    """The free parameters, where each sits in the information matrix, and the tables the passes read.

    The matrix holds the free items' own parameters (a, d[, c]; the 1PL's d
    only), item by item, then the global ones: the 1PL's common slope, the
    population's mean and SD when they are free.
    """

    model: str
    data: Responses  # the responses to the items with parameters (FinalEStep's)
    rows: np.ndarray  # log curves as [2j + y, q]
    log_prior: np.ndarray
    nodes: np.ndarray
    items: ItemParameters
    scores: np.ndarray  # [j, y, q, k]
    scores_t: np.ndarray  # [j, y, k, q]
    counts: np.ndarray  # [j, y, q]: the final E-step's expected counts
    mass: np.ndarray  # [q]: the final E-step's posteriors summed over persons
    own_a: np.ndarray  # [j, k, k]: sum over respondents of E_i[-h_j] (from the counts)
    curvature: np.ndarray  # [j, k, k]: minus the log prior's Hessian
    free: np.ndarray  # [j]: the item's parameters are free
    comp: np.ndarray  # which of (a, d, c) are an item's own
    local_index: np.ndarray  # [j, k]: matrix index of the item's own parameters, else -1
    global_slot: np.ndarray  # [j, k]: which global parameter the item's parameter is, else -1
    global_index: np.ndarray  # [G]: matrix index of each global parameter
    pop_scores_t: np.ndarray  # [G, Q]: node scores of the population's parameters (0 for the slope)
    pop_neg_hessian: np.ndarray | None  # [Q, 2, 2]
    pop_normaliser: np.ndarray | None  # [2, 2]
    n_params: int
    max_rows: int

    @property
    def k(self) -> int:
        return self.scores.shape[3]

    @property
    def n_local(self) -> int:
        return self.n_params - self.global_index.size

    def param_index(self) -> np.ndarray:
        """[j, k]: matrix index of each of (a, d[, c]) of the free items (their own or a global), else -1."""
        out = self.local_index.copy()
        shared = self.global_slot >= 0
        out[shared] = self.global_index[self.global_slot[shared]]
        out[~self.free] = -1
        return out

    def slot(self) -> np.ndarray:
        """[k]: where each of (a, d[, c]) sits among an item's own parameters, else -1."""
        out = np.full(self.k, -1, dtype=np.int64)
        out[self.comp] = np.arange(self.comp.size)
        return out

    def row_args(self):
        return (self.data.person_ptr, self.data.item, self.data.correct, self.rows, self.log_prior, self.scores_t,
                self.local_index, self.global_slot, self.pop_scores_t, self.global_index)

    def first_pass(self, cache: np.ndarray | None = None, floor: float = passes.NODE_FLOOR):
        """Sums over persons of the posterior covariances of the scores within blocks, and the mass.

        Returns (each item's own block of sum Cov_i(s_j) [J, k, k], the
        globals' [G, G], globals x items [J, k, G], mass per node [Q]), and
        fills ``cache`` with the answers' projections if given. The tables
        are read in float32, one row per answer (the moments are summed in
        float64).
        """
        stride = passes.TABLE_STRIDE
        n_rows, n_nodes = self.rows.shape
        table = np.zeros((n_rows, stride * (self.k if self.k == 3 else 2)), dtype=np.float32)
        table[:, :n_nodes] = self.rows
        table[:, stride:stride + n_nodes] = self.scores[..., 1].reshape(n_rows, n_nodes)
        if self.k == 3:
            table[:, 2 * stride:2 * stride + n_nodes] = self.scores[..., 2].reshape(n_rows, n_nodes)
        if cache is None:
            cache = np.zeros((0, self.comp.size, BASIS), dtype=np.float32)
        data = self.data
        products, gcov, cross, mass = passes.first_pass(
            data.person_ptr, data.item, data.correct, table, self.log_prior, self.local_index, self.global_slot,
            self.pop_scores_t, self.nodes, self.slot(), n_chunks(), cache, floor)
        own = np.einsum("jyq,jyqu,jyqv->juv", self.counts, self.scores, self.scores) - products
        return own, gcov, cross, mass

    def globals_a(self) -> np.ndarray:
        """The E_i[-H] part of the global parameters' block [G, G]."""
        g = self.global_index.size
        out = np.zeros((g, g))
        if self.model == "1PL":
            out[0, 0] = self.own_a[self.free, 0, 0].sum()
        if self.pop_neg_hessian is not None:
            mass = self.mass
            out[-2:, -2:] += np.einsum("q,quv->uv", mass, self.pop_neg_hessian) + mass.sum() * self.pop_normaliser
        return out

    def cross_a(self) -> np.ndarray:
        """The E_i[-H] part between the items' parameters and the globals [j, k, G]."""
        out = np.zeros((self.scores.shape[0], self.k, self.global_index.size))
        if self.model == "1PL":
            out[self.free, 1, 0] = self.own_a[self.free, 1, 0]
        return out


def make_design(final: FinalEStep, model: str, priors, fixed: np.ndarray, population, dropped: np.ndarray) -> Design:
    free_c = model == "3PL"
    k = 3 if free_c else 2
    nodes = np.ascontiguousarray(final.quadrature.nodes, dtype=np.float64)
    scores, neg_hessian = _derivative_tables(final.items, nodes, free_c)
    n_items = len(final.items)
    free = ~(fixed | dropped)
    comp = np.array([1]) if model == "1PL" else np.arange(k)
    local_index = np.full((n_items, k), -1, dtype=np.int64)
    n_local = int(free.sum()) * comp.size
    local_index[np.ix_(np.flatnonzero(free), comp)] = np.arange(n_local).reshape(-1, comp.size)
    global_slot = np.full((n_items, k), -1, dtype=np.int64)
    n_globals = 0
    if model == "1PL" and free.any():
        global_slot[free, 0] = 0
        n_globals = 1
    pop_neg_hessian = pop_normaliser = None
    columns = []
    if population is not None:
        grad, pop_neg_hessian, pop_normaliser = _population_derivatives(nodes, *population)
        columns = [grad[:, 0], grad[:, 1]]
    pop_scores = np.zeros((n_globals + len(columns), nodes.size))
    for g, column in enumerate(columns):
        pop_scores[n_globals + g] = column
    n_globals += len(columns)
    per_person = np.diff(final.data.person_ptr)
    return Design(
        model=model, data=final.data, rows=np.ascontiguousarray(final.log_curves.reshape(2 * n_items, -1)),
        log_prior=np.ascontiguousarray(final.quadrature.log_weights, dtype=np.float64), nodes=nodes,
        items=final.items, scores=scores, scores_t=np.ascontiguousarray(np.moveaxis(scores, 3, 2)),
        counts=final.counts, mass=final.mass, own_a=np.einsum("jyq,jyqkl->jkl", final.counts, neg_hessian),
        curvature=prior_curvature(final.items, priors, model), free=free, comp=comp, local_index=local_index,
        global_slot=global_slot, global_index=np.arange(n_local, n_local + n_globals, dtype=np.int64),
        pop_scores_t=pop_scores, pop_neg_hessian=pop_neg_hessian, pop_normaliser=pop_normaliser,
        n_params=n_local + n_globals, max_rows=max(int(per_person.max(initial=0)) * comp.size + n_globals, 1))


@dataclass
class Blocks:
    """The information's exact diagonal blocks (each free item's own, the globals') and globals x items."""

    own: np.ndarray  # [free items, kl, kl]
    globals: np.ndarray  # [G, G]
    cross: np.ndarray  # [free items, kl, G]


def first_pass_blocks(design: Design, first) -> Blocks:
    covariances, gblock, cross, _mass = first
    free = np.flatnonzero(design.free)
    comp = design.comp
    pick = np.ix_(free, comp, comp)
    own = (design.own_a + design.curvature)[pick] - covariances[pick]
    g = design.global_index.size
    return Blocks(own, design.globals_a() - gblock[:g, :g],
                  (design.cross_a() - cross[:, :, :g])[np.ix_(free, comp, np.arange(g))])


def singular_blocks(blocks: np.ndarray) -> np.ndarray:
    """Which of a stack of symmetric blocks are not safely positive definite."""
    bad = ~np.isfinite(blocks).all(axis=(1, 2))
    ok = np.flatnonzero(~bad)
    if ok.size:
        values = np.linalg.eigvalsh(blocks[ok])
        bad[ok] = ~(values[:, 0] > SINGULAR * np.maximum(values[:, -1], 0.0))
    return bad


def small_inverse(m: np.ndarray) -> np.ndarray:
    """Inverse of a small symmetric matrix by its eigenvalues, directions without information left out."""
    if m.size == 0:
        return np.zeros_like(m)
    if not np.isfinite(m).all():
        return np.full_like(m, np.nan)
    values, vectors = np.linalg.eigh(0.5 * (m + m.T))
    keep = np.abs(values) > SINGULAR * np.abs(values).max(initial=0.0)
    return (vectors[:, keep] / values[keep]) @ vectors[:, keep].T


@dataclass
class Covariance:
    """The inverse information where the standard errors need it."""

    items: np.ndarray  # [j, k, k] over each free item's (a, d[, c]) (the 1PL's a is the common slope)
    globals: np.ndarray  # [G, G]
