"""Standard errors of item parameters from the observed information (Louis, 1982).

Louis (1982, JRSS B 44, 226-233): the observed information of the marginal
likelihood is the posterior expectation of the complete-data information
less the posterior covariance of the complete-data score,

    I = sum over persons i of  E_i[-H_i] - Cov_i(S_i),

exactly, at any parameter value: it is the Hessian of the marginal
log-likelihood, which the tests check against numerical Hessians. Here
S_i is person i's complete-data score for every free parameter and E_i,
Cov_i are over the person's posterior on the quadrature grid. E_i[-H_i] is
block diagonal (item by item) and comes from the expected counts of the
final E-step; Cov_i couples every pair of parameters the person's answers
touch. The free parameters are each estimated item's (a, d[, c]) -- for
the 1PL its d and one common slope shared by all items -- and, in a
fixed-parameter calibration (``fixed``, ``population``), the population's
mean and SD on the anchors' scale, the anchors held at their values (their
answers still shape the posteriors). Bayes-modal priors add their
curvature to each item's block. SEs of b = -d / a by the delta method.

Two ways to the inverse, chosen by memory:

**Full**, when the matrix takes at most ``FULL_MAX_BYTES`` (256 MiB: up to
5,792 parameters). The lower triangle is built in one pass over the
persons, each thread owning a band of rows (no copies of the matrix, no two
threads writing one element), a person's products being one small BLAS
matrix product; then Cholesky and the triangular inverse, in place
(LAPACK's upper-triangle forms on the transposed array: several times
faster than OpenBLAS's lower ones), and the diagonal blocks of the inverse
from it. Exact. (The items whose own block is singular are found on the
matrix's diagonal blocks: this path has no other pass over the persons, and
a first run compiles no other.) 256 MiB so that a run at the default
``MIRT_MAX_OBS`` stays inside the deployment's 1 GiB (infra/k8s) and the factorisation within a
few seconds on two cores, while the fit of such data takes about as long;
past it the approximation is within a percent or two (benchmark below). Never past ``FULL_MAX_PARAMETERS``
(15,000) whatever the budget: OpenBLAS's threaded Cholesky crashes the
process from about 16,000.

**Approximate**, past the budget. Write I = D + C, D the exact diagonal
blocks (each item's own, the global parameters'), C the cross terms.

1. D and belief propagation. One pass over the persons sums the exact own
   blocks and, per answer, projects the score on three polynomials of theta
   orthonormal under the person's posterior (cached, 12 bytes per own
   parameter and answer: the cross terms a person makes are smooth in
   theta, and three degrees hold them to about 1e-4). Gaussian belief
   propagation from persons to items then corrects each item's precision
   for the uncertainty of the other items each of its respondents answered
   (exact on a tree; a few sweeps, stopped when no item's precision moves
   by more than ``SWEEP_TOLERANCE``; the messages are kept per answer, 4 *
   k^2 bytes). The item blocks alone miss this on sparse designs: up to 20%
   on SE(a) with 10 answers per person and 100 per item.
2. Global deflation. The cross terms add up along the moves of all items
   that a shift or a stretch of theta makes (d_j += a_j, a_j += a_j): the
   N(0, 1) population pins them only through its shape, so the information
   is much smaller along them than the item blocks say (the dense 2PL's
   SE(b) 15% too small, the 1PL's common slope's SE half). With W spanning
   those moves, each global parameter's unit vector and its solution in the
   arrow matrix (D and the globals' cross terms), the Galerkin projection

       I^-1 ~ Q + (1 - Q I) N (1 - I Q),  Q = W (W' I W)^-1 W',
       N = D^-1 - D^-1 C D^-1 (D with the propagated precisions),

   is exact on span(W), first-order in C elsewhere, and makes the global
   parameters' rows (the 1PL's slope, the population's mean and SD) exact
   but for a second-order error (the 1PL's slope comes within 1e-7 of
   exact). I W and C D^-1 I W take two more passes, over the cached
   projections only.

Measured against the full matrix (``benchmarks/standard_errors.py``, the
largest |SE / exact - 1| over items, a and b; 2 cores):

    design (persons x items x answers)         params full s approx. s approx. a      b   item blocks a, b
    1PL, 6,000 x 300 x 40                         301    0.1       0.1    0.0000 0.0000   0.45, 0.019
    dense 2PL, 5,000 x 50 x 50                    100    0.1       0.0    0.0005 0.0010   0.031, 0.15
    2PL, priors on a, b, 5,000 x 200 x 20         400    0.1       0.0    0.0011 0.0010   0.006, 0.021
    3PL, Beta(5, 17) on c, 20,000 x 300 x 30      900    1.0       0.7    0.0012 0.0009   0.009, 0.009
    FIPC 2PL, 40 anchors, 20,000 x 400 x 30       722    0.7       0.4    0.0002 0.0001
    sparse 2PL, 20,000 x 2,000 x 10             3,904    2.7       0.2    0.0180 0.0043   0.21, 0.20
    thin 2PL, priors, 20,000 x 4,000 x 6        7,800    9.5       0.1    0.0016 0.0008   0.027, 0.011
    sparse 2PL, 50,000 x 5,000 x 10             9,742    8.7       0.2    0.0077 0.0065   0.16, 0.093
    2PL, 100,000 x 5,000 x 50                  10,000   15.0       1.0    0.0001 0.0001   0.002, 0.004
    2PL, 100,000 x 7,400 x 30                  14,794   29.3       0.5    0.0003 0.0002   0.011, 0.007

("item blocks": each item's own block alone, the method used before past a
size cut-off.) On more sparse ML designs (items drawn with lognormal
exposure, 20 to a few hundred answers each; 3 to 20 answers per person)
the approximation stayed within 1.4%, and within 0.2% under priors. The
error left is largest for items estimated by plain ML with a steep slope on
a hundred answers or so (belief propagation is exact on trees, and the
response graph has short cycles).

At 400,000 persons x 20,000 items x 50 answers (20M responses, 40,000
parameters; the full matrix would take 12.8 GB) the approximation took 6.0 s
against 16.0 s for the fit, on the same machine at the same time (a shared
2-core machine: the timings above vary by a factor of up to two from run to
run), with 40 bytes of memory per answer (the projections and the
messages; 2PL).

Items whose own block is not positive definite (or, in the full matrix,
that carry a direction without information) get NaN and are listed in
``ItemStandardErrors.unidentified``; the others' SEs are computed with
them held at their values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from scipy.linalg import eigh, lapack
from scipy.special import expit

from . import information_kernels as passes
from .expected import FinalEStep
from .model import ItemParameters, model_name
from .priors import Priors
from .quadrature import Quadrature
from .responses import Responses

#: Largest information matrix built whole and inverted, in bytes (8 per element): up to 5,792 parameters.
FULL_MAX_BYTES = 1 << 28
#: The whole matrix is never factorised past this many parameters, whatever the budget: OpenBLAS's threaded
#: Cholesky (0.3.31, as numpy and scipy ship it) crashes the process from about 16,000.
FULL_MAX_PARAMETERS = 15_000
#: Polynomials of theta per person on which the approximation projects the cross terms.
BASIS = 3
#: Sweeps of belief propagation at most, and the largest relative change of an item's precision that ends them.
SWEEPS = 4
SWEEP_TOLERANCE = 1e-3
#: The approximation leaves out the nodes where a person's posterior is below this fraction of its
#: largest value (the full matrix: ``information_kernels.NODE_FLOOR``, 1e-14): 10% faster, and 1e-10 is
#: far below its own error.
_APPROXIMATE_FLOOR = 1e-10
#: A block with an eigenvalue below this fraction of its largest (after scaling to unit diagonal, for the
#: whole matrix) does not identify its parameters.
_SINGULAR = 1e-10

FULL = "observed information (Louis), full"
APPROXIMATE = "observed information (Louis), item blocks + belief propagation + global deflation"


@dataclass(frozen=True)
class ItemStandardErrors:
    """Standard errors per item (NaN where an item was not estimated or is held fixed), and how they were computed."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    method: str = FULL
    #: Items (positions in ``params``) whose parameters the information does not identify; their SEs are NaN.
    unidentified: tuple[int, ...] = ()
    #: Standard errors of the population's mean and SD when they were free (fixed-parameter calibration).
    population: tuple[float, float] | None = None


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


