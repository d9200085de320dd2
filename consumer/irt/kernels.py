"""Compiled inner loops: the E-step over the sparse response list, the item M-steps, EAP moments.

The E-step of Bock-Aitkin EM (``EStep``) runs in two passes over the data,
both on every core:

1. person by person (persons split into one chunk per thread): add up the
   person's log-likelihood on the quadrature grid, turn it into a normalised
   posterior, store it in a persons x nodes buffer and add the person's
   marginal log-likelihood to the total;
2. row by row of the table of expected counts (one row per item and
   outcome), through an index of the responses grouped by item and outcome:
   add up the posteriors of the persons who gave that response, a block of
   persons at a time so that their posteriors are read from a core's cache.

Past what a core's cache holds (the table at a few thousand items, the
posteriors at a few thousand persons), each answer's row would be a cache
miss waited for alone: pass 1 asks for a person's rows before summing them,
and pass 2 goes over the rows once per block of persons (measured in
``_person_posteriors`` and ``_sum_posteriors_by_row``).

Against a single person-major pass that adds each posterior into
per-thread copies of the whole counts table (the first version of this
module), the second pass writes each row of counts once, from registers,
with no per-thread copies to sum afterwards, and the first pass reads a log
curve table half the size. On 20 million responses to 20,000 items the E-step
went from 1.55 s to 0.7 s.

Precision: by default the log-curve table and the posterior buffer are
float32 (the table is what every response reads, and at 20,000 items it
stays in cache only in float32); every sum (a person's log-posterior, the
counts, the log-likelihood) is accumulated in float64. The counts agree with
an all-float64 E-step to about 3e-8 relative, which moves the EM fixed point
by about 1e-7, far below the default tolerance (``estimate_items`` switches
to float64 for tolerances below 1e-6). The table's rounding would shift the
log-likelihood by up to ~1e-10 relative (1e-4 on 3 million responses),
enough to blur the comparisons of SQUAREM and the check that EM never lowers
it; ``EStep.run`` therefore adds back its first-order effect,
sum(counts * (exact - rounded log curves)), which leaves the log-likelihood
within ~1e-15 relative of the float64 one.

Rows of the tables are padded to a multiple of 16 nodes (one 64-byte cache
line of float32) and start on cache-line boundaries; padded nodes carry a
prior weight of zero and drop out.

Every core: the work is cut into one chunk per thread (``numba.get_num_threads``:
``NUMBA_NUM_THREADS``, by default the cores), and each chunk is one call of
a compiled function that releases the GIL, run on a thread of ``chunks.in_chunks``.
Not numba's ``parallel=True`` (``prange``): the chunks are the same, but its
parallel passes made compiling (once, on the first run after an install)
two to three times slower: a second more for even the smallest kernel, 17 s
more for the largest (``information_kernels.first_pass``, 35 s).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import boolean, float32, float64, int32, int64, njit, prange, uint8

from .chunks import in_chunks

# The argument types of the compiled functions that Python calls, as their callers pass them. A function
# given its types is compiled when this module is imported (numba's eager compilation), or loaded from
# numba's cache (``cache=True``) on every import after the first; called with other types, it refuses.
_OFFSETS = int64[::1]  # person_ptr, row_ptr, bounds: where each person's (row's, chunk's) responses start
_ITEMS = int32[::1]  # the item of each response
_OUTCOMES = uint8[::1]  # 1: the response is correct
_VECTOR = float64[::1]
_MATRIX = float64[:, ::1]
_MATRIX32 = float32[:, ::1]

#: float32 values per 64-byte cache line: rows of the node tables are padded to a multiple of this.
_LANE = 16
#: Log prior weight of a padding node: its posterior is exp(-1e30) = 0.
_NO_NODE = -1e30
#: A value no sum of the table's log-probabilities takes (all are <= 0 or padding 0, and finite).
_NEVER = 1e300
#: A log-curve table up to this size stays in a core's cache (pass 1 then reads its rows as they come).
_CACHED_TABLE_BYTES = 1 << 20
#: Persons' posteriors summed at once by pass 2: 512 KB of them, within a core's cache beside the counts.
_POSTERIOR_BLOCK_BYTES = 1 << 19


def _chunks() -> int:
    return max(1, numba.get_num_threads())


def _aligned_empty(shape: tuple[int, ...], dtype, align: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    offset = (-raw.ctypes.data) % align
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


# --------------------------------------------------------------------------- E-step


def count_by_item(item, correct, n_items):
    """Responses and correct responses per item, as int64."""
    n = np.bincount(item, minlength=n_items).astype(np.int64, copy=False)
    r = np.bincount(item, weights=correct, minlength=n_items).astype(np.int64)
    return n, r


@njit((_OFFSETS, _ITEMS, _OUTCOMES, int64), cache=True, nogil=True)
def _group_by_row(ptr, item, correct, n_rows):
    """Counting sort of the responses by row ``2 * item + correct``.

    Returns ``row_ptr`` (``row_ptr[g]:row_ptr[g + 1]`` are row g's responses)
    and the person of each response in that order.
    """
    row_ptr = np.zeros(n_rows + 1, dtype=np.int64)
    for k in range(item.size):
        row_ptr[2 * item[k] + correct[k] + 1] += 1
    for g in range(n_rows):
        row_ptr[g + 1] += row_ptr[g]
    fill = row_ptr[:-1].copy()
    person = np.empty(item.size, dtype=np.int32)
    for i in range(ptr.size - 1):
        for k in range(ptr[i], ptr[i + 1]):
            g = 2 * item[k] + correct[k]
            person[fill[g]] = i
            fill[g] += 1
    return row_ptr, person


@njit([(int64, int64, _VECTOR, _VECTOR, _VECTOR, table, _MATRIX32) for table in (_MATRIX32, _MATRIX)],
      cache=True, nogil=True)
def _fill_2pl_table(c, n_chunks, a, d, nodes, table, residual):
    """``table[2j + y, q]`` = log P(y | node q) under the 2PL (a_j, d_j), padding nodes 0, for chunk c's items.

    ``residual`` receives what rounding to the table's dtype lost (the exact
    value minus the stored one). No fastmath here: it could fold that
    difference to zero.
    """
    n_nodes = nodes.size
    width = table.shape[1]
    first, last = c * a.size // n_chunks, (c + 1) * a.size // n_chunks
    for j in range(first, last):
        for q in range(n_nodes):
            z = a[j] * nodes[q] + d[j]
            # log(1 + exp(-|z|)) once serves both log sigmoid(z) and log sigmoid(-z).
            soft = np.log1p(np.exp(-abs(z)))
            right = min(z, 0.0) - soft
            wrong = min(-z, 0.0) - soft
            table[2 * j + 1, q] = right
            table[2 * j, q] = wrong
            residual[2 * j + 1, q] = right - table[2 * j + 1, q]
            residual[2 * j, q] = wrong - table[2 * j, q]
        for q in range(n_nodes, width):
            for y in range(2):
                table[2 * j + y, q] = 0.0
                residual[2 * j + y, q] = 0.0


@njit([(int64, int64, _OFFSETS, _ITEMS, _OUTCOMES, table, _VECTOR, table, boolean) for table in (_MATRIX32, _MATRIX)],
      fastmath=True, cache=True, nogil=True)
def _person_posteriors(c, n_chunks, ptr, item, correct, table, log_prior, posterior, ask_first):
    """Pass 1 for chunk c of the persons: each one's normalised posterior on the grid; their log-likelihood.

    With ``ask_first``, a person's rows of the table are each asked for (a
    value in each of their cache lines) before any is summed, so that their
    cache misses overlap: past a few thousand items the table no longer fits
    in a core's cache (a quarter off this pass at 20,000 items); a table that
    fits gains nothing from it.
    """
    width = table.shape[1]
    first, last = c * (ptr.size - 1) // n_chunks, (c + 1) * (ptr.size - 1) // n_chunks
    loglik = 0.0
    touch = 0.0
    post = np.empty(width)
    for i in range(first, last):
        start, stop = ptr[i], ptr[i + 1]
        if start == stop:
            continue  # never read by pass 2
        if ask_first:
            for k in range(start, stop):
                row = table[2 * item[k] + correct[k]]
                for q in range(0, width, _LANE):  # a value in each cache line (float32)
                    touch += row[q]
        for q in range(width):
            post[q] = log_prior[q]
        for k in range(start, stop):
            row = table[2 * item[k] + correct[k]]
            for q in range(width):
                post[q] += row[q]
        top = post[0]
        for q in range(1, width):
            top = max(top, post[q])
        total = 0.0
        for q in range(width):
            post[q] = np.exp(post[q] - top)
            total += post[q]
        loglik += top + np.log(total)
        scale = 1.0 / total
        out = posterior[i]
        for q in range(width):
            out[q] = post[q] * scale
    # (What was touched enters the result only in a case that never happens, so that the loads stay.)
    return loglik if touch != _NEVER else loglik + touch


@njit([(int64, int64, _OFFSETS, _OFFSETS, _ITEMS, posterior, _MATRIX32, _MATRIX, int64)
       for posterior in (_MATRIX32, _MATRIX)], fastmath=True, cache=True, nogil=True)
def _sum_posteriors_by_row(c, n_chunks, bounds, row_ptr, row_person, posterior, residual, counts, block):
    """Pass 2 for the rows bounds[c]:bounds[c + 1]: ``counts[g]`` = sum of the posteriors of the persons whose
    response is row g.

    The persons go ``block`` at a time (their posteriors then stay in the
    core's cache while every row adds theirs up; row by row over all the
    persons, each answer's posterior was a miss once the buffer outgrew the
    cache: 35-40% of this pass at 400,000 persons). Each row's persons come
    in increasing order, so a cursor per row keeps its place; the sums are
    made in the same order as row by row, to the same bits.

    Returns sum over those g and q of counts[g, q] * residual[g, q]: to first
    order, what the rounding of the log-curve table took off the
    log-likelihood.
    """
    width = counts.shape[1]
    first, last = bounds[c], bounds[c + 1]
    cursor = row_ptr[first:last].copy()
    for g in range(first, last):
        out = counts[g]
        for q in range(width):
            out[q] = 0.0
    for edge in range(block, posterior.shape[0] + block, block):
        for g in range(first, last):
            k = cursor[g - first]
            stop = row_ptr[g + 1]
            if k == stop or row_person[k] >= edge:
                continue
            out = counts[g]
            while k < stop and row_person[k] < edge:
                row = posterior[row_person[k]]
                for q in range(width):
                    out[q] += row[q]
                k += 1
            cursor[g - first] = k
    correction = 0.0
    for g in range(first, last):
        out = counts[g]
        lost = residual[g]
        for q in range(width):
            correction += out[q] * lost[q]
    return correction


class EStep:
    """The E-step of Bock-Aitkin EM, set up once for repeated passes over one response list.

    Holds the responses grouped by item and outcome, the log-curve table, the
    posterior buffer and the counts (about 4 bytes per response plus
    ``4 * padded nodes`` bytes per person in float32). ``dtype`` is that of
    the log-curve table and the posterior buffer; sums are float64 either
    way. Each ``run`` overwrites the counts it returned before.
    """

    def __init__(self, responses, log_prior: np.ndarray, dtype=np.float32) -> None:
        log_prior = np.asarray(log_prior, dtype=np.float64)
        self.n_items = int(responses.n_items)
        self.n_nodes = int(log_prior.size)
        self.dtype = np.dtype(dtype)
        width = -(-self.n_nodes // _LANE) * _LANE
        self._ptr = responses.person_ptr
        self._item = responses.item
        self._correct = responses.correct
        self._row_ptr, self._row_person = _group_by_row(
            responses.person_ptr, responses.item, responses.correct, 2 * self.n_items)
        self._log_prior = np.full(width, _NO_NODE)
        self._log_prior[:self.n_nodes] = log_prior
        self._table = _aligned_empty((2 * self.n_items, width), self.dtype)
        self._residual = _aligned_empty((2 * self.n_items, width), np.float32)
        self._posterior = _aligned_empty((responses.n_persons, width), self.dtype)
        self._counts = _aligned_empty((2 * self.n_items, width), np.float64)

    def set_log_prior(self, log_prior: np.ndarray) -> None:
        """Use another population distribution on the same nodes (fixed-parameter calibration updates it)."""
        self._log_prior[:self.n_nodes] = np.asarray(log_prior, dtype=np.float64)

    def population_posterior(self) -> np.ndarray:
        """Sum over persons with answers of their posteriors from the last ``run`` (the updated weights)."""
        answered = np.diff(self._ptr) > 0
        return self._posterior[answered, :self.n_nodes].sum(axis=0, dtype=np.float64)

    def set_2pl(self, a: np.ndarray, d: np.ndarray, nodes: np.ndarray) -> None:
        """Use the log curves of 2PL items with slopes ``a`` and intercepts ``d``."""
        in_chunks(_fill_2pl_table, _chunks(), np.ascontiguousarray(a, dtype=np.float64),
                  np.ascontiguousarray(d, dtype=np.float64), np.ascontiguousarray(nodes, dtype=np.float64),
                  self._table, self._residual)

    def set_log_curves(self, log_curves: np.ndarray) -> None:
        """Use ``log_curves[j, y, q]`` = log P(response y to item j | node q)."""
        exact = np.asarray(log_curves, dtype=np.float64).reshape(2 * self.n_items, self.n_nodes)
        self._table[:, :self.n_nodes] = exact
        self._table[:, self.n_nodes:] = 0.0
        self._residual[:, :self.n_nodes] = exact - self._table[:, :self.n_nodes]
        self._residual[:, self.n_nodes:] = 0.0

    def run(self) -> tuple[np.ndarray, float]:
        """Expected counts ``[2j + y, q]`` (padded columns hold 0) and the marginal log-likelihood.

        The log-likelihood adds to the sum of the persons' log-likelihoods
        (from the rounded table) the first-order effect of the rounding,
        sum over rows and nodes of counts * (exact - rounded log curve), so
        that it is as accurate as a float64 E-step (the error left is of
        second order, below 1e-12 relative).
        """
        n_chunks = _chunks()
        loglik = in_chunks(_person_posteriors, n_chunks, self._ptr, self._item, self._correct, self._table,
                           self._log_prior, self._posterior, self._table.nbytes > _CACHED_TABLE_BYTES)
        # Rows to the chunks by their responses, so that each chunk has about as many to add up.
        n_rows = self._row_ptr.size - 1
        bounds = np.minimum(np.searchsorted(self._row_ptr, self._row_ptr[-1] * np.arange(n_chunks + 1) // n_chunks),
                            n_rows)
        bounds[-1] = n_rows
        block = max(1, _POSTERIOR_BLOCK_BYTES // (self._posterior.shape[1] * self._posterior.itemsize))
        correction = in_chunks(_sum_posteriors_by_row, n_chunks, bounds, self._row_ptr, self._row_person,
                               self._posterior, self._residual, self._counts, block)
        return self._counts, float(np.sum(loglik)) + float(np.sum(correction))


def expected_counts(responses, log_curves: np.ndarray, log_prior: np.ndarray, with_mass: bool = False):
    """E-step: expected response counts per item, outcome and node, and the log-likelihood.

    ``log_curves[j, y, q]`` is log P(response y to item j | theta at node q).
    Returns ``counts[j, y, q]`` (posterior mass of the persons who gave
    response y to item j, at node q) and the marginal log-likelihood; with
    ``with_mass``, also the posteriors of the persons with answers summed
    per node. Computed in float64 throughout, as one-off callers (standard
    errors, item fit) expect; for repeated passes over the same responses
    use ``EStep``, float32 by default.
    """
    estep = EStep(responses, log_prior, dtype=np.float64)
    estep.set_log_curves(log_curves)
    counts, loglik = estep.run()
    n_items, _, n_nodes = np.shape(log_curves)
    counts = np.ascontiguousarray(counts.reshape(n_items, 2, -1)[:, :, :n_nodes])
    return (counts, loglik, estep.population_posterior()) if with_mass else (counts, loglik)


# --------------------------------------------------------------------------- M-step


def newton_2pl(counts, nodes, a, d, max_steps, tolerance, max_step, a_low, a_high, d_bound,
               a_meanlog=0.0, a_sdlog=0.0, b_mean=0.0, b_sd=0.0):
    """M-step of the 2PL: each item's expected log-likelihood maximised in (a, d) by Newton-Raphson.

    ``counts[2j + y, q]`` are the expected counts of the E-step. Items are
    independent, so each runs its own Newton iterations (from ``a, d``)
    until its step is below ``tolerance``; a step longer than ``max_step``
    in either parameter is shortened to that length, and the estimates are
    kept in [a_low, a_high] and [-d_bound, d_bound].

    With ``b_sd > 0`` the log priors log a ~ N(a_meanlog, a_sdlog^2) (a
    lognormal a) and b = -d/a ~ N(b_mean, b_sd^2) are added (Bayes modal):
    their exact gradient, and as curvature the positive-definite part of
    their Hessian (1 / (a_sdlog a)^2 for a, grad b grad b' / b_sd^2 for b),
    which keeps every step uphill and leaves the fixed point where the
    gradient vanishes.
    """
    new_a, new_d = np.empty(a.size), np.empty(a.size)
    # One type per argument, so that the kernel is compiled once.
    limits = np.array([tolerance, max_step, a_low, a_high, d_bound, a_meanlog, a_sdlog, b_mean, b_sd], dtype=float)
    in_chunks(_newton_2pl, _chunks(), counts, np.ascontiguousarray(nodes, dtype=np.float64),
              np.ascontiguousarray(a, dtype=np.float64), np.ascontiguousarray(d, dtype=np.float64), int(max_steps),
              limits, new_a, new_d)
    return new_a, new_d


@njit((int64, int64, _MATRIX, _VECTOR, _VECTOR, _VECTOR, int64, _VECTOR, _VECTOR, _VECTOR),
      fastmath=True, cache=True, nogil=True)
def _newton_2pl(c, n_chunks, counts, nodes, a, d, max_steps, limits, new_a, new_d):
    """``newton_2pl`` for chunk c of the items, into ``new_a``, ``new_d``."""
    tolerance, max_step, a_low, a_high, d_bound = limits[0], limits[1], limits[2], limits[3], limits[4]
    a_meanlog, a_sdlog, b_mean, b_sd = limits[5], limits[6], limits[7], limits[8]
    n_nodes = nodes.size
    first, last = c * a.size // n_chunks, (c + 1) * a.size // n_chunks
    for j in range(first, last):
        wrong = counts[2 * j]
        right = counts[2 * j + 1]
        aj = a[j]
        dj = d[j]
        for _ in range(max_steps):
            g_a = 0.0
            g_d = 0.0
            h_aa = 0.0
            h_ad = 0.0
            h_dd = 0.0
            for q in range(n_nodes):
                t = nodes[q]
                n = wrong[q] + right[q]
                p = 1.0 / (1.0 + np.exp(-(aj * t + dj)))
                resid = right[q] - n * p
                w = n * p * (1.0 - p)
                g_a += resid * t
                g_d += resid
                h_aa += w * t * t
                h_ad += w * t
                h_dd += w
            if b_sd > 0.0:
                log_a = np.log(aj)
                b = -dj / aj
                pull = (b - b_mean) / (b_sd * b_sd)
                db_da = dj / (aj * aj)
                db_dd = -1.0 / aj
                g_a += -1.0 / aj - (log_a - a_meanlog) / (a_sdlog * a_sdlog * aj) - pull * db_da
                g_d += -pull * db_dd
                h_aa += 1.0 / (a_sdlog * a_sdlog * aj * aj) + db_da * db_da / (b_sd * b_sd)
                h_ad += db_da * db_dd / (b_sd * b_sd)
                h_dd += db_dd * db_dd / (b_sd * b_sd)
            det = max(h_aa * h_dd - h_ad * h_ad, 1e-12)
            step_a = (h_dd * g_a - h_ad * g_d) / det
            step_d = (h_aa * g_d - h_ad * g_a) / det
            longest = max(abs(step_a), abs(step_d))
            shrink = max_step / longest if longest > max_step else 1.0
            aj = min(max(aj + shrink * step_a, a_low), a_high)
            dj = min(max(dj + shrink * step_d, -d_bound), d_bound)
            if longest < tolerance:
                break
        new_a[j] = aj
        new_d[j] = dj


@njit((_MATRIX, _VECTOR, float64, _VECTOR, int64, float64, float64, float64, float64, float64),
      parallel=True, fastmath=True, cache=True, nogil=True)
def newton_1pl(counts, nodes, slope, d, max_steps, tolerance, max_step, a_low, a_high, d_bound):
    """M-step of the 1PL: Newton-Raphson in (common slope, d_1..d_J).

    The Hessian is an arrow matrix (the slope row and column, a diagonal for
    the intercepts); the slope step comes from its Schur complement. Step
    limiting, bounds and stopping as in ``newton_2pl``, for the whole vector.
    """
    n_items = d.size
    n_nodes = nodes.size
    d = d.copy()
    g_d = np.empty(n_items)
    h_ad = np.empty(n_items)
    h_dd = np.empty(n_items)
    for _ in range(max_steps):
        g_a = 0.0
        h_aa = 0.0
        for j in prange(n_items):
            wrong = counts[2 * j]
            right = counts[2 * j + 1]
            gd = 0.0
            had = 0.0
            hdd = 0.0
            for q in range(n_nodes):
                t = nodes[q]
                n = wrong[q] + right[q]
                p = 1.0 / (1.0 + np.exp(-(slope * t + d[j])))
                resid = right[q] - n * p
                w = n * p * (1.0 - p)
                g_a += resid * t
                gd += resid
                h_aa += w * t * t
                had += w * t
                hdd += w
            g_d[j] = gd
            h_ad[j] = had
            h_dd[j] = max(hdd, 1e-12)
        schur = h_aa
        numerator = g_a
        for j in range(n_items):
            schur -= h_ad[j] * h_ad[j] / h_dd[j]
            numerator -= h_ad[j] * g_d[j] / h_dd[j]
        step_a = numerator / max(schur, 1e-12)
        longest = abs(step_a)
        for j in range(n_items):
            g_d[j] = (g_d[j] - h_ad[j] * step_a) / h_dd[j]  # now the intercept steps
            longest = max(longest, abs(g_d[j]))
        shrink = max_step / longest if longest > max_step else 1.0
        slope = min(max(slope + shrink * step_a, a_low), a_high)
        for j in range(n_items):
            d[j] = min(max(d[j] + shrink * g_d[j], -d_bound), d_bound)
        if longest < tolerance:
            break
    return slope, d


# --------------------------------------------------------------------------- EAP


@njit(fastmath=True, cache=True, nogil=True)
def person_posterior(post, start, stop, item, correct, rows, log_prior):
    """Person ``start:stop``'s normalised posterior into ``post``; returns their log marginal likelihood.

    ``rows[2 * j + y]`` is log P(response y to item j) on the grid: the
    ``[j, y, q]`` log curves reshaped to two dimensions. (``_person_posteriors``,
    the E-step's hot pass, does the same on its padded float32 table.)
    """
    n_nodes = post.size
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
        post[q] = np.exp(post[q] - top)
        total += post[q]
    for q in range(n_nodes):
        post[q] /= total
    return top + np.log(total)


@njit((int64, int64, _OFFSETS, _ITEMS, _OUTCOMES, _MATRIX, _VECTOR, _VECTOR, _VECTOR, _VECTOR),
      fastmath=True, cache=True, nogil=True)
def _posterior_moments(c, n_chunks, ptr, item, correct, rows, log_prior, nodes, mean, sd):
    """Posterior mean and SD of theta for chunk c of the persons, into ``mean``, ``sd`` (left as they are for
    persons without answers)."""
    n_nodes = nodes.size
    first, last = c * (ptr.size - 1) // n_chunks, (c + 1) * (ptr.size - 1) // n_chunks
    post = np.empty(n_nodes)
    for i in range(first, last):
        start, stop = ptr[i], ptr[i + 1]
        if start == stop:
            continue
        person_posterior(post, start, stop, item, correct, rows, log_prior)
        m = 0.0
        for q in range(n_nodes):
            m += post[q] * nodes[q]
        second = 0.0
        for q in range(n_nodes):
            second += post[q] * (nodes[q] - m) ** 2
        mean[i] = m
        sd[i] = np.sqrt(second)


def as_rows(log_curves: np.ndarray) -> np.ndarray:
    """``[j, y, q]`` log curves as the ``[2 * j + y, q]`` rows the kernels read."""
    curves = np.ascontiguousarray(log_curves, dtype=np.float64)
    return curves.reshape(2 * curves.shape[0], curves.shape[2])


def posterior_moments(responses, log_curves: np.ndarray, log_prior: np.ndarray, nodes: np.ndarray):
    """Posterior mean and standard deviation of theta for every person (NaN without answers)."""
    mean, sd = np.full(responses.n_persons, np.nan), np.full(responses.n_persons, np.nan)
    in_chunks(_posterior_moments, _chunks(), responses.person_ptr, responses.item, responses.correct,
              as_rows(log_curves), np.ascontiguousarray(log_prior, dtype=np.float64),
              np.ascontiguousarray(nodes, dtype=np.float64), mean, sd)
    return mean, sd
