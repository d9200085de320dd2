"""The rules that keep an item bank's scale, without I/O: drift of operational items, promotion gates, impact.

An item bank holds its scale through its operational items, whose
parameters stay fixed between deliberate recalibrations (the operating
model of continuous calibration programs; Kolen & Brennan 2014, ch. 6 on
item parameter drift; Wells, Subkoviak & Serlin 2002, Applied Psychological
Measurement 26, 77-87, on its effect on scores).

- ``watch_drift``: each operational item's free estimate of this run,
  linked onto the bank's scale by Stocking-Lord over the items that do not
  drift, and its estimates of the runs before: its recent estimate (the
  last two runs) against its baseline (its bank value and older runs). The
  shift of b and of log a, each over its standard error, as a robust z
  across the bank (median and scaled MAD), with a minimum effect size
  (``linking.MIN_B_DRIFT``, ``MIN_A_DRIFT_RATIO``): an item is flagged when
  a z passes the threshold and its shift matters.
  An item flagged in ``runs_to_suspend`` of its last ``runs_to_suspend + 1``
  runs leaves the fixed set (``suspend``): one week's noise is a flag, a
  trend is a suspension.
- ``promotion_gates``: a pretest item becomes operational when its answers,
  the standard error of its b, its RMSD and its convergence pass, and its
  estimates of its last runs agree with each other.
- ``score_impact``: how many students a recalibration would move by more
  than their standard error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import linking
from .model import ItemParameters

OPERATIONAL, PRETEST, SUSPENDED = "operational", "pretest", "suspended"
#: A discrimination flag asks for a robust z this much past the threshold: an estimated a has heavier tails
#: than its standard error says (skewed at high a, and the bank's a keeps its calibration's error), and on
#: simulated weeks with no drift in a, log-a z past 3 were the drift watch's false flags.
A_DRIFT_MARGIN = 1.0
STATUSES = (OPERATIONAL, PRETEST, SUSPENDED)


@dataclass(frozen=True)
class Drift:
    """One run's drift watch over the operational items it could estimate freely (arrays in their order)."""

    #: The free estimates' link onto the bank's scale, over the items that did not drift this run.
    constants: linking.LinkingConstants
    #: The free estimates placed on the bank's scale, and their standard errors there.
    placed: ItemParameters
    placed_a_se: np.ndarray
    placed_b_se: np.ndarray
    #: Robust z of each item's recent shift against its baseline (see ``watch_drift``).
    z_b: np.ndarray
    z_a: np.ndarray
    flagged: np.ndarray
    #: Position -> why, for the flagged items.
    reasons: dict[int, str] = field(default_factory=dict)
    #: Why the items, taken together, disagree with the bank (empty when they do not).
    disagreement: str = ""


@dataclass(frozen=True)
class EarlierEstimates:
    """An operational item's free estimates of earlier runs, on the bank's scale, newest first."""

    a: tuple[float, ...] = ()
    b: tuple[float, ...] = ()
    a_se: tuple[float, ...] = ()
    b_se: tuple[float, ...] = ()
    #: Whether that run flagged the item: a flagged run's estimate never joins the item's baseline.
    flagged: tuple[bool, ...] = ()

    def split(self, recent: int) -> tuple["EarlierEstimates", "EarlierEstimates"]:
        """The ``recent`` latest estimates, and the older ones that were not flagged (the baseline's)."""
        flagged = self.flagged + (False,) * (len(self.b) - len(self.flagged))
        columns = (self.a, self.b, self.a_se, self.b_se, flagged)

        def pick(keys) -> EarlierEstimates:
            return EarlierEstimates(*(tuple(column[k] for k in keys) for column in columns))

        return pick(range(min(recent, len(self.b)))), pick([k for k in range(recent, len(self.b)) if not flagged[k]])


