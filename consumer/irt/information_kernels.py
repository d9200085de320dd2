"""Compiled passes over the responses that every method of standard errors shares: person by person, on every core.

Louis' identity makes each person's share of the observed information
E_i[-H] - Cov_i(S_i), the covariance under the person's posterior (on the
quadrature nodes where it is not negligible) of the complete-data score of
every parameter the person's answers touch: the own parameters of each item
answered, and the global ones (the 1PL's common slope, the population's
mean and SD), summed over the answers and the population's log density.

- ``posterior_range``: a person's normalised posterior on the nodes, and
  the nodes where it is not negligible (every pass starts with it);
- ``first_pass``: posterior moments for each item's own block, the
  globals' block and globals x items, and, for the approximation, each
  answer's scores projected on a few polynomials of theta orthonormal under
  the person's posterior (the cache that ``information_approximate_kernels``
  reads). The tables are one float32 row per item and answer holding the
  log curve and the scores, so that what the posterior reads brings the
  scores along.

The whole matrix's pass is in ``information_exact_kernels``, the
approximation's in ``information_approximate_kernels``. Each is a plain
Python function that cuts the work into one chunk per thread and runs a
compiled function per chunk (``chunks.in_chunks``; why not numba's
``parallel=True``: see ``kernels``).
"""

from __future__ import annotations

import numpy as np
from numba import float32, float64, int32, int64, njit, uint8

from .chunks import in_chunks

# The argument types of the compiled functions that Python calls (see ``kernels``: each is compiled for
# these when its module is imported, or loaded from numba's cache). These modules do not import ``kernels``,
# so that two processes can compile them side by side.
_OFFSETS = int64[::1]
_ITEMS = int32[::1]
_OUTCOMES = uint8[::1]
_INDEX = int64[::1]
_INDEX_2D = int64[:, ::1]
_VECTOR = float64[::1]
_MATRIX = float64[:, ::1]
_ARRAY_3D = float64[:, :, ::1]
_ARRAY_4D = float64[:, :, :, ::1]
_MATRIX32 = float32[:, ::1]
_ARRAY32_3D = float32[:, :, ::1]


#: Posterior mass below this fraction of a person's largest node is left out of their covariances.
NODE_FLOOR = 1e-14


@njit(cache=True, fastmath=True, nogil=True, error_model="numpy")
def posterior_range(post, start, stop, item, correct, rows, log_prior, floor):
    """Person start:stop's normalised posterior into ``post``; returns (first node, width) of the nodes that
    carry more than ``floor`` times its largest value, and a number to keep the first loop alive.

    ``rows[2j + y, :post.size]`` is log P(y | t_q) for item j (wider rows may
    hold more after it). The first loop reads one value of every row the
    person needs before any is summed, so that their cache misses overlap.
    """
    n_nodes = post.size
    touch = 0.0
    for r in range(start, stop):
        touch += rows[2 * item[r] + correct[r], 0]
    for q in range(n_nodes):
        post[q] = log_prior[q]
    for r in range(start, stop):
        row = 2 * item[r] + correct[r]
        for q in range(n_nodes):
            post[q] += rows[row, q]
    top = post[0]
    for q in range(1, n_nodes):
        top = max(top, post[q])
    total = 0.0
    for q in range(n_nodes):
        post[q] = np.exp(post[q] - top)
        total += post[q]
    largest = 0.0
    for q in range(n_nodes):
        post[q] /= total
        largest = max(largest, post[q])
    least = largest * floor
    lo = 0
    while post[lo] < least:
        lo += 1
    hi = n_nodes
    while post[hi - 1] < least:
        hi -= 1
    return lo, hi - lo, touch


