"""Compiled inner loops of the scoring menu: ML, MAP and WLE modes, summed-score EAP, plausible values.

Like ``kernels``, every function Python calls declares its argument types,
so numba compiles it when this module is imported (or loads it from its
cache), and each runs on chunks of the persons, one chunk per thread
(``chunks.in_chunks``). This module imports no other kernel module, so that
``consumer.warmup`` can compile it side by side with them.

The modes (ML, MAP, WLE) are found per person in two stages:

1. on the quadrature grid, from tables of the items' log curves (and, for
   WLE, their information and Warm's J), the node where the objective is
   largest: sums of table rows, no exponentials, as the EAP pass does;
2. from that node, along the grid, the first interval where the exact
   estimating function (the derivative of the objective) changes sign,
   then its root in that interval by Newton steps kept inside it (from
   the vertex of the parabola through the grid's three best values).
   When the function keeps its sign up to the end of the grid, the estimate
   is that end (reported as lying at the bound).

Stage 1 picks the highest of several modes (the 3PL's likelihood can have
more than one); stage 2 makes the estimate exact to 1e-10 whatever the
grid's spacing.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import float64, int8, int32, int64, njit, uint8, uint64

_OFFSETS = int64[::1]
_ITEMS = int32[::1]
_OUTCOMES = uint8[::1]
_VECTOR = float64[::1]
_MATRIX = float64[:, ::1]

#: Method codes of ``modes``.
ML_CODE, MAP_CODE, WLE_CODE = 0, 1, 2
#: The root is found to this width in theta, or after this many steps.
_TOLERANCE = 1e-10
_MAX_STEPS = 200


def chunk_count() -> int:
    return max(1, numba.get_num_threads())


@njit(fastmath=True, cache=True, nogil=True)
def _derivatives(theta, start, stop, item, correct, a, d, g):
    """At ``theta``, for the person's answers ``start:stop``: the score (d log L / d theta), the test information
    I, Warm's J = sum P' P'' / (P Q), and the observed curvature d^2 log L / d theta^2.

    P = g + (1 - g) s with s the logistic of a theta + d; every term is
    written with s and t = 1 - s (each computed without cancellation), so
    that nothing is 0/0 at the ends of the range.
    """
    score = 0.0
    info = 0.0
    warm = 0.0
    curvature = 0.0
    for k in range(start, stop):
        j = item[k]
        aj = a[j]
        z = aj * theta + d[j]
        e = np.exp(-abs(z))
        if z >= 0.0:
            s = 1.0 / (1.0 + e)
            t = e / (1.0 + e)
        else:
            s = e / (1.0 + e)
            t = 1.0 / (1.0 + e)
        guess = g[j]
        p = guess + (1.0 - guess) * s
        item_info = (1.0 - guess) * aj * aj * s * s * t / p
        info += item_info
        warm += item_info * aj * (1.0 - 2.0 * s)
        if correct[k]:
            ratio = (1.0 - guess) * aj * s * t / p  # P' / P
            score += ratio
            curvature += aj * (1.0 - 2.0 * s) * ratio - ratio * ratio
        else:
            score -= aj * s  # -P' / Q
            curvature -= aj * aj * s * t
    return score, info, warm, curvature


@njit(cache=True, nogil=True)
def _estimating(theta, start, stop, item, correct, a, d, g, method, prior_mean, prior_var):
    """The derivative of the method's objective at ``theta`` (ML's score, MAP's with the prior's, WLE's Warm
    equation score + J / (2 I)), and the slope Newton steps take for it: the curvature of the log-likelihood (with
    the prior's for MAP; for WLE without the derivative of J / (2 I), which is O(1) against the curvature's O(n))."""
    score, info, warm, curvature = _derivatives(theta, start, stop, item, correct, a, d, g)
    if method == 1:
        return score - (theta - prior_mean) / prior_var, curvature - 1.0 / prior_var
    if method == 2:
        return (score + warm / (2.0 * info) if info > 0.0 else score), curvature
    return score, curvature


@njit(cache=True, nogil=True)
def _root(lo, hi, x, start, stop, item, correct, a, d, g, method, prior_mean, prior_var):
    """The root in [lo, hi] of the estimating function, which is > 0 at lo and <= 0 at hi, from ``x``: Newton
    steps, each replaced by the bracket's midpoint when it would leave the bracket or the slope is not negative."""
    for _ in range(_MAX_STEPS):
        f_x, slope = _estimating(x, start, stop, item, correct, a, d, g, method, prior_mean, prior_var)
        if f_x > 0.0:
            lo = x
        elif f_x < 0.0:
            hi = x
        else:
            return x
        following = x - f_x / slope if slope < 0.0 else 0.5 * (lo + hi)
        if not (lo < following < hi):
            following = 0.5 * (lo + hi)
        if abs(following - x) < _TOLERANCE or hi - lo < _TOLERANCE:
            return following
        x = following
    return x


