"""Step 4 of a run in bank mode: hold the scale with the scope's bank, watch drift, promote pretest items.

A scope with a bank (``python -m consumer bank adopt``) is not linked
through anchors. Its weekly run:

1. compares each operational item's free estimate, linked onto the bank's
   scale, with its bank value (``irt.bank.watch_drift``); an item flagged in
   ``MIRT_DRIFT_RUNS`` of its last ``MIRT_DRIFT_RUNS + 1`` runs is suspended: it leaves the fixed set;
2. calibrates the window with every other operational item held at its
   bank value (fixed-parameter calibration, MWU-MEM): the population's mean
   and SD on the bank's scale are the run's constants (method ``fipc``),
   and the pretest items land on the bank's scale;
3. promotes the pretest items that pass the gates (``irt.bank.PromotionGates``);
4. scores every student from operational bank parameters only, with the
   bank's reference population N(0, 1) as the prior, so that a student's
   theta does not move because other students answered.

A recalibration (a request with ``mode: recalibration``) is a free
calibration linked onto the bank through its operational items, as anchors;
it writes its parameters to the history only, with its impact on scores,
and changes the bank only when an operator accepts it (``bank accept``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .. import anchors as anchor_io
from ..db import bank as bank_db
from ..db.connection import opened
from ..db.queries import Observations
from ..errors import CalibrationRefused
from ..irt import bank as rules
from ..irt import linking
from ..irt.model import ItemParameters
from ..irt.scoring import Abilities, score, score_eap
from .context import RunContext, finite, reasons
from .fit import Diagnostics
from .link import Link, fixed_parameter_calibration

WEEKLY, RECALIBRATION = "weekly", "recalibration"
#: How many earlier drift watches of an item its baseline takes (beyond them, the bank value alone).
DRIFT_HISTORY_RUNS = 8


@dataclass(frozen=True)
class Bank:
    """A scope's bank as the run found it: its items by id, and each operational item's run of drift flags."""

    items: dict[int, bank_db.BankRow]
    #: Per operational item: how many of the last MIRT_DRIFT_RUNS runs flagged it.
    flags_before: dict[int, int] = field(default_factory=dict)
    #: Each pretest item's estimates of its earlier runs, newest first.
    pretest_history: dict[int, list[dict]] = field(default_factory=dict)
    #: Each operational item's free estimates of earlier runs' drift watches, on the bank's scale, newest first.
    drift_history: dict[int, list[dict]] = field(default_factory=dict)

    def ids(self, status: str) -> list[int]:
        return [i for i, row in self.items.items() if row.status == status]

    def anchor(self, item_id: int) -> anchor_io.Anchor:
        """An item's bank values (parameters and standard errors) as an anchor's reference."""
        row = self.items[item_id]
        return anchor_io.parse_anchor(item_id, {**row.params, "model": row.model})

    def as_anchors(self) -> list[anchor_io.Anchor]:
        """The operational items as anchors: what a recalibration links onto."""
        return [self.anchor(i) for i in self.ids(rules.OPERATIONAL)]


@dataclass(frozen=True)
class BankOutcome:
    """What a weekly bank run decided, by item position in the run's observations."""

    #: Every item's status after this run ('' for items the bank does not hold and the run did not estimate).
    status: np.ndarray
    #: Every item's parameters on the bank's scale: bank values for the fixed, this run's estimates for the rest.
    on_bank: ItemParameters
    drift: rules.Drift
    #: Positions of the operational items the drift watch compared, and their bank values.
    watched: np.ndarray
    watched_bank: ItemParameters
    promoted: dict[int, str]
    suspended: dict[int, str]
    entered: list[int]
    gates: rules.PromotionGates
    #: (a_se, b_se) by position: the bank's, for items held at their bank values; this run's, for the others.
    fixed_errors: dict[int, tuple] = field(default_factory=dict)
    pretest_errors: dict[int, tuple] = field(default_factory=dict)