def _prior_curvature(params: ItemParameters, priors, model: str) -> np.ndarray:
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


def _chunks() -> int:
    return max(1, numba.get_num_threads())


@dataclass
class _Design:
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
            self.pop_scores_t, self.nodes, self.slot(), _chunks(), cache, floor)
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


def _design(final: FinalEStep, model: str, priors, fixed: np.ndarray, population, dropped: np.ndarray) -> _Design:
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
    return _Design(
        model=model, data=final.data, rows=np.ascontiguousarray(final.log_curves.reshape(2 * n_items, -1)),
        log_prior=np.ascontiguousarray(final.quadrature.log_weights, dtype=np.float64), nodes=nodes,
        items=final.items, scores=scores, scores_t=np.ascontiguousarray(np.moveaxis(scores, 3, 2)),
        counts=final.counts, mass=final.mass, own_a=np.einsum("jyq,jyqkl->jkl", final.counts, neg_hessian),
        curvature=_prior_curvature(final.items, priors, model), free=free, comp=comp, local_index=local_index,
        global_slot=global_slot, global_index=np.arange(n_local, n_local + n_globals, dtype=np.int64),
        pop_scores_t=pop_scores, pop_neg_hessian=pop_neg_hessian, pop_normaliser=pop_normaliser,
        n_params=n_local + n_globals, max_rows=max(int(per_person.max(initial=0)) * comp.size + n_globals, 1))