@njit(cache=True, nogil=True)
def _vertex(nodes, objective, q, lo, hi):
    """Where the parabola through the objective at nodes q - 1, q, q + 1 peaks, kept inside (lo, hi)."""
    if 0 < q < nodes.size - 1:
        left, centre, right = objective[q - 1], objective[q], objective[q + 1]
        bend = left - 2.0 * centre + right
        if bend < 0.0:
            x = nodes[q] + 0.5 * (nodes[q + 1] - nodes[q]) * (left - right) / bend
            if lo < x < hi:
                return x
    return 0.5 * (lo + hi)


@njit((int64, int64, _OFFSETS, _ITEMS, _OUTCOMES, _VECTOR, _VECTOR, _VECTOR, _MATRIX, _MATRIX, _MATRIX, _VECTOR,
       int64, float64, float64, _VECTOR, _VECTOR, int8[::1]), cache=True, nogil=True)
def _modes(c, n_chunks, ptr, item, correct, a, d, g, rows, info_rows, warm_rows, nodes, method, prior_mean,
           prior_var, theta, se, bound):
    """ML (method 0), MAP (1) or WLE (2) estimates of chunk c of the persons, with their standard errors.

    ``rows[2j + y, q]`` is log P(y | node q) for item j; ``info_rows[j, q]``
    and ``warm_rows[j, q]`` the item's information and Warm's J at node q
    (read for WLE only). Persons without answers are left as they are.
    ``bound`` is -1 or +1 where the estimate is the grid's first or last
    node because the objective still rises there.
    """
    n_nodes = nodes.size
    first, last = c * (ptr.size - 1) // n_chunks, (c + 1) * (ptr.size - 1) // n_chunks
    objective = np.empty(n_nodes)
    info_sum = np.empty(n_nodes)
    warm_sum = np.empty(n_nodes)
    for i in range(first, last):
        start, stop = ptr[i], ptr[i + 1]
        if start == stop:
            continue
        for q in range(n_nodes):
            objective[q] = 0.0
        for k in range(start, stop):
            row = rows[2 * item[k] + correct[k]]
            for q in range(n_nodes):
                objective[q] += row[q]
        if method == 1:
            for q in range(n_nodes):
                objective[q] -= 0.5 * (nodes[q] - prior_mean) ** 2 / prior_var
        elif method == 2:
            # The weight's log, integral of J / (2 I), by the trapezoid rule (0.5 log I exactly for the 2PL).
            for q in range(n_nodes):
                info_sum[q] = 0.0
                warm_sum[q] = 0.0
            for k in range(start, stop):
                info_row = info_rows[item[k]]
                warm_row = warm_rows[item[k]]
                for q in range(n_nodes):
                    info_sum[q] += info_row[q]
                    warm_sum[q] += warm_row[q]
            weight = 0.0
            previous = warm_sum[0] / (2.0 * info_sum[0])
            for q in range(1, n_nodes):
                current = warm_sum[q] / (2.0 * info_sum[q])
                weight += 0.5 * (nodes[q] - nodes[q - 1]) * (previous + current)
                objective[q] += weight
                previous = current
        best = 0
        for q in range(1, n_nodes):
            if objective[q] > objective[best]:
                best = q
        x = nodes[best]
        f_x, _ = _estimating(x, start, stop, item, correct, a, d, g, method, prior_mean, prior_var)
        where = 0
        if f_x > 0.0:  # the root lies to the right
            q = best
            while True:
                if q == n_nodes - 1:
                    where = 1
                    x = nodes[q]
                    break
                f_next, _ = _estimating(nodes[q + 1], start, stop, item, correct, a, d, g, method, prior_mean,
                                        prior_var)
                if f_next <= 0.0:
                    x = nodes[q + 1] if f_next == 0.0 else _root(
                        nodes[q], nodes[q + 1], _vertex(nodes, objective, best, nodes[q], nodes[q + 1]), start, stop,
                        item, correct, a, d, g, method, prior_mean, prior_var)
                    break
                q += 1
        elif f_x < 0.0:  # to the left
            q = best
            while True:
                if q == 0:
                    where = -1
                    x = nodes[0]
                    break
                f_previous, _ = _estimating(nodes[q - 1], start, stop, item, correct, a, d, g, method, prior_mean,
                                            prior_var)
                if f_previous >= 0.0:
                    x = nodes[q - 1] if f_previous == 0.0 else _root(
                        nodes[q - 1], nodes[q], _vertex(nodes, objective, best, nodes[q - 1], nodes[q]), start, stop,
                        item, correct, a, d, g, method, prior_mean, prior_var)
                    break
                q -= 1
        _, info, _, curvature = _derivatives(x, start, stop, item, correct, a, d, g)
        theta[i] = x
        bound[i] = where
        if method == 1:
            se[i] = 1.0 / np.sqrt(max(-curvature + 1.0 / prior_var, 1e-300))
        elif method == 0 and where != 0:
            se[i] = np.nan  # the likelihood still rises at the bound: the estimate is infinite, no standard error
        else:
            se[i] = 1.0 / np.sqrt(info) if info > 0.0 else np.inf