def load_bank(run: RunContext) -> Bank | None:
    """The scope's bank, or None when it has none (then it is linked through anchors)."""
    with run.step("bank") as span, opened(run.engine) as conn:
        rows = bank_db.bank_items(conn, run.scope)
        if not rows:
            return None
        items = {row.item_id: row for row in rows}
        operational = [i for i, row in items.items() if row.status == rules.OPERATIONAL]
        streak = bank_db.recent_flags(conn, run.scope, operational, run.settings.drift_runs)
        pretest = [i for i, row in items.items() if row.status == rules.PRETEST]
        history = bank_db.pretest_history(conn, run.scope, pretest, run.settings.promotion_runs)
        earlier = bank_db.drift_history(conn, run.scope, operational, DRIFT_HISTORY_RUNS)
        span.set_attributes({"bank_items": len(items), "operational": len(operational)})
    counts = {status: sum(row.status == status for row in rows) for status in rules.STATUSES}
    run.log.info("loaded %s: %d operational, %d pretest, %d suspended items", run.scope.item_bank,
                 counts[rules.OPERATIONAL], counts[rules.PRETEST], counts[rules.SUSPENDED])
    run.summary.counts["bank"] = counts
    return Bank(items, streak, history, earlier)


def hold_scale(run: RunContext, observations: Observations, diagnostics: Diagnostics, bank: Bank) -> Link:
    """The weekly run's step 4: drift watch, the fixed-parameter calibration on the bank, promotions."""
    settings, s = run.settings, run.summary
    qid = observations.question_ids
    items = diagnostics.items
    if items.model != _bank_model(bank):
        raise CalibrationRefused(
            f"{run.scope.item_bank} holds {_bank_model(bank)} parameters, and this run fits the {items.model}",
            f"set MIRT_MODEL={_bank_model(bank)}, or recalibrate the bank in the {items.model} and accept it")
    with run.step("link") as span:
        position = {int(q): j for j, q in enumerate(qid)}
        operational = [(i, position[i]) for i in bank.ids(rules.OPERATIONAL) if i in position]
        watched = np.array([j for i, j in operational if items.estimated[j]], dtype=np.int64)
        watched_values = [bank.anchor(int(qid[j])) for j in watched]
        drift = _watch(run, diagnostics, bank, watched, watched_values)
        streak = np.array([bank.flags_before.get(int(qid[j]), 0) for j in watched], dtype=np.int64)
        leaving = rules.suspend(drift.flagged, streak, settings.drift_runs)
        suspended = {int(watched[k]): f"drift flagged in {settings.drift_runs} of its last {settings.drift_runs + 1} "
                                      f"runs: {drift.reasons[k]}"
                     for k in np.flatnonzero(leaving)}
        fixed = [(bank.anchor(i), j) for i, j in operational if j not in suspended]
        if len(fixed) < settings.min_anchors:
            raise CalibrationRefused(
                f"only {len(fixed)} operational items of {run.scope.item_bank} were answered in the window; "
                f"at least MIRT_MIN_ANCHORS={settings.min_anchors} are needed to hold its scale",
                "widen MIRT_LOOKBACK_DAYS, or check that the bank's items are still administered")
        start = dataclasses.replace(drift.constants, method=linking.STOCKING_LORD)
        constants, held = fixed_parameter_calibration(run, observations, fixed, diagnostics, start)
        span.set_attributes({"population_mean": constants.intercept, "population_sd": constants.slope,
                             "fixed": len(fixed), "flagged": int(drift.flagged.sum())})
    on_bank = held.items.params.on_scale(constants.slope, constants.intercept)
    status = np.array([bank.items[int(q)].status if int(q) in bank.items else "" for q in qid], dtype=object)
    for j in suspended:
        status[j] = rules.SUSPENDED
    entered = [int(j) for j in np.flatnonzero(held.items.estimated) if status[j] == ""]
    for j in entered:
        status[j] = rules.PRETEST
    promoted, failing = _promote(run, observations, held, on_bank, constants.slope, status, bank)
    for j in promoted:
        status[j] = rules.OPERATIONAL
    fixed_errors = {j: (x.a_se, x.b_se) for x, j in fixed}
    pretest_errors = {int(j): (finite(held.errors.a[j] / constants.slope), finite(held.errors.b[j] * constants.slope))
                      for j in np.flatnonzero(held.items.estimated) if int(j) not in fixed_errors}
    outcome = BankOutcome(status, on_bank, drift, watched, anchor_io.reference_parameters(watched_values), promoted,
                          suspended, entered, _gates(settings), fixed_errors, pretest_errors)
    _report(run, observations, constants, outcome, failing)
    s.linking_constants = constants.as_dict()
    s.counts["anchors"] = constants.n_anchors
    return Link(constants, held, bank=outcome)


