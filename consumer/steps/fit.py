"""Step 3 of a run: fit the model, then its standard errors and item fit, and hold back what is not sound."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..db.queries import Observations
from ..errors import CalibrationRefused
from ..irt import fipc, holdback, information, itemfit
from ..irt.estimate import ItemCalibration, estimate_items
from ..irt.priors import Priors, choose as choose_priors
from ..irt.expected import FinalEStep
from ..irt.model import ItemParameters
from .context import RunContext, id_list, reasons


@dataclass(frozen=True)
class Calibration:
    """The fitted items (``items``; those held back are NaN and named) and the priors they were fitted under."""

    items: ItemCalibration
    priors: Priors


@dataclass(frozen=True)
class Diagnostics:
    """A calibration with its standard errors and item fit; items without standard errors are held back.

    ``errors`` are on the scale ``calibration`` is on (a fixed-parameter
    calibration's are carried so that writing puts them on the old scale).
    """

    calibration: Calibration
    errors: information.ItemStandardErrors
    rmsd: np.ndarray
    #: The observed and model curves of the worst-fitting items, for the review page.
    misfit_curves: list[dict]

    @property
    def items(self) -> ItemCalibration:
        return self.calibration.items


def item_priors(run: RunContext, responses) -> Priors:
    """The priors on a and b this run uses: MIRT_ITEM_PRIORS, where ``auto`` means on thin data only."""
    choice = choose_priors(responses, run.settings.model, run.settings.item_priors, run.settings.min_responses)
    run.summary.fit["item_priors"] = {"setting": run.settings.item_priors, "used": choice.used, "why": choice.why}
    return choice.priors


def fit(run: RunContext, observations: Observations) -> Calibration:
    """Marginal ML (or Bayes modal, under priors) by EM; items still moving when it stops are held back."""
    settings = run.settings
    priors = item_priors(run, observations.responses)
    run.log.info("fitting %s by marginal maximum likelihood (EM, %d quadrature points, tolerance %g), %s (%s)",
                 settings.model, settings.quadrature_points, settings.em_tolerance,
                 "with priors on a and b" if priors.on_a_b else "no priors on a and b",
                 run.summary.fit["item_priors"]["why"])
    with run.step("fit") as span:
        items = estimate_items(observations.responses, settings.model, quadrature=run.quadrature,
                               tolerance=settings.em_tolerance, max_iterations=settings.em_max_iterations,
                               min_responses=settings.min_responses, progress=run.progress, priors=priors,
                               checkpoint=run.checkpoint)
        items = holdback.unconverged(items)
        span.set_attributes({"model": items.model, "iterations": items.iterations, "converged": items.converged,
                             "items_estimated": int(items.estimated.sum())})
    if not items.estimated.any():  # refused here: standard errors and item fit need an item to work on
        count_items(run, observations.question_ids, items)
        refuse_without_items(settings)
    return Calibration(items, priors)


def refuse_without_items(settings) -> None:
    raise CalibrationRefused("no item could be estimated from the answers in the window",
                             "widen MIRT_LOOKBACK_DAYS or raise MIRT_MAX_OBS so that items gather "
                             f"MIRT_MIN_RESPONSES={settings.min_responses} informative answers")


def diagnose(run: RunContext, observations: Observations, calibration: Calibration,
             fixed: fipc.FixedCalibration | None = None, anchors: np.ndarray | None = None) -> Diagnostics:
    """Standard errors and item fit of ``calibration``, from one E-step at its estimates.

    After a fixed-parameter calibration (``fixed``, with the ``anchors``
    held), the standard errors are those of that model: the anchors have
    none, and the free items' come from the information over them and the
    population's mean and SD on the old scale.
    """
    responses, items, quadrature = observations.responses, calibration.items, run.quadrature
    final = FinalEStep.at(responses, items.params, quadrature)
    method = "approximate" if run.settings.standard_errors == "approximate" else "auto"  # (MIRT_STANDARD_ERRORS)
    if fixed is None:
        errors = information.standard_errors(responses, items.params, items.model, quadrature, calibration.priors,
                                             final=final, method=method)
    else:
        kept = items.estimated  # without the items held back after the fixed-parameter calibration
        old_params = ItemParameters(np.where(kept, fixed.params.a, np.nan), np.where(kept, fixed.params.b, np.nan),
                                    fixed.params.c)
        on_old_scale = information.standard_errors(responses, old_params, items.model, quadrature,
                                                   calibration.priors, fixed=anchors,
                                                   population=(fixed.mean, fixed.sd), method=method)
        # The fit is kept on the new population's unit scale and carried to the old one by the slope
        # (= the population's SD) when written: store the SEs so that that carries them back exactly.
        errors = dataclasses.replace(on_old_scale, a=on_old_scale.a * fixed.sd, b=on_old_scale.b / fixed.sd,
                                     d=np.full(len(items.params), np.nan))
    rmsd = itemfit.rmsd(responses, items.params, final=final)
    curves = itemfit.misfit_curves(final, rmsd, run.settings.item_fit_threshold)
    for curve in curves:
        curve["question_id"] = int(observations.question_ids[curve["item"]])
    run.summary.fit["misfit_curves"] = curves
    free = np.ones(len(items.params), bool)
    if anchors is not None:
        free[anchors] = False
    kept = holdback.without_errors(items, errors.a, errors.b, free)
    return Diagnostics(dataclasses.replace(calibration, items=kept), errors, rmsd, curves)


def count_items(run: RunContext, question_ids: np.ndarray, items: ItemCalibration) -> tuple[dict, dict]:
    """Record which items were estimated, left out and held back (by question id, with why)."""
    excluded = {str(question_ids[j]): reason for j, reason in items.excluded.items()}
    held_back = {str(question_ids[j]): reason for j, reason in items.held_back.items()}
    run.summary.counts.update(items_estimated=int(items.estimated.sum()), items_excluded=len(excluded),
                              excluded_items=excluded, items_held_back=len(held_back), held_back_items=held_back)
    return excluded, held_back


def report_fit(run: RunContext, observations: Observations, diagnostics: Diagnostics) -> None:
    """Tell the fit: its statistics in the summary, one line for it, one warning per kind of trouble.

    Refuses the run when no item could be estimated.
    """
    s, settings, items = run.summary, run.settings, diagnostics.items
    qid = observations.question_ids
    excluded, held_back = count_items(run, qid, items)
    n_params = free_parameters(items)
    if items.priors.on_a_b:
        s.fit["item_priors"]["centre"] = {"log_a_mode": items.priors.log_a_mode, "b_mean": items.priors.b_mean,
                                          "empirical": items.priors.empirical}
    s.fit.update({"loglik": items.loglik, "iterations": items.iterations, "converged": items.converged,
                  "max_change": items.max_change, "n_parameters": n_params,
                  "standard_errors": diagnostics.errors.method,
                  "aic": -2 * items.loglik + 2 * n_params,
                  "bic": -2 * items.loglik + n_params * math.log(max(items.n_persons, 1)),
                  "log_posterior": items.log_posterior,
                  "items_at_bounds": {str(qid[j]): v for j, v in items.at_bounds.items() if items.estimated[j]}})
    run.log.info("fitted %s in %.2fs (standard errors and item fit %.2fs): %d EM passes, %s, "
                 "log-likelihood %.3f, %d items estimated",
                 settings.model, s.durations["fit"], s.durations["diagnostics"], items.iterations,
                 "converged" if items.converged else f"NOT converged (last change {items.max_change:.2g})",
                 items.loglik, s.counts["items_estimated"])
    if not items.converged:
        moving = [k for k, v in held_back.items() if v.startswith("not converged")]
        run.warn("EM stopped at MIRT_EM_MAX_ITERATIONS=%d before converging (largest last change %.3g); the %d "
                 "items still moving are held back and the others written; raise the cap or loosen "
                 "MIRT_EM_TOLERANCE", settings.em_max_iterations, items.max_change, len(moving))
    if held_back:
        run.warn("%d items held back, not written, not scored, not linked on: %s; their answers do not pin "
                 "their parameters down: review them (answer key, wording) or wait for more answers",
                 len(held_back), reasons(held_back))
    if s.fit["items_at_bounds"]:
        run.warn("%d items ended on a bound of their parameters: %s", len(s.fit["items_at_bounds"]),
                 reasons(s.fit["items_at_bounds"]))
    too_few = [str(qid[j]) for j in items.excluded if items.responses_per_item[j] < settings.min_responses]
    if too_few:
        run.log.info("%d items held back until they reach MIRT_MIN_RESPONSES=%d responses: %s", len(too_few),
                     settings.min_responses, id_list(too_few))
    misfits = {str(qid[j]): f"RMSD {diagnostics.rmsd[j]:.3f} above {settings.item_fit_threshold:g}"
               for j in np.flatnonzero(diagnostics.rmsd > settings.item_fit_threshold)}
    s.counts["misfitting_items"] = misfits
    if misfits:
        run.warn("%d items misfit (their observed curve departs from the model's): %s", len(misfits),
                 reasons(misfits))
    one_sided = {k: v for k, v in excluded.items() if k not in held_back and k not in too_few}
    if one_sided:
        run.warn("%d items not estimated: %s", len(one_sided), reasons(one_sided))
    if not items.estimated.any():
        refuse_without_items(settings)


def free_parameters(items: ItemCalibration) -> int:
    per_item = {"1PL": 1, "2PL": 2, "3PL": 3}[items.model]
    n = int(items.estimated.sum())
    return n + 1 if items.model == "1PL" and n else n * per_item