@dataclass
class _Blocks:
    """The information's exact diagonal blocks (each free item's own, the globals') and globals x items."""

    own: np.ndarray  # [free items, kl, kl]
    globals: np.ndarray  # [G, G]
    cross: np.ndarray  # [free items, kl, G]


def _blocks(design: _Design, first) -> _Blocks:
    covariances, gblock, cross, _mass = first
    free = np.flatnonzero(design.free)
    comp = design.comp
    pick = np.ix_(free, comp, comp)
    own = (design.own_a + design.curvature)[pick] - covariances[pick]
    g = design.global_index.size
    return _Blocks(own, design.globals_a() - gblock[:g, :g],
                   (design.cross_a() - cross[:, :, :g])[np.ix_(free, comp, np.arange(g))])


def _diagonal_blocks(design: _Design, lower: np.ndarray) -> _Blocks:
    """The whole matrix's diagonal blocks (each free item's own, the globals'), from its lower triangle.

    The same as ``_blocks`` of the first pass (but for the rounding of the
    sums), without that pass: a calibration small enough for the whole
    matrix never runs (nor compiles) it.
    """
    own = design.local_index[design.free][:, design.comp]
    own = lower[np.maximum(own[:, :, None], own[:, None, :]), np.minimum(own[:, :, None], own[:, None, :])]
    g = design.global_index
    return _Blocks(own, lower[np.maximum.outer(g, g), np.minimum.outer(g, g)],
                   np.zeros((own.shape[0], own.shape[1], g.size)))


def _singular_blocks(blocks: np.ndarray) -> np.ndarray:
    """Which of a stack of symmetric blocks are not safely positive definite."""
    bad = ~np.isfinite(blocks).all(axis=(1, 2))
    ok = np.flatnonzero(~bad)
    if ok.size:
        values = np.linalg.eigvalsh(blocks[ok])
        bad[ok] = ~(values[:, 0] > _SINGULAR * np.maximum(values[:, -1], 0.0))
    return bad


