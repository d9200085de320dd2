"""Compiled passes of the approximate method of standard errors, on the answers' cached projections.

``information_kernels.first_pass`` leaves each answer's scores projected on
a few polynomials of theta orthonormal under the person's posterior; these
passes read only that cache:

- ``propagation_sweep``: one sweep of Gaussian belief propagation from
  persons to items;
- ``offdiag_product``: the item-item cross terms times a few vectors.

The inner loops are written out for the 2PL (two own parameters, three
polynomials), the case of the largest calibrations. What every pass
shares, and why the passes are cut into chunks: ``information_kernels``.
"""

from __future__ import annotations

import numpy as np
from numba import int64, njit

from .chunks import in_chunks
from .information_kernels import _ARRAY32_3D, _ARRAY_3D, _ARRAY_4D, _INDEX, _INDEX_2D, _ITEMS, _MATRIX, _OFFSETS


def propagation_sweep(ptr, item, local_index, comp, cache, precision, delta, n_chunks):
    """One sweep of Gaussian belief propagation from persons to the items' own parameters.

    The information is the sum over items of Lambda_j plus, for each
    person, the factor -G G' over the person's items' parameters (G: the
    cached projections, a kl x basis block per answer). Item j's precision
    is Lambda_j + the sum of the persons' messages; person i's message to
    item j, given every other item's cavity precision B_k = precision_k -
    message_{i->k}, is

        M_ij = -G_j (I - Gamma_(-j))^-1 G_j',  Gamma_(-j) = sum_{k != j} G_k' B_k^-1 G_k,

    computed as -T (B_j + T)^-1 B_j with T = G_j (I - Gamma)^-1 G_j' (Gamma
    over all the person's items). ``delta[answer]`` holds the message less
    its start -G_j G_j' (the item-block approximation) and is updated in
    place (every person reads the precisions of the last sweep). Returns
    the sum of ``delta`` per item and how many persons were left as they
    were (I - Gamma not positive definite).
    """
    sums = np.zeros((n_chunks, precision.shape[0], comp.size, comp.size))
    skipped = np.zeros(n_chunks, dtype=np.int64)
    max_m = int(np.diff(ptr).max(initial=0))
    in_chunks(_sweep_chunk, n_chunks, ptr, item, local_index, comp, cache, precision, delta, max_m, sums, skipped)
    return sums.sum(axis=0), skipped.sum()


