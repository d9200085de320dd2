"""Standard errors of item parameters from the observed information (Louis, 1982).

Louis (1982, JRSS B 44, 226-233): the observed information of the marginal
likelihood is the posterior expectation of the complete-data information
less the posterior covariance of the complete-data score. For item j, in
the parameterisation (a, d[, c]) of ``model.py``,

    I_j = sum over persons i who answered j of
          E_i[-h_j - s_j s_j'] + E_i[s_j] E_i[s_j]',

where s_j and h_j are the gradient and Hessian of log P(y_ij | theta) and
E_i is the expectation over person i's posterior on the quadrature grid.
The first term is linear in the posterior, so it comes from the expected
counts of the final E-step; the second needs one more pass over the
responses.

When the problem is small enough (``FULL_MAX_PARAMETERS``, and a bounded
number of item pairs answered by the same person), the whole observed
information is built, cross-item terms included, and inverted: that is the
exact observed information, as a numerical Hessian of the marginal
log-likelihood gives it. Beyond that only each item's diagonal block is
kept: exact within the item, leaving out the coupling between items, which
is small when each person answers a small part of a large bank, and which
keeps the work proportional to the responses. Standard errors of
b = -d / a come by the delta method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from . import kernels
from .expected import FinalEStep
from .model import ItemParameters
from .quadrature import Quadrature
from .responses import Responses


#: Largest parameter count for which the full observed information is built and inverted.
FULL_MAX_PARAMETERS = 1200
#: Largest sum over persons of (answers per person)^2 for the full information's pair terms.
FULL_MAX_PAIRS = 2_000_000


@dataclass(frozen=True)
class ItemStandardErrors:
    """Standard errors per item (NaN where an item was not estimated), and how they were computed."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    d: np.ndarray
    method: str = "observed information (Louis), item blocks"


def _derivative_tables(params: ItemParameters, nodes: np.ndarray, free_c: bool):
    """Per item, response and node: the score s (k) and M = -h - s s' (k x k), k = 2 or 3."""
    a, d, c = params.a[:, None], params.d[:, None], params.c[:, None]
    t = nodes[None, :]
    sig = 1.0 / (1.0 + np.exp(-(a * t + d)))
    sig1 = sig * (1.0 - sig)
    sig2 = sig1 * (1.0 - 2.0 * sig)
    p = c + (1.0 - c) * sig
    q = 1.0 - p
    k = 3 if free_c else 2
    shape = (len(params), nodes.size)
    dp = np.zeros(shape + (k,))
    dp[..., 0] = (1.0 - c) * sig1 * t
    dp[..., 1] = (1.0 - c) * sig1
    d2p = np.zeros(shape + (k, k))
    d2p[..., 0, 0] = (1.0 - c) * sig2 * t * t
    d2p[..., 0, 1] = d2p[..., 1, 0] = (1.0 - c) * sig2 * t
    d2p[..., 1, 1] = (1.0 - c) * sig2
    if free_c:
        dp[..., 2] = 1.0 - sig
        d2p[..., 0, 2] = d2p[..., 2, 0] = -sig1 * t
        d2p[..., 1, 2] = d2p[..., 2, 1] = -sig1
    pq = np.maximum(p * q, 1e-300)
    scores = np.empty((len(params), 2) + shape[1:] + (k,))
    rest = np.empty((len(params), 2) + shape[1:] + (k, k))
    outer_dp = dp[..., :, None] * dp[..., None, :]
    for y in (0, 1):
        resid = y - p
        factor = resid / pq
        s = factor[..., None] * dp
        # h = -[pq + (y - p)(1 - 2p)] / (pq)^2 dp dp' + (y - p) / pq d2p
        h = (-(pq + resid * (1.0 - 2.0 * p)) / pq**2)[..., None, None] * outer_dp + factor[..., None, None] * d2p
        scores[:, y] = s
        rest[:, y] = -h - s[..., :, None] * s[..., None, :]
    return scores, rest


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _posterior_score_products(ptr, item, correct, rows, log_prior, scores, n_chunks):
    """sum over persons of E_i[s_j] E_i[s_j]' for every item j the person answered."""
    n_persons = ptr.size - 1
    n_items, _, n_nodes, k = scores.shape
    acc = np.zeros((n_chunks, n_items, k, k))
    for c in prange(n_chunks):
        lo = c * n_persons // n_chunks
        hi = (c + 1) * n_persons // n_chunks
        post = np.empty(n_nodes)
        mean_score = np.empty(k)
        for i in range(lo, hi):
            start, stop = ptr[i], ptr[i + 1]
            if start == stop:
                continue
            kernels.person_posterior(post, start, stop, item, correct, rows, log_prior)
            for r in range(start, stop):
                j, y = item[r], correct[r]
                for u in range(k):
                    mean_score[u] = 0.0
                for q in range(n_nodes):
                    for u in range(k):
                        mean_score[u] += post[q] * scores[j, y, q, u]
                for u in range(k):
                    for v in range(k):
                        acc[c, j, u, v] += mean_score[u] * mean_score[v]
    return acc


