"""One calibration run: SPEC's steps in order, each a short call.

``calibrate`` is what both the command line and the Pub/Sub consumer call:
a request (who asked, which scope, overrides) in, a ``RunSummary`` out. A run
calibrates one scope (``consumer.scope``: an item bank, or the whole bank):
it holds that scope's run lock for its whole length, records the run in
``mirt_fit_meta`` before it starts and when it ends, reads and writes that
scope's rows only, and writes the results in one transaction, so a run lands
whole or not at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import sqlalchemy as sa
from opentelemetry import trace

from . import anchors as anchor_io
from . import scope as scopes
from .db import queries
from .db.engine import unavailable
from .errors import CalibrationRefused, DatabaseLoginRefused, RunLockBusy, RunLockLost, ServiceError
from .irt import fipc, information, itemfit, linking
from .irt.estimate import ItemCalibration, Progress, estimate_items, unidentified
from .irt.priors import Priors, choose as choose_priors
from .irt.expected import FinalEStep
from .irt.model import ItemParameters
from .irt.quadrature import Quadrature
from .irt.scoring import score_eap
from .settings import Settings

log = logging.getLogger("consumer.run")
tracer = trace.get_tracer("consumer.run")

SUCCEEDED, SKIPPED, FAILED, ABANDONED = "succeeded", "skipped", "failed", "abandoned"
#: A request with a run in one of these states has been answered and is not run again.
FINISHED = (SUCCEEDED, SKIPPED, FAILED)


class RunAbandoned(Exception):
    """The run was given up (shutdown) before it wrote anything; its request should be retried."""


@dataclass(frozen=True)
class CalibrationRequest:
    """Why a run starts: who asked, under which id, for which scope, with which overrides."""

    request_id: str | None = None
    requested_by: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    as_of: datetime | None = None
    #: The scope's name; ``*`` (or none, with scopes configured) asks for every scope: a fan-out.
    scope: str | None = None
    #: Set on the requests a fan-out publishes: the parent's request id and how many scopes it has.
    fan_out: Mapping[str, Any] | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["overrides"] = dict(self.overrides)
        out["as_of"] = self.as_of.isoformat() if self.as_of else None
        out["fan_out"] = dict(self.fan_out) if self.fan_out else None
        return out


@dataclass
class RunSummary:
    """What a run did, as the log, the run record, ``--json`` and the completed event tell it."""

    run_id: str
    request_id: str | None
    status: str = "running"
    model: str = ""
    counts: dict = field(default_factory=dict)
    linking_constants: dict = field(default_factory=lambda: linking.IDENTITY.as_dict())
    fit: dict = field(default_factory=dict)
    window: dict = field(default_factory=dict)
    rows_upserted: dict = field(default_factory=dict)
    durations: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    error: str | None = None
    dry_run: bool = False
    #: True when this is the summary of an earlier run of the same request, which was not run again.
    duplicate: bool = False
    #: The scope's name (None for the whole bank) and, for a fan-out's run, its parent (``CalibrationRequest``).
    scope: str | None = None
    fan_out: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> "RunSummary":
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in stored.items() if k in known})

    @property
    def ok(self) -> bool:
        return self.status in (SUCCEEDED, SKIPPED)


class _Run:
    """The state of one run while its steps execute."""

    def __init__(self, engine: sa.Engine, settings: Settings, request: CalibrationRequest,
                 progress: Progress | None, should_stop: Callable[[], bool] | None) -> None:
        self.engine = engine
        self.settings = settings
        self.request = request
        self.should_stop = should_stop or (lambda: False)
        self.progress = self._checked_progress(progress)
        self.run_id = uuid.uuid4()
        self.scope = scopes.resolve(settings.scope_key, request.scope)
        self.until = request.as_of or datetime.now(timezone.utc)
        self.since = self.until - timedelta(days=settings.lookback_days)
        self.summary = RunSummary(run_id=str(self.run_id), request_id=request.request_id,
                                  model=settings.model, dry_run=request.dry_run, scope=self.scope.name or None,
                                  fan_out=dict(request.fan_out) if request.fan_out else None)
        self.summary.window = {"since": self.since.isoformat(), "until": self.until.isoformat()}
        self.log = RunLog(log, {"run_id": str(self.run_id), "scope": self.scope.name})
        self.errors: information.ItemStandardErrors | None = None
        self.rmsd: np.ndarray | None = None
        #: The priors on a and b the fit used (``MIRT_ITEM_PRIORS``; decided on the data when ``auto``).
        self.priors = Priors()
        #: This run's fencing token for the run lock (``queries.take_fence``), checked when it writes.
        self.fence_token: int | None = None
        #: Per anchor used for linking: reference, new (calibration scale) and linked parameters.
        self.anchor_table: list[dict] = []

    def warn(self, message: str, *args) -> None:
        text = message % args if args else message
        self.summary.warnings.append(text)
        self.log.warning(text)

    def checkpoint(self) -> None:
        """Give the run up here if the process is shutting down (nothing has been written yet)."""
        if self.should_stop():
            raise RunAbandoned("the consumer is shutting down; the run was given up before writing")

    def _checked_progress(self, progress: Progress | None) -> Progress:
        def report(iteration: int, loglik: float, change: float) -> None:
            self.checkpoint()
            if progress is not None:
                progress(iteration, loglik, change)
        return report

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[trace.Span]:
        """Time one step of the run, in a span of its own, after a shutdown checkpoint."""
        self.checkpoint()
        started = time.perf_counter()
        with tracer.start_as_current_span(f"calibration.{name}", attributes={"run_id": str(self.run_id)}) as span:
            try:
                yield span
            finally:
                self.summary.durations[name] = round(time.perf_counter() - started, 3)

    def model_spec(self) -> dict:
        s = self.summary
        return {
            "model": s.model,
            "n_items": s.counts.get("items_estimated", 0),
            "n_users": s.counts.get("users", 0),
            "n_obs": s.counts.get("observations", 0),
            "n_anchors": s.linking_constants.get("n_anchors", 0),
            "linking_constants": s.linking_constants,
            "request": self.request.as_dict(),
            "settings": self.settings.public(),
            "window": s.window,
            "excluded_items": s.counts.get("excluded_items", {}),
            "anchors_skipped": s.counts.get("anchors_skipped", {}),
            "anchors_dropped": s.counts.get("anchors_dropped", {}),
            "misfitting_items": s.counts.get("misfitting_items", {}),
            "held_back_items": s.counts.get("held_back_items", {}),
            "anchor_table": self.anchor_table,
            "dry_run": self.request.dry_run,
            "scope": self.scope.as_dict(),
        }


class RunLog(logging.LoggerAdapter):
    """A run's log lines: each carries the run id and, when the run calibrates a scope, names it."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return (f"[{self.extra['scope']}] {msg}" if self.extra["scope"] else msg), kwargs


