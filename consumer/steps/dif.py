"""The DIF screen by group, after the diagnostics: only when MIRT_DIF_GROUP_COLUMN names a column of attempt.

Each student's group is the label of the student's earliest loaded answer
that has one (``db.queries``); students without a label are left out. The
screen itself is ``irt.dif.screen``; this step names the groups, logs the
flagged items, keeps a summary (with the flagged items' group curves) in the
run's record, and returns the screen for ``write`` to store item by item in
``mirt_dif``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..db.queries import Observations
from ..irt import dif
from .context import RunContext, finite, reasons
from .fit import Diagnostics

#: Flagged items whose group curves are kept in the run's summary, per focal group (the worst first).
CURVES_KEPT = 20


@dataclass(frozen=True)
class DifResult:
    """The screen, and the question id of each item index (for the run's record)."""

    screen: dif.DifScreen
    question_ids: np.ndarray


def screen_dif(run: RunContext, observations: Observations, diagnostics: Diagnostics) -> DifResult | None:
    """Screen the estimated items for DIF between the groups of MIRT_DIF_GROUP_COLUMN (None when not set)."""
    settings = run.settings
    if not settings.dif_group_column or observations.groups is None:
        return None
    labels = sorted({g for g in observations.groups if g is not None})
    record = {"group_column": settings.dif_group_column}
    run.summary.fit["dif"] = record
    if len(labels) < 2:
        record["skipped"] = (f"{len(labels)} group label{'s' if len(labels) != 1 else ''} in column "
                             f"{settings.dif_group_column} among the students of the window: nothing to compare")
        run.warn("DIF screen skipped: %s", record["skipped"])
        return None
    index = {label: k for k, label in enumerate(labels)}
    group = np.fromiter((index.get(g, -1) if g is not None else -1 for g in observations.groups), np.int64,
                        count=len(observations.groups))
    reference = settings.dif_reference_group
    if reference and reference not in index:
        run.warn("MIRT_DIF_REFERENCE_GROUP=%s is not among this window's groups (%s): the largest group is the "
                 "reference instead", reference, ", ".join(labels))
        reference = ""
    items = diagnostics.items
    with run.step("dif") as span:
        try:
            screen = dif.screen(observations.responses, group, labels, items.params, items.model,
                                quadrature=run.quadrature, min_responses=settings.min_responses, reference=reference,
                                priors=diagnostics.calibration.priors, tolerance=settings.em_tolerance,
                                max_iterations=settings.em_max_iterations)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            # The screen informs the calibration, it does not make it: a numerical failure is told, not fatal.
            record["skipped"] = f"the screen failed ({type(exc).__name__}: {exc})"
            run.warn("DIF screen skipped: %s; the calibration goes on without it", record["skipped"])
            return None
        span.set_attributes({"groups": len(labels),
                             "flagged": int(sum(c.flagged.sum() for c in screen.comparisons))})
    record.update(summarise(screen, observations.question_ids))
    _log(run, screen, observations.question_ids)
    return DifResult(screen, observations.question_ids)


def summarise(screen: dif.DifScreen, question_ids: np.ndarray) -> dict:
    """The screen as the run's summary keeps it: the groups, and per focal group its flagged items."""
    return {"reference": screen.reference, "group_sizes": screen.group_sizes, "unassigned": screen.unassigned,
            "skipped": screen.skipped, "comparisons": [_comparison(c, question_ids) for c in screen.comparisons]}


def _comparison(c: dif.Comparison, question_ids: np.ndarray) -> dict:
    flagged = np.flatnonzero(c.flagged)
    flagged = flagged[np.argsort(-np.nan_to_num(c.effect.rmsd[flagged]))]
    return {
        "focal": c.focal, "n_focal": c.n_focal, "items_tested": int(c.tested.sum()),
        "anchors": len(c.anchors), "purified": c.purified,
        "focal_mean": finite(c.focal_mean), "focal_sd": finite(c.focal_sd),
        "ets": {k: int((c.mh.ets == k).sum()) for k in ("A", "B", "C")},
        "flagged": [{"question_id": int(question_ids[j]), "ets": str(c.mh.ets[j]),
                     "mh_delta": finite(c.mh.delta[j]), "wald_chi2": finite(c.wald_chi2[j]),
                     "wald_p_adjusted": finite(c.wald_p_adjusted[j]), "rmsd_dif": finite(c.effect.rmsd[j]),
                     "signed_difference": finite(c.effect.signed[j]), "why": c.why[int(j)],
                     **({"curves": dif.group_curves(c, int(j))} if rank < CURVES_KEPT else {})}
                    for rank, j in enumerate(flagged)],
    }


def _log(run: RunContext, screen: dif.DifScreen, question_ids: np.ndarray) -> None:
    sizes = ", ".join(f"{k}: {v}" for k, v in screen.group_sizes.items())
    run.log.info("DIF screen against reference group %s (students per group: %s; %d without a group) in %.2fs",
                 screen.reference, sizes, screen.unassigned, run.summary.durations["dif"])
    for focal, why in screen.skipped.items():
        run.warn("DIF: group %s not compared with %s: %s", focal, screen.reference, why)
    for c in screen.comparisons:
        flagged = {str(question_ids[j]): c.why[int(j)] for j in np.flatnonzero(c.flagged)}
        if flagged:
            run.log.warning("DIF: %d of %d items flagged between %s and %s: %s", len(flagged), int(c.tested.sum()),
                            screen.reference, c.focal, reasons(flagged))
        else:
            run.log.info("DIF: none of %d items flagged between %s and %s", int(c.tested.sum()), screen.reference,
                         c.focal)
        if not c.purified:
            run.warn("DIF: fewer than the anchors needed were left unflagged between %s and %s; the groups were "
                     "linked on every tested item", screen.reference, c.focal)


def table_rows(result: DifResult) -> list[tuple]:
    """One row of mirt_dif per focal group and tested item (``queries.write_dif``'s columns)."""
    rows = []
    screen = result.screen
    for c in screen.comparisons:
        anchors = set(c.anchors.tolist())
        for j in np.flatnonzero(c.tested):
            rows.append((int(result.question_ids[j]), screen.reference, c.focal, int(c.answers_reference[j]),
                         int(c.answers_focal[j]), finite(c.mh.alpha[j]), finite(c.mh.delta[j]),
                         finite(c.mh.delta_se[j]), finite(c.mh.chi2[j]), finite(c.mh.p_value[j]),
                         str(c.mh.ets[j]) or None, finite(c.wald_chi2[j]), finite(c.wald_df[j]),
                         finite(c.wald_p[j]), finite(c.wald_p_adjusted[j]), finite(c.effect.signed[j]),
                         finite(c.effect.rmsd[j]), finite(c.effect.signed_area[j]),
                         finite(c.effect.unsigned_area[j]), finite(c.reference_params.a[j]),
                         finite(c.reference_params.b[j]), finite(c.focal_params.a[j]), finite(c.focal_params.b[j]),
                         int(j) in anchors, bool(c.flagged[j])))
    return rows
