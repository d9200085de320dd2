"""Step 4 of a run: put the calibration on the anchors' scale (or, with no anchors, let it define the scale)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import anchors as anchor_io
from ..db.queries import Observations
from ..errors import CalibrationRefused
from ..irt import fipc, holdback, linking
from .context import RunContext, reasons
from .fit import Diagnostics, count_items, diagnose
from .load import Anchors


@dataclass(frozen=True)
class Link:
    """The linking constants, and the calibration to write with them (a fixed-parameter calibration's, under FIPC).

    In bank mode the constants are the population's mean and SD on the
    bank's scale, and ``bank`` holds what the run decided about the bank's
    items (``steps.bank.BankOutcome``).
    """

    constants: linking.LinkingConstants
    diagnostics: Diagnostics
    bank: Any = None


def link_scale(run: RunContext, observations: Observations, diagnostics: Diagnostics, anchors: Anchors) -> Link:
    """Link through the anchors answered and estimated in the window; refuse when too few are, or they drift."""
    s, settings = run.summary, run.settings
    items = diagnostics.items
    with run.step("link") as span:
        position = {int(q): j for j, q in enumerate(observations.question_ids)}
        usable = [(x, position[x.question_id]) for x in anchors.valid
                  if x.question_id in position and items.estimated[position[x.question_id]]]
        constants = linking.IDENTITY
        if usable and len(usable) >= settings.min_anchors:
            constants, dropped = _screen_and_link(run, usable, diagnostics)
            if settings.linking_method == linking.FIXED:
                kept = [(x, j) for x, j in usable if str(x.question_id) not in dropped]
                constants, diagnostics = fixed_parameter_calibration(run, observations, kept, diagnostics,
                                                                      constants)
        elif anchors.valid:
            raise CalibrationRefused(
                f"only {len(usable)} of {len(anchors.valid)} anchors were answered in the window and estimated; "
                f"at least MIRT_MIN_ANCHORS={settings.min_anchors} are needed to link",
                "tag more anchors (python -m consumer tag-anchors), widen MIRT_LOOKBACK_DAYS, "
                "or lower MIRT_MIN_ANCHORS")
        span.set_attributes({"method": constants.method, "slope": constants.slope,
                             "intercept": constants.intercept, "anchors": constants.n_anchors})
    s.linking_constants = constants.as_dict()
    s.counts["anchors"] = constants.n_anchors
    ses = (f" (standard errors {constants.slope_se:.4f}, {constants.intercept_se:.4f})"
           if constants.slope_se is not None else "")
    run.log.info("linking constants (%s, %d anchors): slope %.4f, intercept %.4f%s",
                 constants.method, constants.n_anchors, constants.slope, constants.intercept, ses)
    return Link(constants, diagnostics)


def _screen_and_link(run: RunContext, usable, diagnostics: Diagnostics) -> tuple[linking.LinkingConstants, dict]:
    """Drop drifting anchors, then link on the rest; refuse when the anchors mostly drift.

    Returns the constants and the dropped anchors (question id -> why).
    """
    settings, errors = run.settings, diagnostics.errors
    chosen = [x for x, _ in usable]
    positions = np.array([j for _, j in usable])
    reference = anchor_io.reference_parameters(chosen)
    new = diagnostics.items.params.take(positions)
    reference_b_se, reference_a_se = anchor_io.reference_errors(chosen)
    anchor_errors = linking.AnchorErrors(new_b=errors.b[positions], new_a=errors.a[positions],
                                         reference_b=reference_b_se, reference_a=reference_a_se)
    # FIPC fixes the anchors that survive a Stocking-Lord screen.
    method = linking.STOCKING_LORD if settings.linking_method == linking.FIXED else settings.linking_method
    try:
        screen = linking.screen_drift(reference, new, method, settings.drift_threshold, anchor_errors)
    except linking.LinkingError as problem:
        raise CalibrationRefused(f"the anchors cannot be linked on: {problem}",
                                 "check the anchors' reference parameters in question.meta->'irt'") from None
    dropped = {str(usable[i][0].question_id): reason for i, reason in screen.dropped.items()}
    run.summary.counts["anchors_dropped"] = dropped
    placed = new.on_scale(screen.constants.slope, screen.constants.intercept)
    run.anchor_table = [
        {"question_id": x.question_id,
         "reference": {"a": x.a, "b": x.b, "c": x.c, "model": x.model, "a_se": x.a_se, "b_se": x.b_se},
         # The standard errors the screen divided by (calibration scale): the page shows the z it used.
         "new": {"a": float(new.a[i]), "b": float(new.b[i]), "c": float(new.c[i]),
                 "a_se": _finite(anchor_errors.new_a[i]), "b_se": _finite(anchor_errors.new_b[i])},
         "linked": {"a": float(placed.a[i]), "b": float(placed.b[i])}, "dropped": str(x.question_id) in dropped}
        for i, x in enumerate(chosen)]
    for question_id, reason in dropped.items():
        run.warn("anchor question %s dropped from linking: %s", question_id, reason)
    kept = int(screen.kept.sum())
    if screen.disagreement:
        raise CalibrationRefused(
            f"{screen.disagreement}; refusing to link on noise",
            "check whether the anchors' reference parameters in question.meta->'irt' come from one calibration "
            "and whether the items changed; re-tag anchors (python -m consumer tag-anchors) if needed")
    if len(dropped) * 2 > len(usable) or kept < settings.min_anchors:
        raise CalibrationRefused(
            f"{len(dropped)} of {len(usable)} anchors drifted, leaving {kept} (MIRT_MIN_ANCHORS="
            f"{settings.min_anchors}): refusing to link on noise",
            "check the dropped anchors' items (changed content, leaked answers, a different population) "
            "and re-tag anchors, or raise MIRT_DRIFT_THRESHOLD if the drift is expected")
    return screen.constants, dropped


def fixed_parameter_calibration(run: RunContext, observations: Observations, kept, diagnostics: Diagnostics,
                                 screened: linking.LinkingConstants) -> tuple[linking.LinkingConstants, Diagnostics]:
    """Recalibrate with the ``kept`` anchors (or bank items) fixed at their reference values (MWU-MEM), from the
    linked fit.

    Returns FIPC's constants (where the population sits on the old scale) and
    the calibration with its estimates carried to the N(0, 1) scale, so that
    scoring and writing treat it like any other linked calibration.
    """
    settings, calibration = run.settings, diagnostics.calibration
    items = calibration.items
    positions = np.array([j for _, j in kept])
    result = fipc.fixed_parameter_calibration(
        observations.responses, items.params.on_scale(screened.slope, screened.intercept), positions,
        anchor_io.reference_parameters([x for x, _ in kept]), items.model,
        population=(screened.intercept, screened.slope), quadrature=run.quadrature,
        tolerance=settings.em_tolerance, max_iterations=settings.em_max_iterations, priors=calibration.priors,
        checkpoint=run.checkpoint)
    if not result.converged:
        run.warn("fixed-parameter calibration stopped at MIRT_EM_MAX_ITERATIONS=%d before converging; the %d "
                 "items still moving are held back", settings.em_max_iterations, len(result.still_moving))
    run.log.info("fixed-parameter calibration (MWU-MEM, %d items fixed): %d EM cycles, population on the old "
                 "scale N(%.4f, %.4f^2); Stocking-Lord on the same anchors gave slope %.4f, intercept %.4f",
                 len(kept), result.iterations, result.mean, result.sd, screened.slope, screened.intercept)
    on_unit_scale = dataclasses.replace(items, params=result.params.on_scale(1.0 / result.sd, -result.mean / result.sd))
    free = on_unit_scale.estimated.copy()
    free[positions] = False
    refitted = holdback.after_fixed_calibration(on_unit_scale, free, result.still_moving, result.iterations,
                                                run.quadrature)
    fixed = diagnose(run, observations, dataclasses.replace(calibration, items=refitted), fixed=result,
                     anchors=positions)
    count_items(run, observations.question_ids, fixed.items)
    added = {str(observations.question_ids[j]): why for j, why in fixed.items.held_back.items()
             if j not in items.held_back}
    if added:
        run.warn("%d items held back after the fixed-parameter calibration, not written: %s", len(added),
                 reasons(added))
    population_se = fixed.errors.population or (None, None)
    run.summary.fit["fipc"] = {"iterations": result.iterations, "converged": result.converged,
                               "loglik": result.loglik, "stocking_lord": screened.as_dict(),
                               "population_mean_se": population_se[0], "population_sd_se": population_se[1]}
    run.summary.fit["standard_errors"] = fixed.errors.method + " of the fixed-parameter calibration"
    return linking.LinkingConstants(linking.FIXED, result.sd, result.mean, len(kept),
                                    slope_se=population_se[1], intercept_se=population_se[0]), fixed


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