def watch_drift(bank: ItemParameters, free: ItemParameters, errors: linking.AnchorErrors,
                threshold: float = linking.DEFAULT_DRIFT_THRESHOLD,
                earlier: list[EarlierEstimates] | None = None, window: int = 2) -> Drift:
    """Compare the operational items' free estimates (``free``, on the run's own scale) with their ``bank`` values.

    ``errors`` holds the free estimates' standard errors (``new_*``, on the
    run's scale) and the bank values' (``reference_*``). The free estimates
    are linked onto the bank's scale by Stocking-Lord over the items that do
    not drift this run (``linking.screen_drift``). Then each item's recent
    estimate (the mean of this run's and its ``window - 1`` latest earlier
    ones, ``earlier``) is compared with its baseline (the mean of its bank
    value and its estimates before the window that were not flagged, so that
    a drift does not leak into its own baseline): the difference over its
    standard error, as a robust z across the items. One run's noise
    averages out over the window, and the baseline's error shrinks as runs
    accumulate, while the bank value alone carries its calibration's error
    for good. An item is flagged when its b's z passes ``threshold`` and the
    shift is at least ``linking.MIN_B_DRIFT``, or its log a's z passes
    ``threshold + A_DRIFT_MARGIN`` and a changed by a factor of at least
    ``MIN_A_DRIFT_RATIO``. Fewer than four items: nothing is flagged.
    """
    n = len(free)
    if n < 4 or threshold <= 0:
        constants = linking.link(bank, free) if n >= linking.MIN_ANCHORS else linking.IDENTITY
        zeros = np.zeros(n)
        return Drift(constants, free.on_scale(constants.slope, constants.intercept), errors.new_a / constants.slope,
                     errors.new_b * constants.slope, zeros, zeros, np.zeros(n, bool))
    screen = linking.screen_drift(bank, free, linking.STOCKING_LORD, threshold, errors, standard_errors=False)
    constants = screen.constants
    placed = free.on_scale(constants.slope, constants.intercept)
    a_se, b_se = errors.new_a / constants.slope, errors.new_b * constants.slope
    earlier = earlier or [EarlierEstimates()] * n
    bank_a_se = np.nan_to_num(errors.reference_a, nan=0.0) if errors.reference_a is not None else np.zeros(n)
    bank_b_se = np.nan_to_num(errors.reference_b, nan=0.0) if errors.reference_b is not None else np.zeros(n)
    d_b, s_b, d_a, s_a = (np.zeros(n) for _ in range(4))
    for j in range(n):
        recent, older = earlier[j].split(window - 1)
        d_b[j], s_b[j] = _shift([placed.b[j], *recent.b], [b_se[j], *recent.b_se],
                                [bank.b[j], *older.b], [bank_b_se[j], *older.b_se])
        d_a[j], s_a[j] = _shift([np.log(placed.a[j]), *np.log(recent.a)],
                                [a_se[j] / placed.a[j], *(np.array(recent.a_se) / np.array(recent.a))],
                                [np.log(bank.a[j]), *np.log(older.a)],
                                [bank_a_se[j] / bank.a[j], *(np.array(older.a_se) / np.array(older.a))])
    # A spread below one standard error is luck, not precision.
    everyone = np.ones(n, bool)
    z_b = linking.robust_z(d_b / s_b, everyone, 1.0)
    z_a = linking.robust_z(d_a / s_a, everyone, 1.0)
    z_b = np.where(np.abs(d_b) >= linking.MIN_B_DRIFT, z_b, 0.0)
    z_a = np.where(np.abs(d_a) >= np.log(linking.MIN_A_DRIFT_RATIO), z_a, 0.0)
    flagged = (np.abs(z_b) > threshold) | (np.abs(z_a) > threshold + A_DRIFT_MARGIN)
    reasons = {}
    for j in np.flatnonzero(flagged):
        which = "difficulty" if abs(z_b[j]) >= abs(z_a[j]) else "discrimination"
        runs = 1 + len(earlier[j].split(window - 1)[0].b)
        reasons[int(j)] = (f"{which} drifted: b {bank.b[j]:.3f} -> {bank.b[j] + d_b[j]:.3f}, a {bank.a[j]:.3f} -> "
                           f"{bank.a[j] * np.exp(d_a[j]):.3f} on the bank's scale over the last {runs} run(s) "
                           f"(robust z {z_b[j]:+.1f} on b, {z_a[j]:+.1f} on log a; threshold {threshold:g})")
    return Drift(constants, placed, a_se, b_se, z_b, z_a, flagged, reasons, screen.disagreement)