@njit(cache=True, fastmath=True, nogil=True)
def _full_cross_terms(ptr, item, correct, rows, log_prior, scores):
    """sum over persons of E_i[S]E_i[S]' - E_i[S S'] over all pairs of the items a person answered.

    S is the person's complete-data score for all item parameters; the
    diagonal blocks' E_i[s s'] part is left out here (it is in the counts term).
    """
    n_persons = ptr.size - 1
    n_items, _, n_nodes, k = scores.shape
    out = np.zeros((n_items * k, n_items * k))
    post = np.empty(n_nodes)
    for i in range(n_persons):
        start, stop = ptr[i], ptr[i + 1]
        if start == stop:
            continue
        kernels.person_posterior(post, start, stop, item, correct, rows, log_prior)
        m = stop - start
        means = np.zeros((m, k))
        for r in range(m):
            j, y = item[start + r], correct[start + r]
            for q in range(n_nodes):
                for u in range(k):
                    means[r, u] += post[q] * scores[j, y, q, u]
        for r1 in range(m):
            j1, y1 = item[start + r1], correct[start + r1]
            for r2 in range(m):
                j2, y2 = item[start + r2], correct[start + r2]
                for u in range(k):
                    for v in range(k):
                        value = means[r1, u] * means[r2, v]
                        if r1 != r2:
                            joint = 0.0
                            for q in range(n_nodes):
                                joint += post[q] * scores[j1, y1, q, u] * scores[j2, y2, q, v]
                            value -= joint
                        out[j1 * k + u, j2 * k + v] += value
    return out


@dataclass(frozen=True)
class _Louis:
    """What both forms of the information start from: the estimated items, the final E-step, the derivatives."""

    data: Responses
    kept: np.ndarray
    rows: np.ndarray  # log curves as [2j + y, q]
    log_prior: np.ndarray
    scores: np.ndarray  # [j, y, q, k]
    #: Each item's E_i[-h - s s'] summed over its respondents (from the expected counts).
    own_blocks: np.ndarray

    @classmethod
    def prepare(cls, final: FinalEStep, free_c: bool) -> "_Louis":
        nodes = final.quadrature.nodes
        scores, rest = _derivative_tables(final.items, nodes, free_c)
        return cls(final.data, final.kept, kernels.as_rows(final.log_curves), final.quadrature.log_weights,
                   np.ascontiguousarray(scores), np.einsum("jyq,jyqkl->jkl", final.counts, rest))


def item_information(responses: Responses, params: ItemParameters, *, free_c: bool = False,
                     quadrature: Quadrature | None = None, final: FinalEStep | None = None) -> np.ndarray:
    """Each estimated item's observed-information block over (a, d[, c]); NaN for the others.

    ``final``, when given, is the E-step at ``params`` already done (``FinalEStep.at``).
    """
    louis = _Louis.prepare(final or FinalEStep.at(responses, params, quadrature), free_c)
    d = louis.data
    second = _posterior_score_products(d.person_ptr, d.item, d.correct, louis.rows, louis.log_prior, louis.scores,
                                       max(1, kernels.numba.get_num_threads())).sum(axis=0)
    k = louis.scores.shape[-1]
    full = np.full((len(params), k, k), np.nan)
    full[louis.kept] = louis.own_blocks + second
    return full


def full_information(responses: Responses, params: ItemParameters, *, free_c: bool = False,
                     quadrature: Quadrature | None = None, final: FinalEStep | None = None) -> np.ndarray:
    """The whole observed information over (a_1, d_1[, c_1], a_2, ...) of the estimated items."""
    louis = _Louis.prepare(final or FinalEStep.at(responses, params, quadrature), free_c)
    d = louis.data
    info = _full_cross_terms(d.person_ptr, d.item, d.correct, louis.rows, louis.log_prior, louis.scores)
    k = louis.scores.shape[-1]
    for j, block in enumerate(louis.own_blocks):
        info[j * k:(j + 1) * k, j * k:(j + 1) * k] += block
    return info


def _full_is_affordable(responses: Responses, n_params: int) -> bool:
    per_person = np.diff(responses.person_ptr).astype(np.int64)
    return n_params <= FULL_MAX_PARAMETERS and int((per_person**2).sum()) <= FULL_MAX_PAIRS