def _bank_model(bank: Bank) -> str:
    models = {row.model for row in bank.items.values() if row.status == rules.OPERATIONAL}
    return models.pop() if len(models) == 1 else "/".join(sorted(models))


def _watch(run: RunContext, diagnostics: Diagnostics, bank: Bank, watched: np.ndarray,
           values: list[anchor_io.Anchor]) -> rules.Drift:
    """The drift watch over the operational items this run estimated freely (at ``watched``, bank ``values``)."""
    reference = anchor_io.reference_parameters(values)
    reference_b_se, reference_a_se = anchor_io.reference_errors(values)
    errors = linking.AnchorErrors(new_b=diagnostics.errors.b[watched], new_a=diagnostics.errors.a[watched],
                                  reference_b=reference_b_se, reference_a=reference_a_se)
    earlier = [_earlier(bank.drift_history.get(x.question_id, [])) for x in values]
    try:
        drift = rules.watch_drift(reference, diagnostics.items.params.take(watched), errors,
                                  run.settings.drift_threshold, earlier, window=run.settings.drift_runs)
    except linking.LinkingError as problem:
        raise CalibrationRefused(f"this window's free estimates cannot be linked onto {run.scope.item_bank}: {problem}",
                                 "check the bank's parameters (python -m consumer bank show) and the window's "
                                 "answers; widen MIRT_LOOKBACK_DAYS") from None
    if drift.disagreement:
        run.warn("the bank's operational items disagree with this window's free estimates as a whole (%s): the "
                 "population may differ in more than mean and SD, or the items changed; review the run",
                 drift.disagreement)
    return drift


def _earlier(history: list[dict]) -> rules.EarlierEstimates:
    """An item's earlier drift-watch estimates (newest first), those with standard errors."""
    usable = [h for h in history if all(h.get(k) is not None for k in ("a", "b", "a_se", "b_se"))]
    return rules.EarlierEstimates(tuple(h["a"] for h in usable), tuple(h["b"] for h in usable),
                                  tuple(h["a_se"] for h in usable), tuple(h["b_se"] for h in usable),
                                  tuple(bool(h["flagged"]) for h in usable))


def _gates(settings) -> rules.PromotionGates:
    return rules.PromotionGates(settings.promotion_min_answers, settings.promotion_max_b_se,
                                settings.item_fit_threshold, settings.promotion_runs, settings.drift_threshold)


def _promote(run: RunContext, observations: Observations, held: Diagnostics, on_bank: ItemParameters,
             slope: float, status: np.ndarray, bank: Bank) -> tuple[dict[int, str], dict[int, list[str]]]:
    """The pretest items that pass every gate (position -> what they showed), and what the others failed."""
    gates = _gates(run.settings)
    items, errors = held.items, held.errors
    promoted, failing = {}, {}
    for j in np.flatnonzero(items.estimated & (status == rules.PRETEST)):
        question = int(observations.question_ids[j])
        earlier = tuple((float(p["b"]), float(p.get("b_se") or np.inf))
                        for p in bank.pretest_history.get(question, []))
        candidate = rules.PretestItem(float(on_bank.b[j]), float(errors.b[j] * slope),
                                      int(items.responses_per_item[j]), float(held.rmsd[j]), earlier)
        failed = rules.promotion_gates(candidate, gates)
        if failed:
            failing[int(j)] = failed
        else:
            promoted[int(j)] = (f"{candidate.n_answers} answers, SE of b {candidate.b_se:.3f}, RMSD "
                                f"{candidate.rmsd:.3f}, b steady over {gates.runs} runs")
    return promoted, failing