def _small_inverse(m: np.ndarray) -> np.ndarray:
    """Inverse of a small symmetric matrix by its eigenvalues, directions without information left out."""
    if m.size == 0:
        return np.zeros_like(m)
    if not np.isfinite(m).all():
        return np.full_like(m, np.nan)
    values, vectors = np.linalg.eigh(0.5 * (m + m.T))
    keep = np.abs(values) > _SINGULAR * np.abs(values).max(initial=0.0)
    return (vectors[:, keep] / values[keep]) @ vectors[:, keep].T


# --------------------------------------------------------------------------- full: the whole matrix


def _full_matrix(design: _Design) -> np.ndarray:
    """The observed information over all free parameters: its lower triangle (the upper holds 0)."""
    n = design.n_params
    out = np.zeros((n, n))
    index = design.param_index()
    own = design.own_a + design.curvature
    rows = np.repeat(np.arange(design.k), design.k)
    cols = np.tile(np.arange(design.k), design.k)
    free = np.flatnonzero(design.free)
    pu, pv = index[free][:, rows].ravel(), index[free][:, cols].ravel()
    values = own[free][:, rows, cols].ravel()
    lower = pu >= pv
    np.add.at(out, (pu[lower], pv[lower]), values[lower])
    if design.pop_neg_hessian is not None:
        g = design.global_index[-2:]
        pop = design.globals_a()[-2:, -2:]
        out[g[0], g[0]] += pop[0, 0]
        out[g[1], g[0]] += pop[1, 0]
        out[g[1], g[1]] += pop[1, 1]
    # Rows split so that each thread has about as many lower-triangle elements.
    threads = _chunks()
    bounds = np.unique(np.round(n * np.sqrt(np.arange(threads + 1) / threads)).astype(np.int64))
    passes.subtract_covariances(*design.row_args(), bounds, design.max_rows, out)
    return out


@dataclass
class _Covariance:
    """The inverse information where the standard errors need it."""

    items: np.ndarray  # [j, k, k] over each free item's (a, d[, c]) (the 1PL's a is the common slope)
    globals: np.ndarray  # [G, G]


def _cholesky_inverse(lower: np.ndarray) -> np.ndarray | None:
    """In place: a lower triangle -> lt, lower triangular, with inverse = lt' lt; None if not positive definite.

    ``lower.T`` is the upper triangle in Fortran order, on which LAPACK's
    Cholesky and triangular inverse work in place.
    """
    upper, info = lapack.dpotrf(lower.T, lower=0, overwrite_a=1, clean=0)
    if info != 0:
        return None
    inverse, info = lapack.dtrtri(upper, lower=0, overwrite_c=1)
    return inverse.T if info == 0 else None


def _covariance_from_factor(design: _Design, lt: np.ndarray) -> _Covariance:
    bands = passes.inverse_bands(lt, design.comp.size, _chunks())
    n, g = design.n_params, design.global_index.size
    with_globals = lt[n - g:, :].T @ lt[n - g:, n - g:]  # inverse[:, globals]: only the last rows reach them
    index = design.param_index()
    free = np.flatnonzero(design.free)
    items = np.full((index.shape[0], design.k, design.k), np.nan)
    for u in range(design.k):
        for v in range(design.k):
            pu, pv = index[free, u], index[free, v]
            low, high = np.minimum(pu, pv), np.maximum(pu, pv)
            on_global = high >= n - g
            values = np.empty(free.size)
            values[on_global] = with_globals[low[on_global], high[on_global] - (n - g)]
            values[~on_global] = bands[low[~on_global], (high - low)[~on_global]]
            items[free, u, v] = values
    return _Covariance(items, with_globals[n - g:])


def _exact(design: _Design, lower: np.ndarray) -> _Covariance | None:
    """From the whole matrix's lower triangle (overwritten)."""
    lt = _cholesky_inverse(lower)
    return None if lt is None else _covariance_from_factor(design, lt)