def _prior_curvature(params: ItemParameters, priors, free_c: bool) -> np.ndarray:
    """Minus the Hessian of the log prior per item over (a, d[, c]), for Bayes-modal estimates."""
    k = 3 if free_c else 2
    out = np.zeros((len(params), k, k))
    if priors is None:
        return out
    a, d, c = params.a, params.d, params.c
    if free_c:
        out[:, 2, 2] = (priors.c_alpha - 1) / c**2 + (priors.c_beta - 1) / (1 - c) ** 2
    if priors.on_a_b:
        shifted = np.log(a) - priors.a_meanlog
        out[:, 0, 0] += -1.0 / a**2 + (1.0 - shifted) / (priors.a_sdlog**2 * a**2)
        grad_b = np.stack([d / a**2, -1.0 / a], axis=1)
        out[:, :2, :2] += grad_b[:, :, None] * grad_b[:, None, :] / priors.b_sd**2
    return out


def standard_errors(responses: Responses, params: ItemParameters, model: str,
                    quadrature: Quadrature | None = None, priors=None,
                    final: FinalEStep | None = None) -> ItemStandardErrors:
    """Standard errors of a, b, c and d for every item, from the observed information.

    The full information when affordable, else each item's block (see the
    module docstring). For the 1PL the common slope is one parameter shared
    by all items. With ``priors`` (``estimate.Priors``, Bayes-modal
    estimates; the 3PL's c prior always), the priors' curvature is added.
    ``final`` is the E-step at ``params`` when the caller has it already.
    """
    free_c = model == "3PL"
    n = len(params)
    estimated = np.isfinite(params.a) & np.isfinite(params.b)
    k = 3 if free_c else 2
    curvature = _prior_curvature(params, priors if (free_c or model == "2PL") else None, free_c)
    if _full_is_affordable(responses, int(estimated.sum()) * k):
        return _from_full(responses, params, model, free_c, quadrature, estimated, curvature, final)
    info = item_information(responses, params, free_c=free_c, quadrature=quadrature, final=final) + curvature
    se_a, se_d, se_c, se_b = (np.full(n, np.nan) for _ in range(4))
    ok = np.isfinite(info[:, 0, 0])
    if model == "1PL":
        se_d[ok] = 1.0 / np.sqrt(info[ok, 1, 1])
        se_a[ok] = 1.0 / np.sqrt(info[ok, 0, 0].sum())
        var_b = (se_d[ok] / params.a[ok]) ** 2 + (params.d[ok] / params.a[ok] ** 2 * se_a[ok]) ** 2
        se_b[ok] = np.sqrt(var_b)
    else:
        cov = np.full_like(info, np.nan)
        cov[ok] = np.linalg.pinv(info[ok])
        se_a[ok] = np.sqrt(np.maximum(cov[ok, 0, 0], 0.0))
        se_d[ok] = np.sqrt(np.maximum(cov[ok, 1, 1], 0.0))
        if free_c:
            se_c[ok] = np.sqrt(np.maximum(cov[ok, 2, 2], 0.0))
        a, d = params.a[ok], params.d[ok]
        grad = np.stack([d / a**2, -1.0 / a], axis=1)  # b = -d / a
        se_b[ok] = np.sqrt(np.maximum(np.einsum("ju,juv,jv->j", grad, cov[ok, :2, :2], grad), 0.0))
    return ItemStandardErrors(a=se_a, b=se_b, c=se_c, d=se_d)


def _from_full(responses, params, model, free_c, quadrature, estimated, curvature, final) -> ItemStandardErrors:
    info = full_information(responses, params, free_c=free_c, quadrature=quadrature, final=final)
    k = 3 if free_c else 2
    m = int(estimated.sum())
    for position, j in enumerate(np.flatnonzero(estimated)):
        info[position * k:(position + 1) * k, position * k:(position + 1) * k] += curvature[j]
    if model == "1PL":
        # One common slope: sum the slope rows and columns into one parameter.
        index = np.arange(m)
        to_shared = np.zeros((m * k, m + 1))
        to_shared[index * k, 0] = 1.0
        to_shared[index * k + 1, 1 + index] = 1.0
        cov_shared = np.linalg.pinv(to_shared.T @ info @ to_shared)
        cov = to_shared @ cov_shared @ to_shared.T
    else:
        cov = np.linalg.pinv(info)
    variances = np.maximum(np.diag(cov), 0.0).reshape(m, k)
    cov_ad = np.stack([cov[np.arange(m) * k, np.arange(m) * k + 1]], axis=1)[:, 0]
    a, d = params.a[estimated], params.d[estimated]
    var_b = (d / a**2) ** 2 * variances[:, 0] + (1.0 / a) ** 2 * variances[:, 1] - 2 * d / a**3 * cov_ad
    n = len(params)
    se_a, se_d, se_c, se_b = (np.full(n, np.nan) for _ in range(4))
    se_a[estimated], se_d[estimated] = np.sqrt(variances[:, 0]), np.sqrt(variances[:, 1])
    se_b[estimated] = np.sqrt(np.maximum(var_b, 0.0))
    if free_c:
        se_c[estimated] = np.sqrt(variances[:, 2])
    return ItemStandardErrors(a=se_a, b=se_b, c=se_c, d=se_d, method="observed information (Louis), full")