@njit((_OFFSETS, _ITEMS, uint64[::1], uint64[::1], uint64[::1], uint64[::1]), cache=True, nogil=True)
def form_keys(ptr, item, salt_a, salt_b, key_a, key_b):
    """Two 64-bit keys per person of the set of items they answered: sums (mod 2^64) of a random number per item,
    whatever the order of the answers. Two different sets share both keys with probability about 2^-128."""
    for i in range(ptr.size - 1):
        ka = np.uint64(0)
        kb = np.uint64(0)
        for k in range(ptr[i], ptr[i + 1]):
            ka += salt_a[item[k]]
            kb += salt_b[item[k]]
        key_a[i] = ka
        key_b[i] = kb


@njit((int64, int64, _OFFSETS, _ITEMS, _OFFSETS, _OFFSETS, _MATRIX, _VECTOR, _VECTOR, _VECTOR, _VECTOR),
      cache=True, nogil=True)
def _sum_score_tables(c, n_chunks, ptr, item, representative, table_ptr, rows, log_prior, nodes, mean, sd):
    """For chunk c of the forms: the posterior mean and SD of theta given each summed score 0..k of the form.

    Form f is the item set of person ``representative[f]``; its k + 1 results
    go to ``mean[table_ptr[f]:table_ptr[f + 1]]``. P(score | node) comes from
    the Lord-Wingersky (1984) recursion over the form's items. ``rows`` are
    here the probabilities P(y | node), not their logs.
    """
    n_nodes = nodes.size
    n_forms = representative.size
    first, last = c * n_forms // n_chunks, (c + 1) * n_forms // n_chunks
    prior = np.exp(log_prior - log_prior.max())
    for f in range(first, last):
        person = representative[f]
        start, stop = ptr[person], ptr[person + 1]
        n = stop - start
        dist = np.zeros((n + 1, n_nodes))
        right = np.empty(n_nodes)
        wrong = np.empty(n_nodes)
        for q in range(n_nodes):
            dist[0, q] = 1.0
        for m in range(n):
            j = item[start + m]
            for q in range(n_nodes):
                right[q] = rows[2 * j + 1, q]
                wrong[q] = rows[2 * j, q]
            # Scores 0..m so far; this item moves each up by one (right) or leaves it (wrong), from the top down.
            for q in range(n_nodes):
                dist[m + 1, q] = dist[m, q] * right[q]
            for s in range(m, 0, -1):
                for q in range(n_nodes):
                    dist[s, q] = dist[s, q] * wrong[q] + dist[s - 1, q] * right[q]
            for q in range(n_nodes):
                dist[0, q] *= wrong[q]
        out = table_ptr[f]
        for s in range(n + 1):
            total = 0.0
            first_moment = 0.0
            for q in range(n_nodes):
                w = prior[q] * dist[s, q]
                total += w
                first_moment += w * nodes[q]
            centre = first_moment / total
            second = 0.0
            for q in range(n_nodes):
                second += prior[q] * dist[s, q] * (nodes[q] - centre) ** 2
            mean[out + s] = centre
            sd[out + s] = np.sqrt(second / total)


@njit((int64, int64, _OFFSETS, _ITEMS, _OUTCOMES, _MATRIX, _VECTOR, _VECTOR, _MATRIX, _MATRIX),
      fastmath=True, cache=True, nogil=True)
def _plausible_values(c, n_chunks, ptr, item, correct, rows, log_prior, nodes, uniforms, draws):
    """Plausible values of chunk c of the persons: ``draws[i, m]`` is the node where person i's posterior CDF on the
    grid first exceeds ``uniforms[i, m]`` (rows of persons without answers are left as they are)."""
    n_nodes = nodes.size
    n_draws = uniforms.shape[1]
    first, last = c * (ptr.size - 1) // n_chunks, (c + 1) * (ptr.size - 1) // n_chunks
    post = np.empty(n_nodes)
    for i in range(first, last):
        start, stop = ptr[i], ptr[i + 1]
        if start == stop:
            continue
        # The person's posterior on the grid, as kernels.person_posterior computes it.
        for q in range(n_nodes):
            post[q] = log_prior[q]
        for k in range(start, stop):
            row = rows[2 * item[k] + correct[k]]
            for q in range(n_nodes):
                post[q] += row[q]
        top = post[0]
        for q in range(1, n_nodes):
            top = max(top, post[q])
        total = 0.0
        for q in range(n_nodes):
            total += np.exp(post[q] - top)
            post[q] = total  # the unnormalised CDF
        for m in range(n_draws):
            target = uniforms[i, m] * total
            q = 0
            while q < n_nodes - 1 and post[q] <= target:
                q += 1
            draws[i, m] = nodes[q]