def _report(run: RunContext, observations: Observations, constants: linking.LinkingConstants,
            outcome: BankOutcome, failing: dict[int, list[str]]) -> None:
    qid, s = observations.question_ids, run.summary
    flagged = {str(qid[outcome.watched[k]]): outcome.drift.reasons[k] for k in np.flatnonzero(outcome.drift.flagged)}
    suspended = {str(qid[j]): why for j, why in outcome.suspended.items()}
    promoted = {str(qid[j]): why for j, why in outcome.promoted.items()}
    s.counts.update(items_promoted=len(promoted), items_flagged=len(flagged), items_suspended=len(suspended),
                    items_entered_pretest=len(outcome.entered))
    s.fit["bank"] = {
        "mode": WEEKLY,
        "population": {"mean": constants.intercept, "sd": constants.slope, "mean_se": constants.intercept_se,
                       "sd_se": constants.slope_se},
        "fixed_items": constants.n_anchors, "drift_watched": int(outcome.watched.size),
        "drift_link": outcome.drift.constants.as_dict(),
        "flagged": flagged, "suspended": suspended, "promoted": promoted,
        "gates": outcome.gates.as_dict(),
        "not_promoted": {str(qid[j]): why for j, why in list(failing.items())[:200]},
    }
    se = (f" (standard errors {constants.intercept_se:.4f}, {constants.slope_se:.4f})"
          if constants.slope_se is not None else "")
    run.log.info("bank mode: %d operational items held at their bank values; the population on the bank's scale "
                 "is N(%.4f, %.4f^2)%s", constants.n_anchors, constants.intercept, constants.slope, se)
    if flagged:
        run.warn("%d operational items flagged for drift (their free estimate left their bank value): %s",
                 len(flagged), reasons(flagged))
    if suspended:
        run.warn("%d operational items suspended, out of the fixed set and unscored until a recalibration is "
                 "accepted: %s", len(suspended), reasons(suspended))
    if promoted:
        run.log.info("%d pretest items promoted to operational: %s", len(promoted), reasons(promoted))
    run.log.info("%d pretest items calibrated onto the bank's scale (%d entered the bank as pretest); %d did not "
                 "pass the promotion gates yet", int((outcome.status == rules.PRETEST).sum()), len(outcome.entered),
                 len(failing))


def _scored_items(outcome: BankOutcome) -> ItemParameters:
    """The operational items' bank parameters (and the newly promoted ones'); NaN for the items not scored on."""
    scored_on = outcome.status == rules.OPERATIONAL
    return ItemParameters(np.where(scored_on, outcome.on_bank.a, np.nan), np.where(scored_on, outcome.on_bank.b,
                                                                                   np.nan), outcome.on_bank.c)


def score_from_bank(run: RunContext, observations: Observations, outcome: BankOutcome) -> Abilities:
    """Abilities by the run's method from the scored items' bank parameters, on the bank's scale; the Bayesian
    methods' prior is the bank's reference population N(0, 1), so that a student's theta does not move with the
    cohort they were calibrated with."""
    return score(observations.responses, _scored_items(outcome), run.settings.scoring, quadrature=run.quadrature)


def bank_population(outcome: BankOutcome, constants: linking.LinkingConstants,
                    ) -> tuple[ItemParameters, tuple[float, float]]:
    """What plausible values are drawn with in bank mode: the items scored on, and the window's population on the
    bank's scale as the fixed-parameter calibration estimated it (mean, SD)."""
    return _scored_items(outcome), (constants.intercept, constants.slope)


def bank_item_params(outcome: BankOutcome, j: int, params: dict) -> dict:
    """An item's row of mirt_item_params in bank mode: its status, and for a fixed item its bank values."""
    status = outcome.status[j] or rules.PRETEST
    out = {**params, "status": status}
    if j in outcome.fixed_errors:
        out["a_se"], out["b_se"] = outcome.fixed_errors[j]
    return out


