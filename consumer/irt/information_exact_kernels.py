"""Compiled passes of the exact method of standard errors: the whole information matrix, and its inverse's bands.

- ``subtract_covariances``: the whole matrix (lower triangle). A person's
  scores, centred and weighted by the square root of the posterior, are the
  rows W of a small matrix, and Cov_i = W W' (the lower triangle, in the
  kernel's own vectorised loops: no BLAS threads beside the kernel's);
  each thread owns a band of rows of the output, so that none of them
  writes another's elements and no copies of the matrix are needed.
- ``inverse_bands``: the bands of the inverse next to its diagonal, from
  its triangular factor (each item's own block of the covariance).

What every pass shares, and why the passes are cut into chunks:
``information_kernels``.
"""

from __future__ import annotations

import numpy as np
from numba import int64, njit

from .information_kernels import _ARRAY_3D, _ARRAY_4D, _INDEX, _INDEX_2D, _ITEMS, _MATRIX, _OFFSETS, _OUTCOMES, _VECTOR, NODE_FLOOR, posterior_range
from .chunks import in_chunks


def subtract_covariances(ptr, item, correct, rows, log_prior, scores, local_index, global_slot, pop_scores,
                         global_index, bounds, max_rows, out):
    """out[e, f] -= sum over persons of Cov_i(S_e, S_f) for f <= e (the lower triangle only).

    ``scores[j, y, u, q]``, ``pop_scores[g, q]``. Thread c owns the rows
    bounds[c]:bounds[c + 1] and goes through every person (the posteriors
    are computed once per thread: cheap against the pairs), so that no two
    threads write one element and no copies of the matrix are needed. A
    person's products come from one matrix product (BLAS) of the rows the
    thread owns with all of the person's rows.
    """
    in_chunks(_subtract_band, bounds.size - 1, ptr, item, correct, rows, log_prior, scores, local_index,
              global_slot, pop_scores, global_index, bounds, max_rows, out)
    return out


def inverse_bands(lt, width, n_chunks):
    """From lt (lower triangular, inverse = lt' lt): inverse[a, a + o] for o < width.

    inverse[a, b] = sum over rows r of lt[r, a] * lt[r, b]; rows go to the
    threads in turn, each thread summing into its own bands.
    """
    acc = np.zeros((n_chunks, lt.shape[0], width))
    in_chunks(_bands_chunk, n_chunks, lt, width, acc)
    return acc.sum(axis=0)


@njit((int64, int64, _OFFSETS, _ITEMS, _OUTCOMES, _MATRIX, _VECTOR, _ARRAY_4D, _INDEX_2D, _INDEX_2D, _MATRIX,
       _INDEX, _INDEX, int64, _MATRIX),
      fastmath=True, cache=True, nogil=True, error_model="numpy")
def _subtract_band(c, n_chunks, ptr, item, correct, rows, log_prior, scores, local_index, global_slot, pop_scores,
                   global_index, bounds, max_rows, out):
    """``subtract_covariances`` for the rows bounds[c]:bounds[c + 1] of ``out``.

    A person's scores, centred and weighted by the square root of the
    posterior, are the rows of W: first the items' own parameters, in the
    order of the person's answers and of the parameters (a, d, c), then one
    row per global parameter; ``idx`` holds their places in the matrix.
    """
    n_persons = ptr.size - 1
    n_nodes = rows.shape[1]
    n_globals = global_index.size
    k = scores.shape[2]
    first, last = bounds[c], bounds[c + 1]
    post = np.empty(n_nodes)
    raw = np.empty((max(n_globals, 1), n_nodes))
    root = np.empty(n_nodes)
    W = np.empty((n_nodes, max_rows))  # W transposed: a person's row e is the column W[:, e]
    by_place = np.empty((n_nodes, max_rows))
    idx = np.empty(max_rows, dtype=np.int64)
    places = np.empty(max_rows, dtype=np.int64)
    acc = np.empty(max_rows)
    for i in range(n_persons):
        start, stop = ptr[i], ptr[i + 1]
        if start == stop:
            continue
        lo, width, _ = posterior_range(post, start, stop, item, correct, rows, log_prior, NODE_FLOOR)
        for q in range(width):
            root[q] = np.sqrt(post[lo + q])
        for g in range(n_globals):
            for q in range(width):
                raw[g, q] = pop_scores[g, lo + q]
        n = 0
        for r in range(start, stop):
            j, y = item[r], correct[r]
            for u in range(k):
                p = local_index[j, u]
                if p >= 0:
                    mean = 0.0
                    for q in range(width):
                        mean += post[lo + q] * scores[j, y, u, lo + q]
                    for q in range(width):
                        W[q, n] = root[q] * (scores[j, y, u, lo + q] - mean)
                    idx[n] = p
                    n += 1
                else:
                    g = global_slot[j, u]
                    if g >= 0:
                        for q in range(width):
                            raw[g, q] += scores[j, y, u, lo + q]
        for g in range(n_globals):
            mean = 0.0
            for q in range(width):
                mean += post[lo + q] * raw[g, q]
            for q in range(width):
                W[q, n] = root[q] * (raw[g, q] - mean)
            idx[n] = global_index[g]
            n += 1
        # The rows in the order of their places in the matrix (they usually are already: answers come
        # sorted by question), so that the lower triangle of row e is the rows before it.
        ordered = True
        for e in range(1, n):
            if idx[e] < idx[e - 1]:
                ordered = False
                break
        if not ordered:
            order = np.argsort(idx[:n])
            for e in range(n):
                for q in range(width):
                    by_place[q, e] = W[q, order[e]]
            for e in range(n):
                for q in range(width):
                    W[q, e] = by_place[q, e]
                places[e] = idx[order[e]]
            for e in range(n):
                idx[e] = places[e]
        # This thread's rows only, and in them the lower triangle: row e against rows 0..e, summed over
        # the nodes one node at a time (contiguous in the rows, so the loop is vectorised), in the
        # kernel's own loops: a BLAS call per person would start BLAS's threads beside the kernel's.
        for e in range(n):
            pe = idx[e]
            if pe < first or pe >= last:
                continue
            for f in range(e + 1):
                acc[f] = 0.0
            for q in range(width):
                w = W[q, e]
                for f in range(e + 1):
                    acc[f] += w * W[q, f]
            target = out[pe]
            for f in range(e + 1):
                target[idx[f]] -= acc[f]


@njit((int64, int64, _MATRIX, int64, _ARRAY_3D),
      fastmath=True, cache=True, nogil=True, error_model="numpy")
def _bands_chunk(c, n_chunks, lt, width, acc):
    """``inverse_bands`` for the rows c, c + n_chunks, ... of lt, into ``acc[c]``."""
    n = lt.shape[0]
    for r in range(c, n, n_chunks):
        row = lt[r]
        for a in range(r + 1):
            x = row[a]
            if x == 0.0:
                continue
            for o in range(width):
                if a + o <= r:
                    acc[c, a, o] += x * row[a + o]
