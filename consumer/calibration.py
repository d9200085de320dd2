"""What a calibration run is asked and what it answers: the request, its status and its summary.

These are the types the command line, the bus and the run share. They are
plain data with no numerical or database dependency, so that the bus can
parse and publish events without importing numpy, SQLAlchemy or the
numerical core.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Mapping

SUCCEEDED, SKIPPED, FAILED, ABANDONED = "succeeded", "skipped", "failed", "abandoned"
#: A request with a run in one of these states has been answered and is not run again.
FINISHED = (SUCCEEDED, SKIPPED, FAILED)

#: The constants of a run that linked nothing (``irt.linking.IDENTITY``, as it is stored).
UNLINKED_CONSTANTS = {"method": "none", "slope": 1.0, "intercept": 0.0, "n_anchors": 0,
                      "slope_se": None, "intercept_se": None}


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
    #: ``recalibration`` asks a scope with a bank for a full free calibration linked onto it, which changes
    #: the bank only when an operator accepts it; None is the scope's usual run.
    mode: str | None = None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["overrides"] = dict(self.overrides)
        out["as_of"] = self.as_of.isoformat() if self.as_of else None
        out["fan_out"] = dict(self.fan_out) if self.fan_out else None
        return out


@dataclass
class RunSummary:
    """What a run did, as the log, the run record, ``--json`` and the completed event tell it.

    The run fills it in as its steps go (counts, durations, warnings): it is
    the run's story, written once per fact, never read back by a later step.
    """

    run_id: str
    request_id: str | None
    status: str = "running"
    model: str = ""
    counts: dict = field(default_factory=dict)
    linking_constants: dict = field(default_factory=lambda: dict(UNLINKED_CONSTANTS))
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


def export_command(scope: str | None, fmt: str = "json") -> str:
    """The command line that writes a scope's item bank for an adaptive test (``consumer.export``)."""
    return "python -m consumer export" + (f" --scope {shlex.quote(scope)}" if scope else "") + f" --format {fmt}"


class RunLog(logging.LoggerAdapter):
    """A run's log lines: each carries the run id and, when the run calibrates a scope, names it."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return (f"[{self.extra['scope']}] {msg}" if self.extra["scope"] else msg), kwargs
