"""What the review page derives from a run's stored results: numbers only, no database, no HTML.

- Item and test information (Lord 1980, eq. 5-19 for the 3PL), the
  conditional standard error of measurement 1 / sqrt(I(theta)), and two
  reliabilities: the empirical one of the students' EAP scores,
  var(EAP) / (var(EAP) + mean(SE^2)) (R mirt's ``empirical_rxx``), and the
  marginal one of the information function over the ability distribution,
  sigma^2 / (sigma^2 + E[1 / I(theta)]) (Green, Bock, Humphreys, Linn &
  Reckase 1984; R mirt's ``marginal_rxx``).
- The anchors' drift statistics as the drift screen (``irt.linking``) uses
  them: each anchor's shift on the old scale in b and in log a, divided by
  its standard error, then a robust z (median and scaled MAD over the kept
  anchors).
- Item movement between two runs on the same scale: the change in b and in
  log a against the standard error of the difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..irt.linking import robust_z
from ..irt.model import ItemParameters

#: Floors of the robust spread, as the drift screen keeps them: one standard error for
#: standardized shifts (a spread below the sampling error is luck), 0.05 logits for raw ones.
STANDARDIZED_SPREAD_FLOOR = 1.0
RAW_SPREAD_FLOOR = 0.05


def item_information(params: ItemParameters, theta: np.ndarray) -> np.ndarray:
    """Fisher information of each item at each theta, shape (len(theta), n_items).

    I_j(theta) = a^2 (P - c)^2 (1 - P) / ((1 - c)^2 P), which is a^2 P (1 - P)
    when c = 0. Items with NaN parameters give NaN.
    """
    p = params.probability(np.asarray(theta, dtype=float))
    a, c = params.a[None, :], params.c[None, :]
    return a**2 * (p - c) ** 2 * (1.0 - p) / ((1.0 - c) ** 2 * p)


def test_information(params: ItemParameters, theta: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Sum of the item informations at each theta (items with NaN parameters left out).

    Taken ``chunk`` items at a time, so that a bank of 20,000 items on a fine
    grid does not hold a grid-by-bank matrix at once.
    """
    theta = np.asarray(theta, dtype=float)
    usable = np.flatnonzero(np.isfinite(params.a) & np.isfinite(params.b) & np.isfinite(params.c))
    total = np.zeros(theta.size)
    for start in range(0, usable.size, chunk):
        total += item_information(params.take(usable[start:start + chunk]), theta).sum(axis=1)
    return total


def conditional_sem(information: np.ndarray) -> np.ndarray:
    """The standard error of measurement at each theta, 1 / sqrt(I(theta)) (infinite where I = 0)."""
    with np.errstate(divide="ignore"):
        return 1.0 / np.sqrt(np.asarray(information, dtype=float))


def empirical_reliability(theta: np.ndarray, se: np.ndarray) -> float:
    """var(theta-hat) / (var(theta-hat) + mean(SE^2)) over the scored students (NaN with fewer than two)."""
    keep = np.isfinite(theta) & np.isfinite(se)
    if keep.sum() < 2:
        return float("nan")
    spread = float(np.var(theta[keep]))
    return spread / (spread + float(np.mean(se[keep] ** 2)))


def marginal_reliability(nodes: np.ndarray, information: np.ndarray, mean: float, sd: float) -> float:
    """sigma^2 / (sigma^2 + E[1 / I(theta)]) with theta ~ N(mean, sd^2), integrated on ``nodes``."""
    density = np.exp(-0.5 * ((np.asarray(nodes) - mean) / sd) ** 2)
    weights = density / density.sum()
    with np.errstate(divide="ignore"):
        error_variance = float(np.sum(weights / np.asarray(information, dtype=float)))
    return sd**2 / (sd**2 + error_variance)


@dataclass(frozen=True)
class AnchorDrift:
    """Per anchor, on the old scale: shifts of the linked estimate from the reference, their SEs and robust z."""

    b_shift: np.ndarray  # linked b - reference b
    b_shift_se: np.ndarray  # NaN where the new estimate has no standard error
    b_z: np.ndarray
    log_a_shift: np.ndarray  # log linked a - log reference a
    log_a_shift_se: np.ndarray
    log_a_z: np.ndarray
    standardized: bool  # whether the z's are of shifts divided by their SEs (else of raw shifts)