@njit(cache=True, fastmath=True, nogil=True, error_model="numpy")
def _sweep_person_2x3(answers, m, item, cache, precision, delta, sums, work):
    """``propagation_sweep`` for one person, two own parameters per item and three polynomials, unrolled.

    ``work[a]`` keeps answer a's G (6), B (3) and G G' (3). Returns False if
    the person's I - Gamma is not positive definite (nothing written then).
    """
    w00 = w01 = w02 = w11 = w12 = w22 = 0.0  # Gamma, summed over answers (I - sum G' B^-1 G below)
    for a in range(m):
        r = answers[a]
        j = item[r]
        g00, g01, g02 = cache[r, 0, 0], cache[r, 0, 1], cache[r, 0, 2]
        g10, g11, g12 = cache[r, 1, 0], cache[r, 1, 1], cache[r, 1, 2]
        gg00 = g00 * g00 + g01 * g01 + g02 * g02
        gg01 = g00 * g10 + g01 * g11 + g02 * g12
        gg11 = g10 * g10 + g11 * g11 + g12 * g12
        b00 = precision[j, 0, 0] + gg00 - delta[r, 0, 0]
        b01 = precision[j, 0, 1] + gg01 - delta[r, 0, 1]
        b11 = precision[j, 1, 1] + gg11 - delta[r, 1, 1]
        det = b00 * b11 - b01 * b01
        if not (b00 > 0.0 and det > 0.0):
            return False
        i00, i01, i11 = b11 / det, -b01 / det, b00 / det
        h00, h01, h02 = i00 * g00 + i01 * g10, i00 * g01 + i01 * g11, i00 * g02 + i01 * g12
        h10, h11, h12 = i01 * g00 + i11 * g10, i01 * g01 + i11 * g11, i01 * g02 + i11 * g12
        w00 += g00 * h00 + g10 * h10
        w01 += g00 * h01 + g10 * h11
        w02 += g00 * h02 + g10 * h12
        w11 += g01 * h01 + g11 * h11
        w12 += g01 * h02 + g11 * h12
        w22 += g02 * h02 + g12 * h12
        row = work[a]
        row[0], row[1], row[2], row[3], row[4], row[5] = g00, g01, g02, g10, g11, g12
        row[6], row[7], row[8], row[9], row[10], row[11] = b00, b01, b11, gg00, gg01, gg11
    # omega = (I - Gamma)^-1
    m00, m01, m02, m11, m12, m22 = 1.0 - w00, -w01, -w02, 1.0 - w11, -w12, 1.0 - w22
    c00 = m11 * m22 - m12 * m12
    c01 = m02 * m12 - m01 * m22
    c02 = m01 * m12 - m02 * m11
    det = m00 * c00 + m01 * c01 + m02 * c02
    minor = m00 * m11 - m01 * m01
    if not (m00 > 0.0 and minor > 0.0 and det > 0.0):
        return False
    o00, o01, o02 = c00 / det, c01 / det, c02 / det
    o11 = (m00 * m22 - m02 * m02) / det
    o12 = (m02 * m01 - m00 * m12) / det
    o22 = minor / det
    for a in range(m):
        r = answers[a]
        j = item[r]
        row = work[a]
        g00, g01, g02, g10, g11, g12 = row[0], row[1], row[2], row[3], row[4], row[5]
        b00, b01, b11, gg00, gg01, gg11 = row[6], row[7], row[8], row[9], row[10], row[11]
        k00 = g00 * o00 + g01 * o01 + g02 * o02
        k01 = g00 * o01 + g01 * o11 + g02 * o12
        k02 = g00 * o02 + g01 * o12 + g02 * o22
        k10 = g10 * o00 + g11 * o01 + g12 * o02
        k11 = g10 * o01 + g11 * o11 + g12 * o12
        k12 = g10 * o02 + g11 * o12 + g12 * o22
        t00 = k00 * g00 + k01 * g01 + k02 * g02
        t01 = k00 * g10 + k01 * g11 + k02 * g12
        t11 = k10 * g10 + k11 * g11 + k12 * g12
        s00, s01, s11 = b00 + t00, b01 + t01, b11 + t11
        det = s00 * s11 - s01 * s01
        if not (s00 > 0.0 and det > 0.0):
            return False
        e00, e01, e11 = s11 / det, -s01 / det, s00 / det
        x00, x01 = e00 * b00 + e01 * b01, e00 * b01 + e01 * b11
        x10, x11 = e01 * b00 + e11 * b01, e01 * b01 + e11 * b11
        y00 = t00 * x00 + t01 * x10
        y01 = t00 * x01 + t01 * x11
        y10 = t01 * x00 + t11 * x10
        y11 = t01 * x01 + t11 * x11
        d00, d01, d11 = gg00 - y00, gg01 - 0.5 * (y01 + y10), gg11 - y11
        row[12], row[13], row[14] = d00, d01, d11
    for a in range(m):
        r = answers[a]
        j = item[r]
        row = work[a]
        delta[r, 0, 0], delta[r, 0, 1], delta[r, 1, 0], delta[r, 1, 1] = row[12], row[13], row[13], row[14]
        sums[j, 0, 0] += row[12]
        sums[j, 0, 1] += row[13]
        sums[j, 1, 0] += row[13]
        sums[j, 1, 1] += row[14]
    return True


@njit(fastmath=True, cache=True, nogil=True, error_model="numpy")
def _keep_messages(answers, m, item, delta, sums):
    """A person whose update failed keeps the messages of the last sweep: add them to ``sums`` as they were."""
    kl = delta.shape[1]
    for a in range(m):
        r = answers[a]
        j = item[r]
        for s in range(kl):
            for t in range(kl):
                sums[j, s, t] += delta[r, s, t]


