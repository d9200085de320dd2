"""The rules that keep an item bank's scale, without I/O: drift of operational items, promotion gates, impact.

An item bank holds its scale through its operational items, whose
parameters stay fixed between deliberate recalibrations (the operating
model of continuous calibration programs; Kolen & Brennan 2014, ch. 6 on
item parameter drift; Wells, Subkoviak & Serlin 2002, Applied Psychological
Measurement 26, 77-87, on its effect on scores).

- ``watch_drift``: each operational item's free estimate of this run,
  linked onto the bank's scale by Stocking-Lord over the items that do not
  drift, against its bank value. The shift of b and of log a, each over its
  standard error, as a robust z across the bank (median and scaled MAD),
  with a minimum effect size (``linking.MIN_B_DRIFT``, ``MIN_A_DRIFT_RATIO``):
  an item is flagged when a z passes the threshold and its shift matters.
  An item flagged in ``runs_to_suspend`` consecutive runs leaves the fixed
  set (``suspend``): one week's noise is a flag, a trend is a suspension.
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
STATUSES = (OPERATIONAL, PRETEST, SUSPENDED)


@dataclass(frozen=True)
class Drift:
    """One run's drift watch over the operational items it could estimate freely (arrays in their order)."""

    #: The free estimates' link onto the bank's scale, over the items that did not drift.
    constants: linking.LinkingConstants
    #: The free estimates placed on the bank's scale.
    placed: ItemParameters
    z_b: np.ndarray
    z_a: np.ndarray
    flagged: np.ndarray
    #: Position -> why, for the flagged items.
    reasons: dict[int, str] = field(default_factory=dict)
    #: Why the items, taken together, disagree with the bank (empty when they do not).
    disagreement: str = ""


def watch_drift(bank: ItemParameters, free: ItemParameters, errors: linking.AnchorErrors,
                threshold: float = linking.DEFAULT_DRIFT_THRESHOLD) -> Drift:
    """Compare free estimates (``free``, the run's own scale) of operational items with their ``bank`` values.

    ``errors`` holds the free estimates' standard errors (``new_*``, on the
    run's scale) and the bank values' (``reference_*``). At least four items
    are needed to tell drift from the link; with fewer nothing is flagged.
    """
    if len(free) < 4 or threshold <= 0:
        constants = linking.link(bank, free) if len(free) >= linking.MIN_ANCHORS else linking.IDENTITY
        zeros = np.zeros(len(free))
        return Drift(constants, free.on_scale(constants.slope, constants.intercept), zeros, zeros,
                     np.zeros(len(free), bool))
    screen = linking.screen_drift(bank, free, linking.STOCKING_LORD, threshold, errors, standard_errors=False)
    kept = np.flatnonzero(screen.kept)
    z_b, z_a = linking.drift_z(bank, free, screen.constants, errors, kept)
    flagged = ~screen.kept
    return Drift(screen.constants, free.on_scale(screen.constants.slope, screen.constants.intercept), z_b, z_a,
                 flagged, dict(screen.dropped), screen.disagreement)


def suspend(flagged_now: np.ndarray, flagged_before: np.ndarray, runs_to_suspend: int) -> np.ndarray:
    """Which items leave the fixed set: flagged now and in the ``runs_to_suspend - 1`` runs before.

    ``flagged_before`` holds, per item, how many runs in a row up to the
    last one flagged it.
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