def _null_items(design: _Design) -> np.ndarray | None:
    """For a matrix Cholesky refused: the free items on its directions without information.

    The matrix is scaled to unit diagonal (its eigenvalues are then at most
    the number of parameters); the eigenvectors of its eigenvalues below
    ``_SINGULAR`` times that (negative ones included) are shared out over
    the items, and those with at least a tenth of the largest share are
    returned. None when the directions lie on the global parameters, or
    the eigenvalues cannot be had.
    """
    lower = _full_matrix(design)
    scale = np.sqrt(np.abs(np.diag(lower)))
    scale[~(scale > 0)] = 1.0
    lower /= scale[:, None]
    lower /= scale[None, :]
    try:
        values, vectors = eigh(lower, lower=True, subset_by_value=(-np.inf, _SINGULAR * design.n_params),
                               driver="evr", overwrite_a=True, check_finite=True)
    except (np.linalg.LinAlgError, ValueError):
        return None
    if not values.size:
        return None
    share = (vectors**2).sum(axis=1)
    if share[design.global_index].sum() > 0.5 * share.sum():
        return None
    per_item = share[design.local_index[design.free][:, design.comp]].sum(axis=1)
    found = np.zeros(design.free.size, dtype=bool)
    found[np.flatnonzero(design.free)[per_item >= 0.1 * per_item.max()]] = True
    return found


# --------------------------------------------------------------------------- approximate: past the budget


def _approximate(design: _Design, cache: np.ndarray, first) -> _Covariance:
    """The item blocks of the inverse information without the whole matrix (the module docstring, 1-2)."""
    blocks = _blocks(design, first)
    kl, g = design.comp.size, design.global_index.size
    n_free, n_local = blocks.own.shape[0], design.n_local
    data = design.data
    slot = design.slot()

    # 1. Belief propagation from persons to items: each item's precision.
    precision = blocks.own.copy()
    delta = np.zeros((data.n_obs, kl, kl), dtype=np.float32)
    everyone = np.zeros((design.free.size, kl, kl))
    for _ in range(SWEEPS):
        everyone[design.free] = precision
        sums, _skipped = passes.propagation_sweep(data.person_ptr, data.item, design.local_index, design.comp,
                                                  cache, everyone, delta, _chunks())
        updated = blocks.own + sums[design.free]
        bad = _singular_blocks(updated)
        updated[bad] = blocks.own[bad]
        change = np.abs(updated - precision).max(axis=(1, 2)) / np.abs(precision).max(axis=(1, 2))
        precision = updated
        if change.max(initial=0.0) < SWEEP_TOLERANCE:
            break
    del delta
    inv_precision = np.linalg.inv(precision)
    g_inv = _small_inverse(blocks.globals)

    def arrow(x):  # the exact blocks: each item's own (not propagated), the globals', globals x items
        xl, xg = x[:n_local].reshape(n_free, kl, -1), x[n_local:]
        out = np.empty_like(x)
        out[:n_local] = (np.einsum("juv,jvb->jub", blocks.own, xl)
                         + np.einsum("jug,gb->jub", blocks.cross, xg)).reshape(n_local, -1)
        out[n_local:] = blocks.globals @ xg + np.einsum("jug,jub->gb", blocks.cross, xl)
        return out

    def globals_cross(x):  # the cross terms between globals and items
        out = np.zeros_like(x)
        out[:n_local] = np.einsum("jug,gb->jub", blocks.cross, x[n_local:]).reshape(n_local, -1)
        out[n_local:] = np.einsum("jug,jub->gb", blocks.cross, x[:n_local].reshape(n_free, kl, -1))
        return out

    def items_cross(x):  # the item-item cross terms, from the cached projections
        return passes.offdiag_product(data.person_ptr, data.item, design.local_index, slot, cache,
                                      np.ascontiguousarray(x), _chunks())

    def solve_blocks(x):  # the block diagonal's inverse, the items' blocks propagated
        out = np.empty_like(x)
        out[:n_local] = np.einsum("juv,jvb->jub", inv_precision, x[:n_local].reshape(n_free, kl, -1)).reshape(
            n_local, -1)
        out[n_local:] = g_inv @ x[n_local:]
        return out

    # 2. Galerkin on the global directions, first-order cross terms elsewhere.
    W = _global_directions(design)
    if g:
        W = np.column_stack([W, _arrow_solutions(blocks, inv_precision, n_local)])
    Z = arrow(W) + items_cross(W)
    M_inv = _small_inverse(W.T @ Z)
    DZ = solve_blocks(Z)
    Y = DZ - solve_blocks(globals_cross(DZ) + items_cross(DZ))
    ZY = Z.T @ Y
    middle = M_inv @ (0.5 * (ZY + ZY.T)) @ M_inv

    def covariance(index: np.ndarray, n1: np.ndarray) -> np.ndarray:
        """Over matrix positions index [n, s] (n sets of s), given the N part [n, s, s]."""
        w, y = W[index], Y[index]
        wy = np.einsum("nsr,rt,nut->nsu", w, M_inv, y)
        return (n1 + np.einsum("nsr,rt,nut->nsu", w, M_inv + middle, w)) - wy - np.swapaxes(wy, 1, 2)

    k, free = design.k, np.flatnonzero(design.free)
    n1 = np.zeros((free.size, k, k))
    own = design.comp
    n1[np.ix_(np.arange(free.size), own, own)] = inv_precision
    if free.size:
        for u in np.flatnonzero(design.global_slot[free[0]] >= 0):  # the 1PL's slope
            gu = design.global_slot[free[0], u]
            n1[:, u, u] = g_inv[gu, gu]
            first_order = -np.einsum("jst,jtg->jsg", inv_precision, blocks.cross @ g_inv)[:, :, gu]
            n1[:, own, u] = first_order
            n1[:, u, own] = first_order
    items = np.full((design.free.size, k, k), np.nan)
    if free.size:
        items[free] = covariance(design.param_index()[free], n1)
    globals_cov = covariance(design.global_index[None, :], g_inv[None])[0] if g else np.zeros((0, 0))
    return _Covariance(items, globals_cov)


