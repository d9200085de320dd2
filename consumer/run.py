"""One calibration run: SPEC's steps in order, each a short call.

``calibrate`` is what both the command line and the Pub/Sub consumer call:
a request (who asked, which scope, overrides) in, a ``RunSummary`` out. A run
calibrates one scope (``consumer.scope``: an item bank, or the whole bank):
it holds that scope's run lock for its whole length, records the run in
``mirt_fit_meta`` before it starts and when it ends (``db.ledger``), reads
and writes that scope's rows only, and writes the results in one
transaction, so a run lands whole or not at all. The steps themselves live
in ``consumer.steps``; each returns a value the next one takes.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Callable

import numpy as np
import sqlalchemy as sa

from . import scope as scopes
from .calibration import (ABANDONED, FAILED, FINISHED, SKIPPED, SUCCEEDED, CalibrationRequest, RunAbandoned,
                          RunLog, RunSummary)
from .db import ledger
from .errors import CalibrationRefused, ServiceError
from .irt.estimate import Progress
from .settings import Settings
from .steps import (Anchors, RunContext, diagnose, fit, link_scale, load_anchors, load_observations, population,
                    report_fit, score, write)
from .steps.dif import screen_dif
from .steps.bank import RECALIBRATION, hold_scale, load_bank, recalibration_impact
from .steps.rapid import leave_out_rapid_guesses

log = logging.getLogger("consumer.run")

__all__ = ["ABANDONED", "FAILED", "FINISHED", "SKIPPED", "SUCCEEDED", "CalibrationRequest", "RunAbandoned",
           "RunLog", "RunSummary", "calibrate", "earlier_answer"]


def calibrate(engine: sa.Engine, settings: Settings, request: CalibrationRequest | None = None,
              *, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              once_per_request: bool = False) -> RunSummary:
    """Run one calibration and return its summary.

    A run that cannot start raises: ``ConfigError`` for bad overrides,
    a scope the settings do not make (``consumer.scope.resolve``) or no
    question has (``UnknownScope``),
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
    run = RunContext(engine, settings, request, should_stop or (lambda: False), progress)
    scopes.require_in_bank(engine, run.scope)  # a typo is no quiet week: UnknownScope, nothing recorded
    started = time.perf_counter()
    with ledger.run_lock(engine, run.scope, run.run_id) as fence_token:
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
                _steps(run, fence_token)
        except RunAbandoned as reason:
            _record_end(run, ABANDONED, str(reason))
        except Exception as exc:
            _record_failure(run, exc)
        finally:
            run.summary.durations["total"] = round(time.perf_counter() - started, 3)
        problem = ledger.store_summary(engine, run.run_id, run.summary.as_dict())
        if problem is not None:
            run.log.warning("could not store the final summary of run %s (%s); the run itself is recorded",
                            run.run_id, problem)
    _log_outcome(run)
    return run.summary


def _steps(run: RunContext, fence_token: int) -> None:
    """SPEC's steps: load (rapid guesses left out, with MIRT_RESPONSE_TIME_COLUMN), anchors (or the scope's bank),
    fit (with its diagnostics and, with a group column, the DIF screen), link (or hold the bank's scale), score
    (and the population's plausible values), write. A recalibration of a bank scores only to tell its impact, and
    writes history only."""
    observations = leave_out_rapid_guesses(run, load_observations(run))
    if observations.n_obs == 0:
        run.warn("no observations completed between %s and %s (look-back %d days): nothing to calibrate; "
                 "the run is recorded as skipped and no parameters are touched",
                 run.since.isoformat(timespec="seconds"), run.until.isoformat(timespec="seconds"),
                 run.settings.lookback_days)
        _record_end(run, SKIPPED)
        return
    bank = load_bank(run)
    recalibrating = run.request.mode == RECALIBRATION
    if recalibrating and bank is None:
        raise CalibrationRefused(f"no item bank has been adopted for {run.scope.label}: there is nothing to recalibrate",
                                 "adopt one first (python -m consumer bank adopt), or run an ordinary calibration")
    anchors = load_anchors(run) if bank is None else Anchors(bank.as_anchors())
    calibration = fit(run, observations)
    with run.step("diagnostics"):
        diagnostics = diagnose(run, observations, calibration)
    report_fit(run, observations, diagnostics)
    dif = screen_dif(run, observations, diagnostics)  # None unless MIRT_DIF_GROUP_COLUMN is set
    if bank is not None and not recalibrating:
        link = hold_scale(run, observations, diagnostics, bank)
    else:
        link = link_scale(run, observations, diagnostics, anchors)
    if recalibrating:
        recalibration_impact(run, observations, link, bank)
        write(run, fence_token, observations, link, None, dif=dif)
    else:
        scores = score(run, observations, link)
        write(run, fence_token, observations, link, scores, population(run, observations, link), dif=dif)


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
    stored = ledger.answered(engine, request.request_id, scope, FINISHED)
    if stored is None:
        return None
    earlier = RunSummary.from_dict(stored)
    earlier.duplicate = True
    RunLog(log, {"run_id": earlier.run_id, "scope": scope.name}).info(
        "request %s was already answered by run %s (%s): not running it again", request.request_id,
        earlier.run_id, earlier.status)
    return earlier


# --- the run's record ----------------------------------------------------------------------------

def _record_start(run: RunContext) -> None:
    stale = ledger.record_start(run.engine, run.run_id, run.request.request_id, run.scope, run.model_spec())
    for run_id in stale:
        run.warn("run %s was left 'running' by a process that ended, or lost its database connection or the "
                 "run lock, mid-run; recorded as abandoned", run_id)


def _record_end(run: RunContext, status: str, error: str | None = None) -> None:
    """Record how the run ended (succeeded runs are recorded inside their write transaction)."""
    s = run.summary
    s.status, s.error = status, error
    ledger.record_end(run.engine, run.run_id, status, run.model_spec(), s.fit, s.as_dict(), error)


def _record_failure(run: RunContext, exc: Exception) -> None:
    """A transient failure abandons the run and raises again (retry later); any other fails it."""
    if isinstance(exc, ServiceError) and exc.transient:
        try:
            _record_end(run, ABANDONED, str(exc))
        except ServiceError:
            pass
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


def _log_outcome(run: RunContext) -> None:
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