@njit(cache=True, fastmath=True, nogil=True, error_model="numpy")
def _posterior_polynomials(post, lo, width, nodes, basis, psi, w, phi):
    """psi[l, q] = post_q * phi_l(q) for polynomials phi_1..phi_basis orthonormal under the posterior.

    The phi_l are orthogonal to the constants, so sum_q psi[l, q] s(q) is
    the projection of s - E_i[s] on them. Returns how many there are (fewer
    when the posterior sits on fewer nodes).
    """
    total = 0.0
    for q in range(width):
        w[q] = post[lo + q]
        total += w[q]
    centre = 0.0
    for q in range(width):
        w[q] /= total
        centre += w[q] * nodes[lo + q]
    spread = 0.0
    for q in range(width):
        spread += w[q] * (nodes[lo + q] - centre) ** 2
    spread = np.sqrt(spread)
    for q in range(width):
        phi[0, q] = 1.0
    found = 0
    if spread <= 0.0:
        return 0
    for l in range(1, basis + 1):
        for q in range(width):
            phi[l, q] = (nodes[lo + q] - centre) / spread * phi[l - 1, q]
        for _ in range(2):  # Gram-Schmidt, twice
            for m in range(l):
                dot = 0.0
                for q in range(width):
                    dot += w[q] * phi[l, q] * phi[m, q]
                for q in range(width):
                    phi[l, q] -= dot * phi[m, q]
        norm = 0.0
        for q in range(width):
            norm += w[q] * phi[l, q] ** 2
        if norm < 1e-20:
            break
        norm = np.sqrt(norm)
        for q in range(width):
            phi[l, q] /= norm
            psi[l - 1, q] = post[lo + q] * phi[l, q]
        found = l
    return found


#: Columns of a row of ``first_pass``'s table between the log curve, the intercept's scores and the c scores.
TABLE_STRIDE = 64


def first_pass(ptr, item, correct, table, log_prior, local_index, global_slot, pop_scores, nodes, slot, n_chunks,
               cache, floor):
    """Posterior moments of the scores, summed over persons, and the answers' projections.

    ``table[2j + y]`` holds, ``TABLE_STRIDE`` columns apart, log P(y | t_q)
    of item j, the intercept's score (the slope's is t_q times it) and, for
    the 3PL, the lower asymptote's: one row per answer, so that what the
    posterior reads brings the scores along. Returns (sum over persons of
    E_i[s_j] E_i[s_j]' per item over its own parameters [J, k, k], sum of
    Cov_i between the globals [G, G], sum of Cov_i(s_j, S_g) [J, k, G],
    posterior mass per node [Q]); each item's own block of sum Cov_i is the
    expected counts' sum of s s' less the first. When ``cache`` has a row per
    answer (``[n_obs, own parameters, basis]``, float32), each answer's
    scores projected on the person's posterior polynomials, sum_q post_q s(q)
    phi_l(q), go to ``cache[answer, slot[u]]``. Nodes where a person's
    posterior is below ``floor`` times its largest value are left out.
    """
    n_items, k = local_index.shape
    g_size = max(pop_scores.shape[0], 1)
    products = np.zeros((n_chunks, n_items, k, k))
    gcov = np.zeros((n_chunks, g_size, g_size))
    cross = np.zeros((n_chunks, n_items, k, g_size))
    mass = np.zeros((n_chunks, nodes.size))
    in_chunks(_first_pass_chunk, n_chunks, ptr, item, correct, table, log_prior, local_index, global_slot,
              pop_scores, nodes, slot, cache, floor, products, gcov, cross, mass)
    return products.sum(axis=0), gcov.sum(axis=0), cross.sum(axis=0), mass.sum(axis=0)


@njit((int64, int64, _OFFSETS, _ITEMS, _OUTCOMES, _MATRIX32, _VECTOR, _INDEX_2D, _INDEX_2D, _MATRIX, _VECTOR,
       _INDEX, _ARRAY32_3D, float64, _ARRAY_4D, _ARRAY_3D, _ARRAY_4D, _MATRIX),
      fastmath=True, cache=True, nogil=True, error_model="numpy")
