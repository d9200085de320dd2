"""Standard errors past the memory budget: item blocks, belief propagation, global deflation.

With I = D + C (D the exact diagonal blocks, C the cross terms),
``approximate_covariance`` corrects each item's precision for the other
items its respondents answered by Gaussian belief propagation from persons
to items, then projects exactly on the directions a shift and a stretch of
theta make (and the global parameters'), first-order in C elsewhere. The
passes over the persons' cached projections are in
``information_approximate_kernels``. The derivation, and how close it comes
to the exact inverse: docs/psychometrics.md, "Standard errors".
"""

from __future__ import annotations

import numpy as np

from . import information_approximate_kernels as passes
from .information_design import Blocks, Covariance, Design, first_pass_blocks, n_chunks, singular_blocks, small_inverse

#: Sweeps of belief propagation at most, and the largest relative change of an item's precision that ends them.
SWEEPS = 4
SWEEP_TOLERANCE = 1e-3
#: The approximation leaves out the nodes where a person's posterior is below this fraction of its
#: largest value (the full matrix: ``information_kernels.NODE_FLOOR``, 1e-14): 10% faster, and 1e-10 is
#: far below its own error.
APPROXIMATE_FLOOR = 1e-10


def approximate_covariance(design: Design, cache: np.ndarray, first) -> Covariance:
    """The item blocks of the inverse information without the whole matrix (docs/psychometrics.md, steps 1 and 2)."""
    blocks = first_pass_blocks(design, first)
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
                                                  cache, everyone, delta, n_chunks())
        updated = blocks.own + sums[design.free]
        bad = singular_blocks(updated)
        updated[bad] = blocks.own[bad]
        change = np.abs(updated - precision).max(axis=(1, 2)) / np.abs(precision).max(axis=(1, 2))
        precision = updated
        if change.max(initial=0.0) < SWEEP_TOLERANCE:
            break
    del delta
    inv_precision = np.linalg.inv(precision)
    g_inv = small_inverse(blocks.globals)

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
                                      np.ascontiguousarray(x), n_chunks())

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
    M_inv = small_inverse(W.T @ Z)
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
    return Covariance(items, globals_cov)


def _global_directions(design: Design) -> np.ndarray:
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


def _arrow_solutions(blocks: Blocks, inv_precision: np.ndarray, n_local: int) -> np.ndarray:
    """A^-1 e_g for each global parameter g [P, G]: A without the item-item cross terms.

    Close to I^-1 e_g, so that with it in the Galerkin space g's row of the
    covariance is exact but for a second-order error (it brings the 1PL's
    slope to about 1e-9 of exact).
    """
    g = blocks.globals.shape[0]
    solved = np.einsum("juv,jvg->jug", inv_precision, blocks.cross)
    on_globals = small_inverse(blocks.globals - np.einsum("jug,juh->gh", blocks.cross, solved))
    out = np.empty((n_local + g, g))
    out[n_local:] = on_globals
    out[:n_local] = -np.einsum("jug,gh->juh", solved, on_globals).reshape(n_local, g)
    return out / np.maximum(np.linalg.norm(out, axis=0), 1e-300)