def _global_directions(design: _Design) -> np.ndarray:
    """Where the item blocks are most wrong: the moves a shift and a stretch of theta make; the globals.

    theta -> theta + e moves every d_j by a_j e; theta -> (1 + e) theta every
    a_j by a_j e (c untouched; the 1PL's common slope is a global). With
    N(0, 1) fixed the data pin these moves only through the population's
    shape, so the information is smallest along them. Columns scaled to
    unit length.
    """
    n = design.n_params
    free = np.flatnonzero(design.free)
    a = design.items.a[free]
    columns = []
    shift = np.zeros(n)
    shift[design.local_index[free, 1]] = a
    columns.append(shift)
    if design.model != "1PL":
        stretch = np.zeros(n)
        stretch[design.local_index[free, 0]] = a
        columns.append(stretch)
    for g in design.global_index:
        unit = np.zeros(n)
        unit[g] = 1.0
        columns.append(unit)
    W = np.column_stack(columns)
    norms = np.linalg.norm(W, axis=0)
    return np.ascontiguousarray(W[:, norms > 0] / norms[norms > 0])


def _arrow_solutions(blocks: _Blocks, inv_precision: np.ndarray, n_local: int) -> np.ndarray:
    """A^-1 e_g for each global parameter g [P, G]: A without the item-item cross terms.

    Close to I^-1 e_g, so that with it in the Galerkin space g's row of the
    covariance is exact but for a second-order error (it brings the 1PL's
    slope to about 1e-9 of exact).
    """
    g = blocks.globals.shape[0]
    solved = np.einsum("juv,jvg->jug", inv_precision, blocks.cross)
    on_globals = _small_inverse(blocks.globals - np.einsum("jug,juh->gh", blocks.cross, solved))
    out = np.empty((n_local + g, g))
    out[n_local:] = on_globals
    out[:n_local] = -np.einsum("jug,gh->juh", solved, on_globals).reshape(n_local, g)
    return out / np.maximum(np.linalg.norm(out, axis=0), 1e-300)


# --------------------------------------------------------------------------- standard errors