@njit(fastmath=True, cache=True, nogil=True, error_model="numpy")
def _invert_small(m, out, low):
    """out = inverse of the small symmetric m; False unless m is positive definite.

    Closed forms up to 3 x 3 (positive definite when the leading minors
    are), Cholesky beyond, with ``low`` (m's shape) as work space.
    """
    n = m.shape[0]
    if n == 1:
        if not m[0, 0] > 0.0:
            return False
        out[0, 0] = 1.0 / m[0, 0]
        return True
    if n == 2:
        det = m[0, 0] * m[1, 1] - m[0, 1] * m[0, 1]
        if not (m[0, 0] > 0.0 and det > 0.0):
            return False
        out[0, 0] = m[1, 1] / det
        out[1, 1] = m[0, 0] / det
        out[0, 1] = out[1, 0] = -m[0, 1] / det
        return True
    if n == 3:
        c00 = m[1, 1] * m[2, 2] - m[1, 2] * m[1, 2]
        c01 = m[0, 2] * m[1, 2] - m[0, 1] * m[2, 2]
        c02 = m[0, 1] * m[1, 2] - m[0, 2] * m[1, 1]
        det = m[0, 0] * c00 + m[0, 1] * c01 + m[0, 2] * c02
        minor = m[0, 0] * m[1, 1] - m[0, 1] * m[0, 1]
        if not (m[0, 0] > 0.0 and minor > 0.0 and det > 0.0):
            return False
        out[0, 0] = c00 / det
        out[0, 1] = out[1, 0] = c01 / det
        out[0, 2] = out[2, 0] = c02 / det
        out[1, 1] = (m[0, 0] * m[2, 2] - m[0, 2] * m[0, 2]) / det
        out[1, 2] = out[2, 1] = (m[0, 2] * m[0, 1] - m[0, 0] * m[1, 2]) / det
        out[2, 2] = minor / det
        return True
    for i in range(n):
        for j in range(i + 1):
            total = m[i, j]
            for s in range(j):
                total -= low[i, s] * low[j, s]
            if i == j:
                if not total > 0.0:
                    return False
                low[i, i] = np.sqrt(total)
            else:
                low[i, j] = total / low[j, j]
    for i in range(n):  # low^-1, in place
        low[i, i] = 1.0 / low[i, i]
        for j in range(i):
            total = 0.0
            for s in range(j, i):
                total -= low[i, s] * low[s, j]
            low[i, j] = total * low[i, i]
    for i in range(n):
        for j in range(i + 1):
            total = 0.0
            for s in range(i, n):
                total += low[s, i] * low[s, j]
            out[i, j] = total
            out[j, i] = total
    return True


def offdiag_product(ptr, item, local_index, slot, cache, x, n_chunks):
    """-(sum over persons of G G' x) over the items' own parameters, without each item's own block.

    That is the item-item cross terms of the information times x [P, b],
    from the cached projections (the globals' rows and columns and each
    item's own block are left to the caller, who has them exactly).
    """
    out = np.zeros((n_chunks,) + x.shape)
    max_m = max(int(np.diff(ptr).max(initial=0)), 1)
    in_chunks(_offdiag_chunk, n_chunks, ptr, item, local_index, slot, cache, x, max_m, out)
    return out.sum(axis=0)


@njit(cache=True, fastmath=True, nogil=True, error_model="numpy")
def _person_product(G, answers, m, item, local_index, slot, x, out, total, own):
    """out -= the person's item-item cross terms times x: -(G G' less each item's own block) x.

    G[a, s, l]: answer a's projections (own parameter s); x [P, b].
    """
    k = local_index.shape[1]
    basis = G.shape[2]
    b = x.shape[1]
    for l in range(basis):
        for v in range(b):
            total[l, v] = 0.0
    for a in range(m):
        j = item[answers[a]]
        for u in range(k):
            p = local_index[j, u]
            if p < 0:
                continue
            s = slot[u]
            for l in range(basis):
                g = G[a, s, l]
                for v in range(b):
                    total[l, v] += g * x[p, v]
    for a in range(m):
        j = item[answers[a]]
        for l in range(basis):
            for v in range(b):
                own[l, v] = total[l, v]
        for u in range(k):
            p = local_index[j, u]
            if p < 0:
                continue
            s = slot[u]
            for l in range(basis):
                g = G[a, s, l]
                for v in range(b):
                    own[l, v] -= g * x[p, v]
        for u in range(k):
            p = local_index[j, u]
            if p < 0:
                continue
            s = slot[u]
            for v in range(b):
                acc = 0.0
                for l in range(basis):
                    acc += G[a, s, l] * own[l, v]
                out[p, v] -= acc