def anchor_drift(reference: ItemParameters, linked: ItemParameters, kept: np.ndarray,
                 linked_b_se: np.ndarray, linked_a_se: np.ndarray,
                 reference_b_se: np.ndarray | None = None, reference_a_se: np.ndarray | None = None) -> AnchorDrift:
    """The drift statistics of every anchor, centred and scaled on the ``kept`` ones.

    Standard errors are on the linked (old) scale; reference ones count where
    known (NaN counts as 0). With every new SE known, each shift is divided
    by its SE before the robust z, as the drift screen does; otherwise the
    raw shifts are used.
    """
    kept = np.asarray(kept, dtype=bool)
    b_shift = linked.b - reference.b
    log_a_shift = np.log(linked.a) - np.log(reference.a)
    zeros = np.zeros(len(reference))
    b_se = np.hypot(linked_b_se, zeros if reference_b_se is None else np.nan_to_num(reference_b_se))
    log_a_se = np.hypot(linked_a_se / linked.a,
                        zeros if reference_a_se is None else np.nan_to_num(reference_a_se / reference.a))
    standardized = bool(np.all(np.isfinite(b_se) & (b_se > 0)) and np.all(np.isfinite(log_a_se) & (log_a_se > 0)))
    if not kept.any():
        nan = np.full(len(reference), np.nan)
        return AnchorDrift(b_shift, b_se, nan, log_a_shift, log_a_se, nan, standardized)
    if standardized:
        b_z = robust_z(b_shift / b_se, kept, STANDARDIZED_SPREAD_FLOOR)
        with np.errstate(invalid="ignore"):  # a 1PL's common slope: no spread in log a at all
            log_a_z = robust_z(log_a_shift / log_a_se, kept, STANDARDIZED_SPREAD_FLOOR)
    else:
        b_z = robust_z(b_shift, kept, RAW_SPREAD_FLOOR)
        log_a_z = robust_z(log_a_shift, kept, RAW_SPREAD_FLOOR)
    return AnchorDrift(b_shift, b_se, b_z, log_a_shift, log_a_se, log_a_z, standardized)


def expected_score(params: ItemParameters, theta: np.ndarray) -> np.ndarray:
    """The test characteristic curve: expected number correct on these items at each theta."""
    return params.probability(np.asarray(theta, dtype=float)).sum(axis=1)


@dataclass(frozen=True)
class Movement:
    """Per item present in both runs: change in b and in log a, each against the SE of the difference."""

    b_change: np.ndarray
    b_z: np.ndarray  # NaN where either run has no SE
    log_a_change: np.ndarray
    log_a_z: np.ndarray


def item_movement(now: ItemParameters, now_b_se: np.ndarray, now_a_se: np.ndarray,
                  before: ItemParameters, before_b_se: np.ndarray, before_a_se: np.ndarray) -> Movement:
    """How far each item moved between two runs on one scale, in logits and in standard errors.

    z = (b_now - b_before) / sqrt(se_now^2 + se_before^2), the two runs'
    errors taken as independent. Where their windows overlap they share
    answers, the errors correlate positively and the true SE of the
    difference is smaller: these z's are then conservative (a movement
    looks smaller than it is, never larger).
    """
    b_change = now.b - before.b
    log_a_change = np.log(now.a) - np.log(before.a)
    with np.errstate(divide="ignore", invalid="ignore"):
        b_z = b_change / np.hypot(now_b_se, before_b_se)
        log_a_z = log_a_change / np.hypot(now_a_se / now.a, before_a_se / before.a)
    return Movement(b_change, b_z, log_a_change, log_a_z)


def binned_median(x: np.ndarray, y: np.ndarray, edges: np.ndarray, at_least: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres, median of y in each bin of x) over the bins holding at least ``at_least`` values."""
    which = np.digitize(x, edges) - 1
    centres, medians = [], []
    for k in range(edges.size - 1):
        inside = y[which == k]
        if inside.size >= at_least:
            centres.append(0.5 * (edges[k] + edges[k + 1]))
            medians.append(float(np.median(inside)))
    return np.array(centres), np.array(medians)