def calibrate(engine: sa.Engine, settings: Settings, request: CalibrationRequest | None = None,
              *, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              once_per_request: bool = False) -> RunSummary:
    """Run one calibration and return its summary.

    A run that cannot start raises: ``ConfigError`` for bad overrides or
    a scope the settings do not make (``consumer.scope.resolve``),
    ``DatabaseUnavailable`` when the database cannot be reached, and
    ``RunLockBusy`` when another run of the scope holds its lock (both worth
    retrying).
    Once started, a run always ends recorded as succeeded, skipped, failed
    or abandoned, and its summary is returned, unless the database itself
    goes away, which raises ``DatabaseUnavailable`` again (the run is then
    recorded as abandoned if the database allows) and leaves no results.

    ``should_stop`` is asked between steps and EM iterations; when it says
    yes, the run is given up before it writes, recorded as abandoned, and
    its summary (status "abandoned") returned, so the request can be retried.
    With ``once_per_request``, a request id that already has a finished run
    is not run again: that run's summary comes back with ``duplicate`` set.
    """
    request = request or CalibrationRequest()
    settings = settings.with_overrides("request", **request.overrides)
    run = _Run(engine, settings, request, progress, should_stop)
    started = time.perf_counter()
    with _run_lock(engine, run):
        earlier = earlier_answer(engine, settings, request) if once_per_request else None
        if earlier is not None:
            return earlier
        run.log.info("calibration run %s of %s starting (request %s, requested by %s); settings: %s; "
                     "database: %s", run.run_id, run.scope.label, request.request_id or "-", request.requested_by or "-",
                     " ".join(f"{k}={v}" for k, v in settings.public().items()), settings.database_source())
        _record_start(run)
        try:
            # Numerical trouble is handled where it arises (items held back, one line each);
            # numpy's own warnings would only put raw lines on stderr.
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                _steps(run)
        except RunAbandoned as reason:
            _record_end(run, ABANDONED, str(reason))
        except Exception as exc:
            _record_failure(run, exc)
        finally:
            run.summary.durations["total"] = round(time.perf_counter() - started, 3)
        _store_final_summary(run)
    _log_outcome(run)
    return run.summary