def standard_errors(responses: Responses, params: ItemParameters, model: str,
                    quadrature: Quadrature | None = None, priors=None,
                    final: FinalEStep | None = None, *, fixed: np.ndarray | None = None,
                    population: tuple[float, float] | None = None, method: str = "auto",
                    max_bytes: int | None = None) -> ItemStandardErrors:
    """Standard errors of a, b, c and d for every item, from the observed information.

    The whole matrix when it takes at most ``max_bytes`` (default
    ``FULL_MAX_BYTES``), else the approximation of the module docstring;
    ``method`` "full" or "approximate" forces one. The 1PL's common slope is
    one parameter shared by all items (its SE is the same for all).
    ``priors`` (``priors.Priors``) are those the estimates were found
    under (empirical ones centred where ``params`` put them); their curvature
    is added: log a ~ N and b ~ N when ``on_a_b`` (2PL
    and 3PL), and the 3PL's Beta prior on c always (the default ``Priors()``
    when none is given). ``final`` is the E-step at ``params`` when the
    caller has it (on ``quadrature``; recomputed if its weights differ).

    Fixed-parameter calibration: ``fixed`` holds the positions in ``params``
    of the items held at their values (SEs NaN; their answers still inform
    the posteriors), and ``population`` = (mean, sd) the population
    estimated with them, N(mean, sd^2) on ``quadrature``'s nodes (as
    ``Quadrature.with_population``): the mean and SD are then free
    parameters of the information, ``params`` and the SEs are on that
    (the anchors') scale, and the result's ``population`` holds the mean's
    and SD's SEs.

    Items whose parameters the information does not identify get NaN and
    are listed in ``unidentified`` (see the module docstring).
    """
    model = model_name(model)
    if method not in ("auto", "full", "approximate"):
        raise ValueError(f"method must be 'auto', 'full' or 'approximate', not {method!r}")
    fixed_mask = np.zeros(len(params), dtype=bool)
    if fixed is not None:
        fixed_mask[np.asarray(fixed, dtype=np.int64)] = True
    if population is not None:
        mean, sd = float(population[0]), float(population[1])
        if not (np.isfinite(mean) and np.isfinite(sd) and sd > 0):
            raise ValueError(f"population must be a finite (mean, sd) with sd > 0, not {population!r}")
        if not fixed_mask.any():
            raise ValueError("a free population needs fixed items: without them its mean and SD are not identified")
        base = quadrature or (final.quadrature if final is not None else Quadrature.normal())
        quadrature, population = base.with_population(mean, sd), (mean, sd)
    if not (np.isfinite(params.a) & np.isfinite(params.b)).any():
        # Nothing was estimated (every item screened out or held back): nothing to have an error.
        nothing = np.full(len(params), np.nan)
        return ItemStandardErrors(nothing, nothing.copy(), nothing.copy(), nothing.copy(), FULL, (),
                                  None if population is None else (float("nan"), float("nan")))
    if final is not None and quadrature is not None and (
            final.quadrature.nodes.shape != quadrature.nodes.shape
            or not np.allclose(final.quadrature.log_weights, quadrature.log_weights)):
        final = None
    final = final or FinalEStep.at(responses, params, quadrature)
    priors = Priors(on_a_b=False) if priors is None else priors
    budget = FULL_MAX_BYTES if max_bytes is None else int(max_bytes)
    fixed_local = fixed_mask[final.kept]
    dropped = np.zeros(len(final.items), dtype=bool)
    covariance, used = None, FULL
    for _ in range(4):  # each round holds back the items found not identified, and tries again
        design = _design(final, model, priors, fixed_local, population, dropped)
        if design.n_params == 0:
            break
        if method == "full" and design.n_params > FULL_MAX_PARAMETERS:
            raise ValueError(f"the full information is not factorised past {FULL_MAX_PARAMETERS:,} parameters "
                             f"(this calibration has {design.n_params:,}); use method='auto' or 'approximate'")
        full = method == "full" or (method == "auto" and design.n_params**2 * 8 <= budget
                                    and design.n_params <= FULL_MAX_PARAMETERS)
        used = FULL if full else APPROXIMATE
        if full:
            lower = _full_matrix(design)
            blocks = _diagonal_blocks(design, lower)
        else:
            cache = np.zeros((design.data.n_obs, design.comp.size, BASIS), dtype=np.float32)
            first = design.first_pass(cache, _APPROXIMATE_FLOOR)
            blocks = _blocks(design, first)
        bad = _singular_blocks(blocks.own)
        if bad.any():
            dropped[np.flatnonzero(design.free)[bad]] = True
            continue
        if blocks.globals.size and _singular_blocks(blocks.globals[None])[0]:
            break
        if not full:
            covariance = _approximate(design, cache, first)
            break
        covariance = _exact(design, lower)
        if covariance is not None:
            break
        del lower
        found = _null_items(design)
        if found is None or not found.any():
            break
        dropped |= found
    return _assemble(params, model, final, design, covariance, dropped, used, population is not None)


