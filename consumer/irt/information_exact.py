"""Standard errors from the whole observed information, inverted exactly (the method within the memory budget).

``full_matrix`` builds the lower triangle of the information over every
free parameter in one pass over the persons (``information_exact_kernels``);
``exact_covariance`` factorises it in place (Cholesky, then the triangular
inverse) and reads the inverse's diagonal blocks; ``null_items`` names the
items on the directions without information when the factorisation fails.
Why and how, with the benchmark: docs/psychometrics.md, "Standard errors".
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import eigh, lapack

from . import blas, information_exact_kernels as passes
from .information_design import SINGULAR, Blocks, Covariance, Design, n_chunks


def diagonal_blocks(design: Design, lower: np.ndarray) -> Blocks:
    """The whole matrix's diagonal blocks (each free item's own, the globals'), from its lower triangle.

    The same as ``first_pass_blocks`` (but for the rounding of the sums),
    without the first pass: a calibration small enough for the whole matrix
    never runs (nor compiles) it.
    """
    own = design.local_index[design.free][:, design.comp]
    own = lower[np.maximum(own[:, :, None], own[:, None, :]), np.minimum(own[:, :, None], own[:, None, :])]
    g = design.global_index
    return Blocks(own, lower[np.maximum.outer(g, g), np.minimum.outer(g, g)],
                  np.zeros((own.shape[0], own.shape[1], g.size)))


def full_matrix(design: Design) -> np.ndarray:
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
    threads = n_chunks()
    bounds = np.unique(np.round(n * np.sqrt(np.arange(threads + 1) / threads)).astype(np.int64))
    passes.subtract_covariances(*design.row_args(), bounds, design.max_rows, out)
    return out


def _cholesky_inverse(lower: np.ndarray) -> np.ndarray | None:
    """In place: a lower triangle -> lt, lower triangular, with inverse = lt' lt; None if not positive definite.

    ``lower.T`` is the upper triangle in Fortran order, on which LAPACK's
    Cholesky and triangular inverse work in place, on one BLAS thread (``blas``: on cores shared with
    other work, OpenBLAS's second thread spins more than it computes).
    """
    with blas.limited(1):
        upper, info = lapack.dpotrf(lower.T, lower=0, overwrite_a=1, clean=0)
        if info != 0:
            return None
        inverse, info = lapack.dtrtri(upper, lower=0, overwrite_c=1)
    return inverse.T if info == 0 else None


def _covariance_from_factor(design: Design, lt: np.ndarray) -> Covariance:
    bands = passes.inverse_bands(lt, design.comp.size, n_chunks())
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
    return Covariance(items, with_globals[n - g:])


def exact_covariance(design: Design, lower: np.ndarray) -> Covariance | None:
    """From the whole matrix's lower triangle (overwritten)."""
    lt = _cholesky_inverse(lower)
    return None if lt is None else _covariance_from_factor(design, lt)


def null_items(design: Design) -> np.ndarray | None:
    """For a matrix Cholesky refused: the free items on its directions without information.

    The matrix is scaled to unit diagonal (its eigenvalues are then at most
    the number of parameters); the eigenvectors of its eigenvalues below
    ``SINGULAR`` times that (negative ones included) are shared out over
    the items, and those with at least a tenth of the largest share are
    returned. None when the directions lie on the global parameters, or
    the eigenvalues cannot be had.
    """
    lower = full_matrix(design)
    scale = np.sqrt(np.abs(np.diag(lower)))
    scale[~(scale > 0)] = 1.0
    lower /= scale[:, None]
    lower /= scale[None, :]
    try:
        values, vectors = eigh(lower, lower=True, subset_by_value=(-np.inf, SINGULAR * design.n_params),
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
