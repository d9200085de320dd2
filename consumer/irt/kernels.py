"""Compiled inner loops over the sparse response list.

Every pass of the EM algorithm and of EAP scoring walks the responses once,
person by person: it adds up each person's log-likelihood on the quadrature
grid, turns it into a posterior, and (for EM) adds that posterior to the
expected counts of the items the person answered. Fusing those steps in one
compiled loop keeps the work proportional to the number of responses, reads
the data once per pass, and runs on every core (persons are split into one
chunk per thread, each with its own accumulator, so no two threads write to
the same memory).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange


def _chunks() -> int:
    return max(1, numba.get_num_threads())


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _expected_counts(ptr, item, correct, log_curves, log_prior, n_chunks):
    n_persons = ptr.size - 1
    n_items, _, n_nodes = log_curves.shape
    counts = np.zeros((n_chunks, n_items, 2, n_nodes))
    loglik = np.zeros(n_chunks)
    for c in prange(n_chunks):
        lo = c * n_persons // n_chunks
        hi = (c + 1) * n_persons // n_chunks
        post = np.empty(n_nodes)
        acc = counts[c]
        for i in range(lo, hi):
            start, stop = ptr[i], ptr[i + 1]
            if start == stop:
                continue
            for q in range(n_nodes):
                post[q] = log_prior[q]
            for k in range(start, stop):
                row = log_curves[item[k], correct[k]]
                for q in range(n_nodes):
                    post[q] += row[q]
            top = post.max()
            total = 0.0
            for q in range(n_nodes):
                post[q] = np.exp(post[q] - top)
                total += post[q]
            loglik[c] += top + np.log(total)
            scale = 1.0 / total
            for q in range(n_nodes):
                post[q] *= scale
            for k in range(start, stop):
                target = acc[item[k], correct[k]]
                for q in range(n_nodes):
                    target[q] += post[q]
    return counts, loglik


@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _posterior_moments(ptr, item, correct, log_curves, log_prior, nodes, n_chunks):
    n_persons = ptr.size - 1
    n_nodes = nodes.size
    mean = np.full(n_persons, np.nan)
    sd = np.full(n_persons, np.nan)
    for c in prange(n_chunks):
        lo = c * n_persons // n_chunks
        hi = (c + 1) * n_persons // n_chunks
        post = np.empty(n_nodes)
        for i in range(lo, hi):
            start, stop = ptr[i], ptr[i + 1]
            if start == stop:
                continue
            for q in range(n_nodes):
                post[q] = log_prior[q]
            for k in range(start, stop):
                row = log_curves[item[k], correct[k]]
                for q in range(n_nodes):
                    post[q] += row[q]
            top = post.max()
            total = 0.0
            first = 0.0
            for q in range(n_nodes):
                p = np.exp(post[q] - top)
                total += p
                first += p * nodes[q]
            m = first / total
            second = 0.0
            for q in range(n_nodes):
                p = np.exp(post[q] - top)
                second += p * (nodes[q] - m) ** 2
            mean[i] = m
            sd[i] = np.sqrt(second / total)
    return mean, sd


def expected_counts(responses, log_curves: np.ndarray, log_prior: np.ndarray) -> tuple[np.ndarray, float]:
    """E-step: expected response counts per item, outcome and node, and the log-likelihood.

    ``log_curves[j, y, q]`` is log P(response y to item j | theta at node q).
    Returns ``counts[j, y, q]`` (posterior mass of the persons who gave
    response y to item j, at node q) and the marginal log-likelihood.
    """
    counts, loglik = _expected_counts(
        responses.person_ptr, responses.item, responses.correct,
        np.ascontiguousarray(log_curves), log_prior, _chunks(),
    )
    return counts.sum(axis=0), float(loglik.sum())


def posterior_moments(responses, log_curves: np.ndarray, log_prior: np.ndarray, nodes: np.ndarray):
    """Posterior mean and standard deviation of theta for every person (NaN without answers)."""
    return _posterior_moments(
        responses.person_ptr, responses.item, responses.correct,
        np.ascontiguousarray(log_curves), log_prior, nodes, _chunks(),
    )