@njit((int64, int64, _OFFSETS, _ITEMS, _INDEX_2D, _INDEX, _ARRAY32_3D, _ARRAY_3D, _ARRAY32_3D, int64, _ARRAY_4D,
       _INDEX),
      fastmath=True, cache=True, nogil=True, error_model="numpy")
def _sweep_chunk(c, n_chunks, ptr, item, local_index, comp, cache, precision, delta, max_m, sums, skipped):
    """``propagation_sweep`` for chunk c of the persons, into ``sums[c]`` and ``skipped[c]``."""
    n_persons = ptr.size - 1
    kl = comp.size
    basis = cache.shape[2]
    lo_i = c * n_persons // n_chunks
    hi_i = (c + 1) * n_persons // n_chunks
    G = np.empty((max_m, kl, basis))
    B = np.empty((max_m, kl, kl))
    answers = np.empty(max_m, dtype=np.int64)
    gamma = np.empty((basis, basis))
    omega = np.empty((basis, basis))
    low_b = np.empty((basis, basis))
    Bk = np.empty((kl, kl))
    Binv = np.empty((kl, kl))
    low_k = np.empty((kl, kl))
    H = np.empty((kl, basis))
    T = np.empty((kl, kl))
    X = np.empty((kl, kl))
    work = np.empty((max_m, 15))
    for i in range(lo_i, hi_i):
        m = np.int64(0)  # (not the literal 0: the calls below would be compiled for it too)
        for r in range(ptr[i], ptr[i + 1]):
            if local_index[item[r], comp[0]] >= 0:
                answers[m] = r
                m += 1
        if m == 0:
            continue
        if kl == 2 and basis == 3:
            if not _sweep_person_2x3(answers, m, item, cache, precision, delta, sums[c], work):
                skipped[c] += 1
                _keep_messages(answers, m, item, delta, sums[c])
            continue
        for l1 in range(basis):
            for l2 in range(basis):
                gamma[l1, l2] = 0.0
            gamma[l1, l1] = 1.0
        ok = True
        for a in range(m):
            r = answers[a]
            j = item[r]
            for s in range(kl):
                for l in range(basis):
                    G[a, s, l] = cache[r, s, l]
            for s in range(kl):
                for t in range(kl):
                    gg = 0.0
                    for l in range(basis):
                        gg += G[a, s, l] * G[a, t, l]
                    value = precision[j, s, t] + gg - delta[r, s, t]
                    B[a, s, t] = value
                    Bk[s, t] = value
            if not _invert_small(Bk, Binv, low_k):
                ok = False
                break
            for s in range(kl):
                for l in range(basis):
                    total = 0.0
                    for t in range(kl):
                        total += Binv[s, t] * G[a, t, l]
                    H[s, l] = total
            for l1 in range(basis):
                for l2 in range(l1 + 1):
                    total = 0.0
                    for s in range(kl):
                        total += G[a, s, l1] * H[s, l2]
                    gamma[l1, l2] -= total
        if ok:
            for l1 in range(basis):
                for l2 in range(l1):
                    gamma[l2, l1] = gamma[l1, l2]
            ok = _invert_small(gamma, omega, low_b)
        if not ok:
            skipped[c] += 1
            _keep_messages(answers, m, item, delta, sums[c])
            continue
        for a in range(m):
            r = answers[a]
            j = item[r]
            # T = G omega G'
            for s in range(kl):
                for l in range(basis):
                    total = 0.0
                    for l2 in range(basis):
                        total += G[a, s, l2] * omega[l2, l]
                    H[s, l] = total
            for s in range(kl):
                for t in range(kl):
                    total = 0.0
                    for l in range(basis):
                        total += H[s, l] * G[a, t, l]
                    T[s, t] = total
                    Bk[s, t] = B[a, s, t] + total
            if not _invert_small(Bk, Binv, low_k):
                for s in range(kl):
                    for t in range(kl):
                        sums[c, j, s, t] += delta[r, s, t]
                continue
            # X = (B + T)^-1 B; message = -T X
            for s in range(kl):
                for t in range(kl):
                    total = 0.0
                    for u in range(kl):
                        total += Binv[s, u] * B[a, u, t]
                    X[s, t] = total
            for s in range(kl):
                for t in range(kl):
                    total = 0.0
                    for u in range(kl):
                        total += T[s, u] * X[u, t]
                    Bk[s, t] = total
            for s in range(kl):
                for t in range(s, kl):
                    gg = 0.0
                    for l in range(basis):
                        gg += G[a, s, l] * G[a, t, l]
                    value = gg - 0.5 * (Bk[s, t] + Bk[t, s])
                    delta[r, s, t] = value
                    delta[r, t, s] = value
                    sums[c, j, s, t] += value
                    if t != s:
                        sums[c, j, t, s] += value