def earlier_answer(engine: sa.Engine, settings: Settings, request: CalibrationRequest) -> RunSummary | None:
    """The summary of the finished run of the request's scope that already answered its request id, if any.

    The consumer asks before queueing for the run lock, so that a duplicate
    is answered even while another run holds it; ``calibrate`` asks again
    under the lock for deliveries that race. The log line carries the
    earlier run's id, the one ``mirt_fit_meta`` knows (this call's run
    never starts, so it has none).
    """
    if not request.request_id:
        return None
    scope = scopes.resolve(settings.scope_key, request.scope)
    try:
        with engine.connect() as conn:
            stored = queries.finished_run_summary(conn, request.request_id, scope, FINISHED)
    except sa.exc.DBAPIError as exc:
        raise unavailable(engine, exc) from exc
    if stored is None:
        return None
    earlier = RunSummary.from_dict(stored)
    earlier.duplicate = True
    RunLog(log, {"run_id": earlier.run_id, "scope": scope.name}).info(
        "request %s was already answered by run %s (%s): not running it again", request.request_id,
        earlier.run_id, earlier.status)
    return earlier


def _steps(run: _Run) -> None:
    s = run.summary
    observations = _load_observations(run)
    if observations.n_obs == 0:
        run.warn("no observations completed between %s and %s (look-back %d days): nothing to calibrate; "
                 "the run is recorded as skipped and no parameters are touched",
                 run.since.isoformat(timespec="seconds"), run.until.isoformat(timespec="seconds"),
                 run.settings.lookback_days)
        _record_end(run, SKIPPED)
        return
    anchors = _load_anchors(run)
    fit = _fit(run, observations)
    constants, fit = _link(run, observations, fit, anchors)
    with run.step("score") as span:
        abilities = score_eap(observations.responses, fit.params, linking=constants,
                              quadrature=Quadrature.normal(run.settings.quadrature_points))
    s.counts["users_scored"] = int(abilities.scored.sum())
    span.set_attribute("users_scored", s.counts["users_scored"])
    run.log.info("scored %d users by EAP on the linked scale (%d with no estimated item left unscored) in %.2fs",
                 s.counts["users_scored"], s.counts["users"] - s.counts["users_scored"], s.durations["score"])
    _write(run, observations, fit, constants, abilities)


def _load_observations(run: _Run) -> queries.Observations:
    s = run.summary
    with run.step("load") as span, _database(run, transaction=True) as conn:
        queries.check_platform_schema(conn)
        observations = queries.load_observations(conn, run.since, run.until, run.settings.max_obs, run.scope)
        span.set_attributes({"observations": observations.n_obs, "users": observations.responses.n_persons,
                             "items": int(observations.question_ids.size)})
    s.counts.update(observations=observations.n_obs, users=observations.responses.n_persons,
                    items=int(observations.question_ids.size))
    s.window.update(first_at=observations.first_at.isoformat() if observations.first_at else None,
                    last_at=observations.last_at.isoformat() if observations.last_at else None)
    s.counts["attempts_in_window"] = observations.attempts_in_window
    capped = (f" (capped at MIRT_MAX_OBS={run.settings.max_obs}: the most recent first answers kept)"
              if observations.capped else "")
    run.log.info("loaded %d observations%s from %d users on %d items (first answers of %d attempts), "
                 "completed %s to %s, in %.2fs", observations.n_obs, capped, s.counts["users"], s.counts["items"],
                 observations.attempts_in_window, s.window["first_at"] or "-", s.window["last_at"] or "-",
                 s.durations["load"])
    return observations


