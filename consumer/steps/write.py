"""Steps 5 and 6 of a run: score every student on the linked scale, then write everything in one transaction."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from ..calibration import SUCCEEDED
from ..db import queries
from ..db.connection import opened
from ..db.queries import Observations
from ..errors import RunLockLost
from ..irt import information, plausible
from ..irt.estimate import ItemCalibration
from ..irt.scoring import ML, Abilities, score as score_by
from .context import RunContext, finite
from .bank import bank_item_params, bank_population, score_from_bank, write_bank
from .dif import DifResult, table_rows
from .link import Link


def score(run: RunContext, observations: Observations, link: Link) -> Abilities:
    """Abilities of every student with an answer on a scored item, by the run's method (MIRT_SCORING).

    Linked: from the calibration's estimates, on the linked scale. In bank
    mode: from the operational items' bank parameters, on the bank's scale
    (``steps.bank.score_from_bank``).
    """
    method = run.settings.scoring
    with run.step("score") as span:
        if link.bank is not None:
            scores, on = score_from_bank(run, observations, link.bank), "from the bank's operational items"
        else:
            scores = score_by(observations.responses, link.diagnostics.items.params, method, linking=link.constants,
                              quadrature=run.quadrature)
            on = "on the linked scale"
        scored = int(scores.scored.sum())
        span.set_attributes({"users_scored": scored, "method": method})
    s = run.summary
    s.counts["users_scored"] = scored
    at_bound = scores.at_bound()
    s.fit["scoring"] = {"method": method, "at_bound": at_bound}
    run.log.info("scored %d users by %s %s (%d with no estimated item left unscored) in %.2fs",
                 scored, method, on, s.counts["users"] - scored, s.durations["score"])
    if method == ML and any(at_bound.values()):
        run.log.info("%d ML estimates are infinite (%d all right; %d all wrong, or a 3PL likelihood still rising "
                     "toward -inf): written as the end of the scale's range, with no standard error (NULL)",
                     sum(at_bound.values()), at_bound["upper"], at_bound["lower"])
    elif any(at_bound.values()):
        run.log.info("%d %s estimates lie at the end of the scale's range (%d upper, %d lower)",
                     sum(at_bound.values()), method, at_bound["upper"], at_bound["lower"])
    return scores


def population(run: RunContext, observations: Observations, link: Link) -> plausible.PopulationEstimate | None:
    """The scored students' mean and SD on the reported scale from MIRT_PLAUSIBLE_VALUES plausible values each,
    combined by Rubin's rules (None with MIRT_PLAUSIBLE_VALUES=0 or fewer than two students).

    The draws' prior is the population's own distribution, as plausible
    values need: linked, the calibration's N(0, 1) (carried by the linking
    constants); in bank mode, the population the fixed-parameter calibration
    estimated on the bank's scale, N(mean, SD^2), with the items scored on.
    """
    draws = run.settings.plausible_values
    if not draws:
        return None
    with run.step("plausible_values"):
        rng = np.random.default_rng(run.run_id.int)  # the same draws when the run is read again
        if link.bank is not None:
            params, mean_sd = bank_population(link.bank, link.constants)
            values = plausible.draw_plausible_values(observations.responses, params, draws, rng,
                                                     population=mean_sd, quadrature=run.quadrature)
        else:
            values = plausible.draw_plausible_values(observations.responses, link.diagnostics.items.params, draws,
                                                     rng, linking=link.constants, quadrature=run.quadrature)
        if np.isfinite(values).all(axis=1).sum() < 2:
            return None
        estimate = plausible.population_statistics(values)
    run.summary.fit["plausible_values"] = estimate.as_dict()
    run.log.info("population from %d plausible values per student (%d students): mean %.4f (SE %.4f, between "
                 "draws %.4f), SD %.4f (SE %.4f, between draws %.4f)", draws, estimate.n, estimate.mean,
                 estimate.mean_se, estimate.mean_between, estimate.sd, estimate.sd_se, estimate.sd_between)
    return estimate


def write(run: RunContext, fence_token: int, observations: Observations, link: Link, scores: Abilities | None,
          population: plausible.PopulationEstimate | None = None, dif: DifResult | None = None) -> None:
    """Item parameters, abilities and the run's record in one transaction, if the run still holds its lock.

    In bank mode the bank's changes and the drift watch go in the same
    transaction. A recalibration (``scores`` None) writes its item
    parameters to the history only: the bank and the students' scores stay
    as they are until an operator accepts it. The DIF screen (``dif``, when
    MIRT_DIF_GROUP_COLUMN is set) goes in the same transaction, dry run or not.
    """
    s, items, constants = run.summary, link.diagnostics.items, link.constants
    fitted_at = datetime.now(timezone.utc)
    linked = items.params.on_scale(constants.slope, constants.intercept)
    estimated = np.flatnonzero(items.estimated)
    params = [item_params(linked, link.diagnostics.errors, link.diagnostics.rmsd, constants.slope, j, items)
              for j in estimated]
    if link.bank is not None:
        params = [bank_item_params(link.bank, j, p) for j, p in zip(estimated, params)]
    scored = np.flatnonzero(scores.scored) if scores is not None else np.zeros(0, np.int64)
    with run.step("write") as span:
        with opened(run.engine, transaction=True) as conn:
            if not queries.fence_holds(conn, fence_token, run.scope):
                raise RunLockLost("the run lock was lost while the run went on (its database connection dropped) "
                                  "and another run has taken it since; nothing was written",
                                  "nothing to do: the request is retried")
            if run.request.dry_run:
                record_dry_run(conn, run, fitted_at, items.model, observations, estimated, params, scored, scores)
                s.rows_upserted = {"items": 0, "abilities": 0}
            else:
                s.rows_upserted = {
                    "items": queries.write_item_params(conn, run.run_id, fitted_at, items.model, run.scope,
                                                       observations.question_ids[estimated], params,
                                                       history_only=scores is None),
                    "abilities": queries.write_abilities(conn, run.run_id, fitted_at, run.scope,
                                                         [observations.student_ids[i] for i in scored],
                                                         scores.theta[scored], scores.se[scored], method=scores.method)
                    if scores is not None else 0,
                }
                if population is not None:
                    s.rows_upserted["plausible_values"] = queries.write_plausible_values(
                        conn, run.run_id, fitted_at, run.scope, population.n, population.draw_means,
                        population.draw_sds)
                if link.bank is not None:
                    s.rows_upserted.update(write_bank(conn, run, observations, link.bank, fitted_at))
            if dif is not None:
                s.rows_upserted["dif"] = queries.write_dif(conn, run.run_id, run.scope, table_rows(dif))
            s.status = SUCCEEDED
            queries.finish_run(conn, run.run_id, SUCCEEDED, run.model_spec(), s.fit, s.as_dict(),
                               fitted_at=fitted_at)
        span.set_attributes({"items": s.rows_upserted["items"], "abilities": s.rows_upserted["abilities"]})
    run.log.info("%s %d item parameters and %d abilities in one transaction in %.2fs",
                 "dry run: would have upserted" if run.request.dry_run else "upserted",
                 len(estimated) if run.request.dry_run else s.rows_upserted["items"],
                 len(scored) if run.request.dry_run else s.rows_upserted["abilities"], s.durations["write"])


def record_dry_run(conn, run: RunContext, fitted_at: datetime, model: str, observations: Observations,
                   estimated: np.ndarray, params: list[dict], scored: np.ndarray, scores: Abilities | None) -> None:
    """What a dry run would have written, in the history tables only, so that its review page shows it.

    The current parameters and scores (mirt_item_params, mirt_ability) and the
    bank stay as they are: a dry run writes no parameters. Each item row is
    marked ``dry_run`` (as is the run in mirt_fit_meta), so that a reader of
    the history by item, such as the promotion gates, passes it over.
    """
    queries.write_item_params(conn, run.run_id, fitted_at, model, run.scope, observations.question_ids[estimated],
                              [{**p, "dry_run": True} for p in params], history_only=True)
    if scores is not None:
        queries.write_abilities(conn, run.run_id, fitted_at, run.scope, [observations.student_ids[i] for i in scored],
                                scores.theta[scored], scores.se[scored], method=scores.method, history_only=True)


def item_params(params, errors: information.ItemStandardErrors, rmsd: np.ndarray, slope: float, j: int,
                items: ItemCalibration) -> dict:
    """One item's row of mirt_item_params.params, on the linked scale (standard errors too)."""
    out = {"a": float(params.a[j]), "b": float(params.b[j]), "c": float(params.c[j]),
           "a_se": finite(errors.a[j] / slope), "b_se": finite(errors.b[j] * slope),
           "n_responses": int(items.responses_per_item[j]), "rmsd": finite(rmsd[j])}
    if items.model == "3PL":
        out["c_se"] = finite(errors.c[j])
    return out