@njit((int64, int64, _OFFSETS, _ITEMS, _INDEX_2D, _INDEX, _ARRAY32_3D, _MATRIX, int64, _ARRAY_3D),
      fastmath=True, cache=True, nogil=True, error_model="numpy")
def _offdiag_chunk(c, n_chunks, ptr, item, local_index, slot, cache, x, max_m, out):
    """``offdiag_product`` for chunk c of the persons, into ``out[c]``."""
    n_persons = ptr.size - 1
    b = x.shape[1]
    kl, basis = cache.shape[1], cache.shape[2]
    k = local_index.shape[1]
    lo_i = c * n_persons // n_chunks
    hi_i = (c + 1) * n_persons // n_chunks
    G = np.zeros((max_m, k, basis))
    answers = np.empty(max_m, dtype=np.int64)
    total = np.zeros((basis, b))
    own = np.zeros((basis, b))
    target = out[c]
    for i in range(lo_i, hi_i):
        if kl == 2 and basis == 3 and k == 2:  # the 2PL, unrolled
            for v in range(b):
                t0 = t1 = t2 = 0.0
                for r in range(ptr[i], ptr[i + 1]):
                    pa, pd = local_index[item[r], 0], local_index[item[r], 1]
                    if pd < 0:
                        continue
                    xa, xd = x[pa, v], x[pd, v]
                    t0 += cache[r, 0, 0] * xa + cache[r, 1, 0] * xd
                    t1 += cache[r, 0, 1] * xa + cache[r, 1, 1] * xd
                    t2 += cache[r, 0, 2] * xa + cache[r, 1, 2] * xd
                for r in range(ptr[i], ptr[i + 1]):
                    pa, pd = local_index[item[r], 0], local_index[item[r], 1]
                    if pd < 0:
                        continue
                    xa, xd = x[pa, v], x[pd, v]
                    g00, g01, g02 = cache[r, 0, 0], cache[r, 0, 1], cache[r, 0, 2]
                    g10, g11, g12 = cache[r, 1, 0], cache[r, 1, 1], cache[r, 1, 2]
                    o0 = t0 - g00 * xa - g10 * xd
                    o1 = t1 - g01 * xa - g11 * xd
                    o2 = t2 - g02 * xa - g12 * xd
                    target[pa, v] -= g00 * o0 + g01 * o1 + g02 * o2
                    target[pd, v] -= g10 * o0 + g11 * o1 + g12 * o2
            continue
        m = np.int64(0)  # (not the literal 0: the call below would be compiled for it too)
        for r in range(ptr[i], ptr[i + 1]):
            j = item[r]
            if local_index[j, 1] < 0:
                continue
            for s in range(kl):
                for l in range(basis):
                    G[m, s, l] = cache[r, s, l]
            answers[m] = r
            m += 1
        if m:
            _person_product(G, answers, m, item, local_index, slot, x, target, total, own)