def _load_anchors(run: _Run) -> list[anchor_io.Anchor]:
    with run.step("anchors") as span, _database(run) as conn:
        anchors, skipped = anchor_io.parse_anchors(queries.load_anchor_rows(conn, run.scope))
        span.set_attributes({"anchors": len(anchors), "anchors_skipped": len(skipped)})
    for question_id, reason in skipped.items():
        run.warn("anchor question %d skipped: %s; fix its meta.irt or remove its anchor tag", question_id, reason)
    run.summary.counts["anchors_tagged"] = len(anchors) + len(skipped)
    run.summary.counts["anchors_skipped"] = {str(k): v for k, v in skipped.items()}
    if not anchors:
        run.warn("no anchors found (questions tagged \"anchor\" with parameters in meta.irt): the run goes on "
                 "unlinked (slope 1, intercept 0) and this calibration defines the scale")
    else:
        run.log.info("loaded %d anchors: %s", len(anchors), _id_list([x.question_id for x in anchors]))
    return anchors


def _item_priors(run: _Run, responses) -> Priors:
    """The priors on a and b this run uses: MIRT_ITEM_PRIORS, where ``auto`` means on thin data only."""
    choice = choose_priors(responses, run.settings.model, run.settings.item_priors, run.settings.min_responses)
    run.summary.fit["item_priors"] = {"setting": run.settings.item_priors, "used": choice.used, "why": choice.why}
    return choice.priors


def _fit(run: _Run, observations: queries.Observations) -> ItemCalibration:
    s, settings = run.summary, run.settings
    run.priors = _item_priors(run, observations.responses)
    run.log.info("fitting %s by marginal maximum likelihood (EM, %d quadrature points, tolerance %g), %s (%s)",
                 settings.model, settings.quadrature_points, settings.em_tolerance,
                 "with priors on a and b" if run.priors.on_a_b else "no priors on a and b",
                 s.fit["item_priors"]["why"])
    with run.step("fit") as span:
        fit = estimate_items(observations.responses, settings.model,
                             quadrature=Quadrature.normal(settings.quadrature_points),
                             tolerance=settings.em_tolerance, max_iterations=settings.em_max_iterations,
                             min_responses=settings.min_responses, progress=run.progress, priors=run.priors)
        moving = dict(fit.still_moving)
        fit = fit.hold_back({j: f"not converged: still moving by {v:.2g} a pass after {fit.iterations} EM passes"
                             for j, v in moving.items()})
        span.set_attributes({"model": fit.model, "iterations": fit.iterations, "converged": fit.converged,
                             "items_estimated": int(fit.estimated.sum())})
    with run.step("diagnostics"):
        fit = _diagnose(run, observations, fit)
    qid = observations.question_ids
    excluded, held_back = _count_items(run, qid, fit)
    n_params = _free_parameters(fit)
    s.fit.update({"loglik": fit.loglik, "iterations": fit.iterations, "converged": fit.converged,
                  "max_change": fit.max_change, "n_parameters": n_params, "standard_errors": run.errors.method,
                  "aic": -2 * fit.loglik + 2 * n_params,
                  "bic": -2 * fit.loglik + n_params * math.log(max(fit.n_persons, 1)),
                  "log_posterior": fit.log_posterior,
                  "items_at_bounds": {str(qid[j]): v for j, v in fit.at_bounds.items() if fit.estimated[j]}})
    run.log.info("fitted %s in %.2fs (standard errors and item fit %.2fs): %d EM passes, %s, "
                 "log-likelihood %.3f, %d items estimated",
                 settings.model, s.durations["fit"], s.durations["diagnostics"], fit.iterations,
                 "converged" if fit.converged else f"NOT converged (last change {fit.max_change:.2g})",
                 fit.loglik, s.counts["items_estimated"])
    if not fit.converged:
        run.warn("EM stopped at MIRT_EM_MAX_ITERATIONS=%d before converging (largest last change %.3g); the %d "
                 "items still moving are held back and the others written; raise the cap or loosen "
                 "MIRT_EM_TOLERANCE", settings.em_max_iterations, fit.max_change, len(moving))
    if held_back:
        run.warn("%d items held back, not written, not scored, not linked on: %s; their answers do not pin "
                 "their parameters down: review them (answer key, wording) or wait for more answers",
                 len(held_back), _reasons(held_back))
    if s.fit["items_at_bounds"]:
        run.warn("%d items ended on a bound of their parameters: %s", len(s.fit["items_at_bounds"]),
                 _reasons(s.fit["items_at_bounds"]))
    too_few = [str(qid[j]) for j in fit.excluded if fit.responses_per_item[j] < settings.min_responses]
    if too_few:
        run.log.info("%d items held back until they reach MIRT_MIN_RESPONSES=%d responses: %s", len(too_few),
                     settings.min_responses, _id_list(too_few))
    misfits = {str(qid[j]): f"RMSD {run.rmsd[j]:.3f} above {settings.item_fit_threshold:g}"
               for j in np.flatnonzero(run.rmsd > settings.item_fit_threshold)}
    s.counts["misfitting_items"] = misfits
    if misfits:
        run.warn("%d items misfit (their observed curve departs from the model's): %s", len(misfits),
                 _reasons(misfits))
    one_sided = {k: v for k, v in excluded.items() if k not in held_back and k not in too_few}
    if one_sided:
        run.warn("%d items not estimated: %s", len(one_sided), _reasons(one_sided))
    if not fit.estimated.any():
        raise CalibrationRefused("no item could be estimated from the answers in the window",
                                 "widen MIRT_LOOKBACK_DAYS or raise MIRT_MAX_OBS so that items gather "
                                 f"MIRT_MIN_RESPONSES={settings.min_responses} informative answers")
    return fit


