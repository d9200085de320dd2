"""What every step of a run is given: its settings, scope, window and quadrature, and the run's story.

A ``RunContext`` holds nothing a step computes for another: the data flow
from step to step as return values. What it holds is fixed when the run
starts (the settings with the request's overrides, the scope, the window,
the quadrature grid), plus the run's story as the log and the summary tell
it (``summary``, ``anchor_table``: written once per fact, read only to
record the run).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

import numpy as np
import sqlalchemy as sa
from opentelemetry import trace

from .. import scope as scopes
from ..calibration import CalibrationRequest, RunAbandoned, RunLog, RunSummary
from ..irt.estimate import Progress
from ..irt.quadrature import Quadrature
from ..settings import Settings

log = logging.getLogger("consumer.run")
tracer = trace.get_tracer("consumer.run")


@dataclass
class RunContext:
    """One run's fixed inputs and its story (see the module's docstring)."""

    engine: sa.Engine
    settings: Settings
    request: CalibrationRequest
    should_stop: Callable[[], bool] = lambda: False
    on_progress: Progress | None = None
    run_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        self.scope = scopes.resolve(self.settings.scope_key, self.request.scope)
        self.until = self.request.as_of or datetime.now(timezone.utc)
        self.since = self.until - timedelta(days=self.settings.lookback_days)
        self.quadrature = Quadrature.normal(self.settings.quadrature_points)
        self.summary = RunSummary(run_id=str(self.run_id), request_id=self.request.request_id,
                                  model=self.settings.model, dry_run=self.request.dry_run,
                                  scope=self.scope.name or None,
                                  fan_out=dict(self.request.fan_out) if self.request.fan_out else None)
        self.summary.window = {"since": self.since.isoformat(), "until": self.until.isoformat()}
        self.log = RunLog(log, {"run_id": str(self.run_id), "scope": self.scope.name})
        #: Per anchor used for linking: reference, new (calibration scale) and linked parameters.
        self.anchor_table: list[dict] = []

    def warn(self, message: str, *args) -> None:
        """A warning of the run: logged, and kept in its summary."""
        text = message % args if args else message
        self.summary.warnings.append(text)
        self.log.warning(text)

    def checkpoint(self) -> None:
        """Give the run up here if the process is shutting down (nothing has been written yet)."""
        if self.should_stop():
            raise self.abandoned()

    @staticmethod
    def abandoned() -> RunAbandoned:
        return RunAbandoned("the consumer is shutting down; the run was given up before writing")

    def progress(self, iteration: int, loglik: float, change: float) -> None:
        """The EM's progress callback: a shutdown checkpoint, then the caller's own callback."""
        self.checkpoint()
        if self.on_progress is not None:
            self.on_progress(iteration, loglik, change)

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
        """The run's ``mirt_fit_meta.model_spec``: what was fitted on what, with which settings, as far as it got."""
        s = self.summary
        spec = {
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
        dif = s.fit.get("dif")
        if dif is not None:  # only with MIRT_DIF_GROUP_COLUMN: the flagged items by focal group, with why
            spec["dif_flagged_items"] = {c["focal"]: {str(f["question_id"]): f["why"] for f in c["flagged"]}
                                         for c in dif.get("comparisons", [])}
        return spec


def id_list(ids: list, limit: int = 20) -> str:
    """Ids for a log line: the first ``limit``, then how many more."""
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def reasons(by_item: dict[str, str], limit: int = 10) -> str:
    """Items with why, for a log line: the first ``limit``, then how many more."""
    shown = "; ".join(f"{k}: {v}" for k, v in list(by_item.items())[:limit])
    return shown + (f"; ... ({len(by_item) - limit} more)" if len(by_item) > limit else "")


def finite(value: float) -> float | None:
    """A number as it is stored: None for NaN or infinity."""
    return float(value) if np.isfinite(value) else None