def _assemble(params, model, final, design, covariance, dropped, method, free_population) -> ItemStandardErrors:
    n = len(params)
    se_a, se_d, se_c, se_b = (np.full(n, np.nan) for _ in range(4))
    unidentified = {int(j) for j in final.kept[dropped]}
    population = (float("nan"), float("nan")) if free_population else None
    if covariance is None:
        unidentified |= {int(j) for j in final.kept[design.free]}
        return ItemStandardErrors(se_a, se_b, se_c, se_d, method, tuple(sorted(unidentified)), population)
    cov = covariance.items
    a, d = final.items.a, final.items.d
    with np.errstate(invalid="ignore", divide="ignore"):
        var_b = (d / a**2) ** 2 * cov[:, 0, 0] + cov[:, 1, 1] / a**2 - 2 * d / a**3 * cov[:, 0, 1]
        variances = np.stack([cov[:, u, u] for u in range(design.k)] + [var_b], axis=1)
        ok = design.free & np.isfinite(variances).all(axis=1) & (variances > 0).all(axis=1)
    unidentified |= {int(j) for j in final.kept[design.free & ~ok]}
    kept = final.kept[ok]
    se_a[kept] = np.sqrt(variances[ok, 0])
    se_d[kept] = np.sqrt(variances[ok, 1])
    se_b[kept] = np.sqrt(variances[ok, -1])
    if model == "3PL":
        se_c[kept] = np.sqrt(variances[ok, 2])
    if free_population:
        var = np.diag(covariance.globals)[-2:]
        population = tuple(float(np.sqrt(v)) if np.isfinite(v) and v > 0 else float("nan") for v in var)
    return ItemStandardErrors(se_a, se_b, se_c, se_d, method, tuple(sorted(unidentified)), population)


def item_information(responses: Responses, params: ItemParameters, *, free_c: bool = False,
                     quadrature: Quadrature | None = None, final: FinalEStep | None = None) -> np.ndarray:
    """Each estimated item's own block of the observed information over (a, d[, c]), no priors; NaN for the others."""
    final = final or FinalEStep.at(responses, params, quadrature)
    none = np.zeros(len(final.items), dtype=bool)
    design = _design(final, "3PL" if free_c else "2PL", None, none, None, none)
    out = np.full((len(params), design.k, design.k), np.nan)
    out[final.kept] = _blocks(design, design.first_pass()).own
    return out


def full_information(responses: Responses, params: ItemParameters, *, free_c: bool = False,
                     quadrature: Quadrature | None = None, final: FinalEStep | None = None) -> np.ndarray:
    """The whole observed information over (a_1, d_1[, c_1], a_2, ...) of the estimated items, no priors."""
    final = final or FinalEStep.at(responses, params, quadrature)
    none = np.zeros(len(final.items), dtype=bool)
    lower = _full_matrix(_design(final, "3PL" if free_c else "2PL", None, none, None, none))
    return np.tril(lower) + np.tril(lower, -1).T