def _shift(recent, recent_se, baseline, baseline_se) -> tuple[float, float]:
    """Mean of ``recent`` minus mean of ``baseline``, and its standard error (independent estimates)."""
    recent, baseline = np.asarray(recent, float), np.asarray(baseline, float)
    se = np.sqrt((np.square(np.nan_to_num(recent_se, nan=0.0)).sum() / recent.size**2)
                 + (np.square(np.nan_to_num(baseline_se, nan=0.0)).sum() / baseline.size**2))
    return float(recent.mean() - baseline.mean()), float(max(se, 1e-6))


def suspend(flagged_now: np.ndarray, flagged_before: np.ndarray, runs_to_suspend: int) -> np.ndarray:
    """Which items leave the fixed set: flagged now and in ``runs_to_suspend - 1`` of the runs before.

    ``flagged_before`` holds, per item, how many of its last
    ``runs_to_suspend`` runs flagged it: a drift whose first run fell just
    under the threshold is still caught on the next two flags, while a
    single run's noise never suspends an item.
    """
    return flagged_now & (flagged_before + 1 >= runs_to_suspend)


@dataclass(frozen=True)
class PromotionGates:
    """What a pretest item must show to become operational (``MIRT_PROMOTION_*``)."""

    min_answers: int = 200
    max_b_se: float = 0.25
    max_rmsd: float = 0.1
    #: Runs in a row in which the item was estimated, this one included, whose b estimates agree.
    runs: int = 2
    #: z beyond which two consecutive estimates of b disagree (with a shift of at least MIN_B_DRIFT).
    drift_threshold: float = linking.DEFAULT_DRIFT_THRESHOLD

    def as_dict(self) -> dict:
        return {"min_answers": self.min_answers, "max_b_se": self.max_b_se, "max_rmsd": self.max_rmsd,
                "runs": self.runs, "drift_threshold": self.drift_threshold}


@dataclass(frozen=True)
class PretestItem:
    """A pretest item's estimate in this run (on the bank's scale) and in its earlier runs, newest first."""

    b: float
    b_se: float
    n_answers: int
    rmsd: float
    #: (b, b_se) of the item's earlier runs, newest first.
    earlier: tuple[tuple[float, float], ...] = ()


def promotion_gates(item: PretestItem, gates: PromotionGates) -> list[str]:
    """The gates ``item`` fails, each in words (empty: it is promoted)."""
    failed = []
    if item.n_answers < gates.min_answers:
        failed.append(f"{item.n_answers} answers (gate {gates.min_answers})")
    if not np.isfinite(item.b_se) or item.b_se > gates.max_b_se:
        failed.append(f"SE of b {item.b_se:.3f} (gate {gates.max_b_se:g})")
    if np.isfinite(item.rmsd) and item.rmsd > gates.max_rmsd:
        failed.append(f"RMSD {item.rmsd:.3f} (gate {gates.max_rmsd:g})")
    history = ((item.b, item.b_se),) + item.earlier
    if len(history) < gates.runs:
        failed.append(f"estimated in {len(history)} run(s) in a row (gate {gates.runs})")
    else:
        for (b_now, se_now), (b_then, se_then) in zip(history[:gates.runs - 1], history[1:gates.runs]):
            shift = b_now - b_then
            z = shift / max(np.hypot(se_now, se_then), 1e-12)
            if abs(shift) >= linking.MIN_B_DRIFT and abs(z) > gates.drift_threshold:
                failed.append(f"b moved {b_then:.3f} -> {b_now:.3f} between runs (z {z:+.1f})")
                break
    return failed


@dataclass(frozen=True)
class Impact:
    """How a recalibration would move the students' scores."""

    n_scored: int
    n_moved: int
    mean_shift: float
    max_shift: float

    def as_dict(self) -> dict:
        return {"students_scored": self.n_scored, "moved_more_than_se": self.n_moved,
                "mean_shift": self.mean_shift, "max_abs_shift": self.max_shift}


def score_impact(theta_bank: np.ndarray, se_bank: np.ndarray, theta_new: np.ndarray) -> Impact:
    """Students scored both ways; how many move by more than their standard error under the bank."""
    both = np.isfinite(theta_bank) & np.isfinite(theta_new)
    shift = theta_new[both] - theta_bank[both]
    return Impact(int(both.sum()), int((np.abs(shift) > se_bank[both]).sum()),
                  float(shift.mean()) if shift.size else 0.0, float(np.abs(shift).max(initial=0.0)))