def _first_pass_chunk(c, n_chunks, ptr, item, correct, table, log_prior, local_index, global_slot, pop_scores,
                      nodes, slot, cache, floor, products, gcov, cross, mass):
    """``first_pass`` for chunk c of the persons, into ``products[c]``, ``gcov[c]``, ``cross[c]``, ``mass[c]``."""
    n_persons = ptr.size - 1
    k = local_index.shape[1]
    n_nodes = nodes.size
    d_at, c_at = TABLE_STRIDE, 2 * TABLE_STRIDE
    n_globals = pop_scores.shape[0]
    g_size = max(n_globals, 1)
    basis = cache.shape[2]
    caching = cache.shape[0] > 0
    lo_i = c * n_persons // n_chunks
    hi_i = (c + 1) * n_persons // n_chunks
    post = np.empty(n_nodes)
    post_t = np.empty(n_nodes)
    psi = np.zeros((max(basis, 1), n_nodes))
    psi_t = np.zeros((max(basis, 1), n_nodes))
    w_work = np.empty(n_nodes)
    phi = np.empty((basis + 1, n_nodes))
    raw = np.zeros((g_size, n_nodes))
    gmean = np.zeros(g_size)
    mean = np.zeros(k)
    proj = np.zeros((k, max(basis, 1)))
    for i in range(lo_i, hi_i):
        start, stop = ptr[i], ptr[i + 1]
        if start == stop:
            continue
        lo, width, touch = posterior_range(post, start, stop, item, correct, table, log_prior, floor)
        if touch == 1234.5:  # never: keeps the reads that overlap the cache misses
            mass[c, 0] += 1e-300
        for q in range(n_nodes):
            mass[c, q] += post[q]
        found = _posterior_polynomials(post, lo, width, nodes, basis, psi, w_work, phi) if caching else 0
        for q in range(width):
            post_t[q] = post[lo + q] * nodes[lo + q]
            for m in range(found):
                psi_t[m, q] = psi[m, q] * nodes[lo + q]
        if n_globals:
            for g in range(n_globals):
                for q in range(width):
                    raw[g, q] = pop_scores[g, lo + q]
            for r in range(start, stop):
                row = 2 * item[r] + correct[r]
                for u in range(k):
                    g = global_slot[item[r], u]
                    if g >= 0:
                        for q in range(width):
                            if u == 2:
                                raw[g, q] += table[row, c_at + lo + q]
                            elif u == 1:
                                raw[g, q] += table[row, d_at + lo + q]
                            else:
                                raw[g, q] += table[row, d_at + lo + q] * nodes[lo + q]
            for g in range(n_globals):
                total = 0.0
                for q in range(width):
                    total += post[lo + q] * raw[g, q]
                gmean[g] = total
            for g in range(n_globals):
                for h in range(n_globals):
                    total = 0.0
                    for q in range(width):
                        total += post[lo + q] * (raw[g, q] - gmean[g]) * (raw[h, q] - gmean[h])
                    gcov[c, g, h] += total
        for r in range(start, stop):
            j = item[r]
            if local_index[j, 1] < 0:  # a fixed item: in the posterior only
                continue
            row = 2 * j + correct[r]
            # The slope's and the intercept's moments, from one read of the intercept's scores.
            m_a = m_d = 0.0
            if found == 3:
                p_a0 = p_a1 = p_a2 = p_d0 = p_d1 = p_d2 = 0.0
                for q in range(width):
                    f = table[row, d_at + lo + q]
                    m_d += post[lo + q] * f
                    m_a += post_t[q] * f
                    p_d0 += psi[0, q] * f
                    p_d1 += psi[1, q] * f
                    p_d2 += psi[2, q] * f
                    p_a0 += psi_t[0, q] * f
                    p_a1 += psi_t[1, q] * f
                    p_a2 += psi_t[2, q] * f
                proj[0, 0], proj[0, 1], proj[0, 2] = p_a0, p_a1, p_a2
                proj[1, 0], proj[1, 1], proj[1, 2] = p_d0, p_d1, p_d2
            else:
                for m in range(basis):
                    proj[0, m] = 0.0
                    proj[1, m] = 0.0
                for q in range(width):
                    f = table[row, d_at + lo + q]
                    m_d += post[lo + q] * f
                    m_a += post_t[q] * f
                    for m in range(found):
                        proj[0, m] += psi_t[m, q] * f
                        proj[1, m] += psi[m, q] * f
            mean[0], mean[1] = m_a, m_d
            if k == 3:
                m_c = 0.0
                for m in range(basis):
                    proj[2, m] = 0.0
                for q in range(width):
                    f = table[row, c_at + lo + q]
                    m_c += post[lo + q] * f
                    for m in range(found):
                        proj[2, m] += psi[m, q] * f
                mean[2] = m_c
            for u in range(k):
                if local_index[j, u] < 0:
                    continue
                for g in range(n_globals):
                    total = 0.0
                    for q in range(width):
                        if u == 2:
                            value = table[row, c_at + lo + q]
                        elif u == 1:
                            value = table[row, d_at + lo + q]
                        else:
                            value = table[row, d_at + lo + q] * nodes[lo + q]
                        total += post[lo + q] * value * raw[g, q]
                    cross[c, j, u, g] += total - mean[u] * gmean[g]
                for v in range(k):
                    if local_index[j, v] >= 0:
                        products[c, j, u, v] += mean[u] * mean[v]
                if caching:
                    for m in range(basis):
                        cache[r, slot[u], m] = proj[u, m]