def _count_items(run: _Run, qid: np.ndarray, fit: ItemCalibration) -> tuple[dict, dict]:
    """Record which items ``fit`` estimated, left out and held back (by question id, with why)."""
    excluded = {str(qid[j]): reason for j, reason in fit.excluded.items()}
    held_back = {str(qid[j]): reason for j, reason in fit.held_back.items()}
    run.summary.counts.update(items_estimated=int(fit.estimated.sum()), items_excluded=len(excluded),
                              excluded_items=excluded, items_held_back=len(held_back), held_back_items=held_back)
    return excluded, held_back


def _reasons(by_item: dict[str, str], limit: int = 10) -> str:
    shown = "; ".join(f"{k}: {v}" for k, v in list(by_item.items())[:limit])
    return shown + (f"; ... ({len(by_item) - limit} more)" if len(by_item) > limit else "")


def _diagnose(run: _Run, observations: queries.Observations, fit: ItemCalibration,
              fixed: fipc.FixedCalibration | None = None, anchors: np.ndarray | None = None) -> ItemCalibration:
    """Standard errors and item fit of ``fit``, from one E-step at its estimates.

    After a fixed-parameter calibration (``fixed``, with the ``anchors``
    held), the standard errors are those of that model: the anchors have
    none, and the free items' come from the information over them and the
    population's mean and SD on the old scale. Items whose standard errors
    cannot be computed are held back: a parameter without a standard error
    is not one to write.
    """
    responses = observations.responses
    quadrature = Quadrature.normal(run.settings.quadrature_points)
    final = FinalEStep.at(responses, fit.params, quadrature)
    if fixed is None:
        run.errors = information.standard_errors(responses, fit.params, fit.model, quadrature, run.priors,
                                                 final=final)
    else:
        kept = fit.estimated  # without the items held back after the fixed-parameter calibration
        old_params = ItemParameters(np.where(kept, fixed.params.a, np.nan), np.where(kept, fixed.params.b, np.nan),
                                    fixed.params.c)
        on_old_scale = information.standard_errors(responses, old_params, fit.model, quadrature, run.priors,
                                                   fixed=anchors, population=(fixed.mean, fixed.sd))
        # The fit is kept on the new population's unit scale and carried to the old one by the slope
        # (= the population's SD) when written: store the SEs so that that carries them back exactly.
        run.errors = dataclasses.replace(on_old_scale, a=on_old_scale.a * fixed.sd, b=on_old_scale.b / fixed.sd,
                                         d=np.full(len(fit.params), np.nan))
    run.rmsd = itemfit.rmsd(responses, fit.params, final=final)
    # The evidence behind the worst RMSDs, for the review page.
    curves = itemfit.misfit_curves(final, run.rmsd, run.settings.item_fit_threshold)
    for curve in curves:
        curve["question_id"] = int(observations.question_ids[curve["item"]])
    run.summary.fit["misfit_curves"] = curves
    free = fit.estimated.copy()
    if anchors is not None:
        free[anchors] = False
    singular = free & ~(np.isfinite(run.errors.a) & np.isfinite(run.errors.b))
    return fit.hold_back({int(j): "not identified: the information about its parameters is singular, so it has "
                                  "no standard errors" for j in np.flatnonzero(singular)})