def write_bank(conn, run: RunContext, observations: Observations, outcome: BankOutcome, fitted_at) -> dict:
    """The bank's changes of a weekly run (entries, promotions, suspensions) and its drift watch."""
    qid, model = observations.question_ids, run.settings.model

    def rows(positions, status, why=lambda j: None) -> list[dict]:
        return [{"item_id": int(qid[j]), "status": status, "model": model, "run_id": run.run_id, "reason": why(j),
                 "params": _bank_params(outcome, j)} for j in positions]

    by = f"run {run.run_id}"
    changed = {
        "bank_entered": bank_db.put_items(conn, run.scope, rows(outcome.entered, rules.PRETEST), "entered", by,
                                          fitted_at),
        "bank_promoted": bank_db.put_items(conn, run.scope, rows(outcome.promoted, rules.OPERATIONAL,
                                                                 outcome.promoted.get), "promoted", by, fitted_at),
        "bank_suspended": bank_db.put_items(conn, run.scope, rows(outcome.suspended, rules.SUSPENDED,
                                                                  outcome.suspended.get), "suspended", by, fitted_at),
    }
    drift = outcome.drift
    changed["drift_watched"] = bank_db.write_drift(conn, run.run_id, run.scope, fitted_at, [
        {"item_id": int(qid[j]), "a": finite(drift.placed.a[k]), "b": finite(drift.placed.b[k]),
         "a_se": finite(drift.placed_a_se[k]), "b_se": finite(drift.placed_b_se[k]),
         "a_bank": float(outcome.watched_bank.a[k]), "b_bank": float(outcome.watched_bank.b[k]),
         "z_b": finite(drift.z_b[k]), "z_a": finite(drift.z_a[k]), "flagged": bool(drift.flagged[k])}
        for k, j in enumerate(outcome.watched)])
    return changed


def _bank_params(outcome: BankOutcome, j: int) -> dict:
    se = outcome.pretest_errors.get(j, (None, None))
    return {"a": float(outcome.on_bank.a[j]), "b": float(outcome.on_bank.b[j]), "c": float(outcome.on_bank.c[j]),
            "a_se": se[0], "b_se": se[1]}


def recalibration_impact(run: RunContext, observations: Observations, link: Link, bank: Bank) -> rules.Impact:
    """How the recalibration, linked onto the bank, would move the students' scores against the bank's."""
    with run.step("score"):
        qid = observations.question_ids
        operational = set(bank.ids(rules.OPERATIONAL))
        a, b, c = np.full(qid.size, np.nan), np.full(qid.size, np.nan), np.zeros(qid.size)
        for j, q in enumerate(qid):
            if int(q) in operational:
                x = bank.anchor(int(q))
                a[j], b[j], c[j] = x.a, x.b, x.c
        now = score_eap(observations.responses, ItemParameters(a, b, c), quadrature=run.quadrature)
        proposed = score_eap(observations.responses, link.diagnostics.items.params, linking=link.constants,
                             quadrature=run.quadrature)
        impact = rules.score_impact(np.where(now.scored, now.theta, np.nan), now.se,
                                    np.where(proposed.scored, proposed.theta, np.nan))
    run.summary.fit["bank"] = {"mode": RECALIBRATION, "impact": impact.as_dict(),
                               "accept": f"python -m consumer bank accept {run.run_id}"}
    run.log.info("recalibration linked onto the bank (slope %.4f, intercept %.4f): %d of %d students would move by "
                 "more than their standard error (mean shift %+.3f, largest %.3f); the bank is unchanged until "
                 "someone accepts it: python -m consumer bank accept %s%s", link.constants.slope,
                 link.constants.intercept, impact.n_moved, impact.n_scored, impact.mean_shift, impact.max_shift,
                 run.run_id, f" --scope {run.scope.name}" if run.scope.name else "")
    return impact