def _free_parameters(fit: ItemCalibration) -> int:
    per_item = {"1PL": 1, "2PL": 2, "3PL": 3}[fit.model]
    n = int(fit.estimated.sum())
    return n + 1 if fit.model == "1PL" and n else n * per_item


def _link(run: _Run, observations: queries.Observations, fit: ItemCalibration,
          anchors: list[anchor_io.Anchor]) -> tuple[linking.LinkingConstants, ItemCalibration]:
    s, settings = run.summary, run.settings
    with run.step("link") as span:
        position = {int(q): j for j, q in enumerate(observations.question_ids)}
        usable = [(x, position[x.question_id]) for x in anchors
                  if x.question_id in position and fit.estimated[position[x.question_id]]]
        constants = linking.IDENTITY
        if usable and len(usable) >= settings.min_anchors:
            constants = _screen_and_link(run, usable, fit)
            if settings.linking_method == linking.FIXED:
                constants, fit = _fixed_parameter_calibration(run, observations, usable, fit, constants)
        elif anchors:
            raise CalibrationRefused(
                f"only {len(usable)} of {len(anchors)} anchors were answered in the window and estimated; "
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
    return constants, fit


def _fixed_parameter_calibration(run: _Run, observations, usable, fit: ItemCalibration,
                                 screened: linking.LinkingConstants):
    """Recalibrate with the kept anchors fixed at their reference values (MWU-MEM), from the linked fit.

    Returns FIPC's constants (where the population sits on the old scale) and
    the calibration with its estimates carried to the N(0, 1) scale, so that
    scoring and writing treat it like any other linked calibration.
    """
    settings = run.settings
    kept = [(x, j) for x, j in usable if str(x.question_id) not in run.summary.counts.get("anchors_dropped", {})]
    positions = np.array([j for _, j in kept])
    quadrature = Quadrature.normal(settings.quadrature_points)
    result = fipc.fixed_parameter_calibration(
        observations.responses, fit.params.on_scale(screened.slope, screened.intercept), positions,
        anchor_io.reference_parameters([x for x, _ in kept]), fit.model,
        population=(screened.intercept, screened.slope), quadrature=quadrature,
        tolerance=settings.em_tolerance, max_iterations=settings.em_max_iterations, priors=run.priors)
    if not result.converged:
        run.warn("fixed-parameter calibration stopped at MIRT_EM_MAX_ITERATIONS=%d before converging; the %d "
                 "items still moving are held back", settings.em_max_iterations, len(result.still_moving))
    run.log.info("fixed-parameter calibration (MWU-MEM, %d anchors fixed): %d EM cycles, population on the old "
                 "scale N(%.4f, %.4f^2); Stocking-Lord on the same anchors gave slope %.4f, intercept %.4f",
                 len(kept), result.iterations, result.mean, result.sd, screened.slope, screened.intercept)
    run.summary.fit["fipc"] = {"iterations": result.iterations, "converged": result.converged,
                               "loglik": result.loglik, "stocking_lord": screened.as_dict()}
    on_unit_scale = result.params.on_scale(1.0 / result.sd, -result.mean / result.sd)
    fit = dataclasses.replace(fit, params=on_unit_scale)
    free = fit.estimated.copy()
    free[positions] = False
    problems = {j: f"not identified: {why} in the fixed-parameter calibration"
                for j, why in unidentified(on_unit_scale, quadrature, fit.model).items() if free[j]}
    problems.update({j: f"not converged: still moving by {v:.2g} a cycle after {result.iterations} fixed-parameter "
                        f"calibration cycles" for j, v in result.still_moving.items()})
    fit = _diagnose(run, observations, fit.hold_back(problems), fixed=result, anchors=positions)
    before = set(run.summary.counts.get("held_back_items", {}))
    _, held_back = _count_items(run, observations.question_ids, fit)
    added = {k: v for k, v in held_back.items() if k not in before}
    if added:
        run.warn("%d items held back after the fixed-parameter calibration, not written: %s", len(added),
                 _reasons(added))
    population_se = run.errors.population or (None, None)
    run.summary.fit["fipc"].update(population_mean_se=population_se[0], population_sd_se=population_se[1])
    run.summary.fit["standard_errors"] = run.errors.method + " of the fixed-parameter calibration"
    return linking.LinkingConstants(linking.FIXED, result.sd, result.mean, len(kept),
                                    slope_se=population_se[1], intercept_se=population_se[0]), fit


def _screen_and_link(run: _Run, usable, fit: ItemCalibration) -> linking.LinkingConstants:
    """Drop drifting anchors, then link on the rest; refuse when the anchors mostly drift."""
    settings = run.settings
    chosen = [x for x, _ in usable]
    positions = np.array([j for _, j in usable])
    reference = anchor_io.reference_parameters(chosen)
    new = fit.params.take(positions)
    reference_b_se, reference_a_se = anchor_io.reference_errors(chosen)
    errors = linking.AnchorErrors(new_b=run.errors.b[positions], new_a=run.errors.a[positions],
                                  reference_b=reference_b_se, reference_a=reference_a_se)
    # FIPC fixes the anchors that survive a Stocking-Lord screen.
    method = linking.STOCKING_LORD if settings.linking_method == linking.FIXED else settings.linking_method
    try:
        screen = linking.screen_drift(reference, new, method, settings.drift_threshold, errors)
    except linking.LinkingError as problem:
        raise CalibrationRefused(f"the anchors cannot be linked on: {problem}",
                                 "check the anchors' reference parameters in question.meta->'irt'") from None
    dropped = {str(usable[i][0].question_id): reason for i, reason in screen.dropped.items()}
    run.summary.counts["anchors_dropped"] = dropped
    placed = new.on_scale(screen.constants.slope, screen.constants.intercept)
    run.anchor_table = [
        {"question_id": x.question_id,
         "reference": {"a": x.a, "b": x.b, "c": x.c, "model": x.model, "a_se": x.a_se, "b_se": x.b_se},
         "new": {"a": float(new.a[i]), "b": float(new.b[i]), "c": float(new.c[i])},
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
    return screen.constants


def _write(run: _Run, observations, fit: ItemCalibration, constants, abilities) -> None:
    s = run.summary
    fitted_at = datetime.now(timezone.utc)
    linked = fit.params.on_scale(constants.slope, constants.intercept)
    estimated = np.flatnonzero(fit.estimated)
    params = [_item_params(linked, run.errors, run.rmsd, constants.slope, j, fit) for j in estimated]
    scored = np.flatnonzero(abilities.scored)
    with run.step("write") as span:
        with _database(run, transaction=True) as conn:
            if not queries.fence_holds(conn, run.fence_token, run.scope):
                raise RunLockLost("the run lock was lost while the run went on (its database connection dropped) "
                                  "and another run has taken it since; nothing was written",
                                  "nothing to do: the request is retried")
            if run.request.dry_run:
                s.rows_upserted = {"items": 0, "abilities": 0}
            else:
                s.rows_upserted = {
                    "items": queries.write_item_params(conn, run.run_id, fitted_at, fit.model, run.scope,
                                                       observations.question_ids[estimated], params),
                    "abilities": queries.write_abilities(conn, run.run_id, fitted_at, run.scope,
                                                         [observations.student_ids[i] for i in scored],
                                                         abilities.theta[scored], abilities.se[scored]),
                }
            s.status = SUCCEEDED
            queries.finish_run(conn, run.run_id, SUCCEEDED, run.model_spec(), s.fit, s.as_dict(),
                               fitted_at=fitted_at)
        span.set_attributes({"items": s.rows_upserted["items"], "abilities": s.rows_upserted["abilities"]})
    run.log.info("%s %d item parameters and %d abilities in one transaction in %.2fs",
                 "dry run: would have upserted" if run.request.dry_run else "upserted",
                 len(estimated) if run.request.dry_run else s.rows_upserted["items"],
                 len(scored) if run.request.dry_run else s.rows_upserted["abilities"], s.durations["write"])


def _item_params(params, errors: information.ItemStandardErrors, run_rmsd: np.ndarray, slope: float, j: int,
                 fit: ItemCalibration) -> dict:
    """One item's row of mirt_item_params.params, on the linked scale (standard errors too)."""
    out = {"a": float(params.a[j]), "b": float(params.b[j]), "c": float(params.c[j]),
           "a_se": _finite(errors.a[j] / slope), "b_se": _finite(errors.b[j] * slope),
           "n_responses": int(fit.responses_per_item[j]), "rmsd": _finite(run_rmsd[j])}
    if fit.model == "3PL":
        out["c_se"] = _finite(errors.c[j])
    return out


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# --- database plumbing -----------------------------------------------------------------------

@contextlib.contextmanager
def _database(run: _Run, transaction: bool = False) -> Iterator[sa.Connection]:
    """A connection (in a transaction when asked); connection failures become ``DatabaseUnavailable``, a refused
    login ``DatabaseLoginRefused``."""
    try:
        with (run.engine.begin() if transaction else run.engine.connect()) as conn:
            yield conn
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise unavailable(run.engine, exc) from exc
    except sa.exc.DBAPIError as exc:
        problem = unavailable(run.engine, exc)  # a refused login arrives as pg8000's ProgrammingError
        if exc.connection_invalidated or isinstance(problem, DatabaseLoginRefused):
            raise problem from exc
        raise


@contextlib.contextmanager
def _run_lock(engine: sa.Engine, run: _Run) -> Iterator[None]:
    """Hold the scope's run lock on a connection of its own for the whole run, and its fencing token (``_write``)."""
    try:
        conn = engine.connect()
    except Exception as exc:
        raise unavailable(engine, exc) from exc
    try:
        if not queries.try_run_lock(conn, run.scope):
            raise RunLockBusy(f"another calibration run of {run.scope.label} holds its run lock",
                              "wait for it to finish; the request is retried later")
        conn.commit()
        run.fence_token = queries.take_fence(conn, run.run_id, run.scope)
        conn.commit()
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                queries.release_run_lock(conn, run.scope)
                conn.commit()
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _record_start(run: _Run) -> None:
    with _database(run, transaction=True) as conn:
        for stale in queries.abandon_stale_runs(conn, run.scope):
            run.warn("run %s was left 'running' by a process that ended, or lost its database connection or the "
                     "run lock, mid-run; recorded as abandoned", stale)
        queries.insert_run(conn, run.run_id, run.request.request_id, run.scope, run.model_spec())


def _record_end(run: _Run, status: str, error: str | None = None) -> None:
    """Record how the run ended (succeeded runs are recorded inside their write transaction)."""
    s = run.summary
    s.status, s.error = status, error
    with _database(run, transaction=True) as conn:
        queries.finish_run(conn, run.run_id, status, run.model_spec(), s.fit, s.as_dict(), error=error)


def _store_final_summary(run: _Run) -> None:
    """The summary with every duration, as a duplicate request will be answered with it."""
    try:
        with _database(run, transaction=True) as conn:
            queries.store_summary(conn, run.run_id, run.summary.as_dict())
    except ServiceError as problem:
        run.log.warning("could not store the final summary of run %s (%s); the run itself is recorded",
                        run.run_id, problem)


def _record_failure(run: _Run, exc: Exception) -> None:
    """A transient failure abandons the run and raises again (retry later); any other fails it."""
    if isinstance(exc, ServiceError) and exc.transient:
        with contextlib.suppress(ServiceError):
            _record_end(run, ABANDONED, str(exc))
        raise exc
    if not isinstance(exc, ServiceError):
        run.log.debug("run failed", exc_info=exc)
    if isinstance(exc, (np.linalg.LinAlgError, ArithmeticError)):
        step = next(reversed(run.summary.durations), "start")
        exc = CalibrationRefused(f"a numerical problem the calibration could not handle in the {step} step "
                                 f"({type(exc).__name__}: {exc})",
                                 "try MIRT_ITEM_PRIORS=true or a wider MIRT_LOOKBACK_DAYS, and report it with "
                                 "LOG_LEVEL=debug")
    _record_end(run, FAILED, str(exc) if isinstance(exc, ServiceError) else f"{type(exc).__name__}: {exc}")


def _log_outcome(run: _Run) -> None:
    s = run.summary
    total = s.durations.get("total", 0.0)
    if s.status == SUCCEEDED:
        run.log.info("calibration run %s succeeded in %.2fs", s.run_id, total)
    elif s.status == SKIPPED:
        run.log.warning("calibration run %s skipped in %.2fs: no observations in the window", s.run_id, total)
    elif s.status == ABANDONED:
        run.log.warning("calibration run %s abandoned after %.2fs: %s; nothing was written and the request "
                        "will be retried", s.run_id, total, s.error)
    else:
        run.log.error("calibration run %s failed after %.2fs: %s", s.run_id, total, s.error)


def _id_list(ids: list[int], limit: int = 20) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")
