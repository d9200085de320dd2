"""The two events and how they travel: CloudEvents 1.0 in binary mode on Pub/Sub.

The JSON data is the message body; the CloudEvents context travels in the
message attributes (``ce-id``, ``ce-type``, ``ce-source``, ``ce-specversion``,
``ce-time``, ``content-type``), next to the W3C ``traceparent`` when a trace
is carried. Every event is checked against its JSON Schema in ``schemas/``
before it is published, and every request after it is received.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Mapping

from jsonschema import Draft202012Validator, FormatChecker

from ..calibration import FAILED, SUCCEEDED, CalibrationRequest, RunSummary, export_command
from ..scope import valid_name as valid_scope_name

SCHEMA_VERSION = "v1"
REQUESTED_TYPE = "com.exam-prep.calibration.requested.v1"
COMPLETED_TYPE = "com.exam-prep.calibration.completed.v1"
SOURCE = "//irt-calibration/consumer"
#: Request overrides that become settings of the run (dry_run is not a setting).
SETTING_OVERRIDES = ("model", "lookback_days", "max_obs", "linking_method", "scoring")


class InvalidMessage(ValueError):
    """A message that can never become a run: it is acked, recorded and dead-lettered, never retried."""


#: A request body is a few hundred bytes; anything far larger is not one.
MAX_BODY_BYTES = 64 * 1024
#: How long a rejection reason may grow (schema messages quote the offending value whole).
MAX_REASON_CHARS = 500


def bounded(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def _unstorable(value: object, path: str = "(body)") -> str | None:
    """Where ``value`` holds a string PostgreSQL cannot store (NUL) or UTF-8 cannot encode (a lone surrogate)."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path} contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path} contains an unpaired surrogate, which is not text"
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _unstorable(key, f"{path} key") or _unstorable(item, f"{path}/{key}")
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable(item, f"{path}/{index}")
            if found:
                return found
    return None


@lru_cache(maxsize=None)
def validator(event: str) -> Draft202012Validator:
    text = resources.files("consumer.schemas").joinpath(SCHEMA_VERSION, f"{event}.schema.json").read_text()
    return Draft202012Validator(json.loads(text), format_checker=FormatChecker())


def _problems(event: str, data: object) -> str:
    errors = sorted(validator(event).iter_errors(data), key=lambda e: list(e.path))
    return "; ".join(f"{'/'.join(map(str, e.path)) or '(body)'}: {e.message}" for e in errors[:5])


def parse_request(data: bytes, attributes: Mapping[str, str], message_id: str) -> CalibrationRequest:
    """The calibration request a message carries, or ``InvalidMessage`` saying what is wrong with it."""
    ce_type = attributes.get("ce-type")
    if ce_type is not None and ce_type != REQUESTED_TYPE:
        raise InvalidMessage(f"ce-type is {ce_type!r}, expected {REQUESTED_TYPE!r}")
    if len(data) > MAX_BODY_BYTES:
        raise InvalidMessage(f"body is {len(data)} bytes, more than a request's {MAX_BODY_BYTES}")
    try:
        body = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, ValueError) as problem:  # JSONDecodeError, and integers past Python's digit limit
        raise InvalidMessage(bounded(f"body is not JSON: {problem}")) from None
    except RecursionError:
        raise InvalidMessage("body is not a request: its JSON nests too deeply") from None
    unstorable = _unstorable(body)
    if unstorable:
        raise InvalidMessage(unstorable)
    problems = _problems("calibration-requested", body)
    if problems:
        raise InvalidMessage(f"body does not match calibration-requested {SCHEMA_VERSION}: {problems}")
    overrides = body.get("overrides", {})
    return CalibrationRequest(
        request_id=body.get("request_id") or message_id,
        requested_by=body.get("requested_by") or attributes.get("ce-source"),
        overrides={k: overrides[k] for k in SETTING_OVERRIDES if k in overrides},
        dry_run=bool(overrides.get("dry_run", False)),
        scope=body.get("scope"),
        fan_out=body.get("fan_out"),
        mode=body.get("mode"),
    )


def request_body(request_id: str | None = None, requested_by: str | None = None, *, scope: str | None = None,
                 fan_out: Mapping | None = None, mode: str | None = None, **overrides) -> dict:
    """The data of a calibration-requested event (checked against its schema)."""
    body: dict = {}
    if request_id:
        body["request_id"] = request_id
    if requested_by:
        body["requested_by"] = requested_by
    if scope:
        body["scope"] = scope
    if fan_out:
        body["fan_out"] = dict(fan_out)
    if mode:
        body["mode"] = mode
    chosen = {k: v for k, v in overrides.items() if v not in (None, False)}
    if chosen:
        body["overrides"] = chosen
    problems = _problems("calibration-requested", body)
    if problems:
        raise InvalidMessage(f"request does not match calibration-requested {SCHEMA_VERSION}: {problems}")
    return body


def completed_body(summary: RunSummary, *, rejected: bool = False) -> dict:
    """The data of the calibration-completed event for ``summary`` (checked against its schema).

    ``rejected`` marks the answer to a request the consumer rejected before
    any run (``rejected_summary``).
    """
    counts = summary.counts
    body = {
        "run_id": summary.run_id,
        "request_id": summary.request_id or summary.run_id,
        "status": summary.status,
        "model": summary.model,
        "counts": {
            "observations": int(counts.get("observations", 0)),
            "users": int(counts.get("users", 0)),
            "items": int(counts.get("items", 0)),
            "items_estimated": int(counts.get("items_estimated", 0)),
            "anchors": int(counts.get("anchors", 0)),
        },
        "linking_constants": dict(summary.linking_constants),
        "durations": dict(summary.durations),
        "error": summary.error if summary.status == "failed" else None,
        "dry_run": bool(summary.dry_run),
    }
    # Only a scoped run's event has these: a whole-bank run's event stays as it was before scopes.
    if summary.scope:
        body["scope"] = summary.scope
    if summary.fan_out:
        body["fan_out"] = dict(summary.fan_out)
    body.update(_bank_fields(summary))
    # A run that wrote current parameters: the command that exports them for an adaptive test.
    if summary.status == SUCCEEDED and not summary.dry_run and body.get("mode") != "recalibration":
        body["export"] = {"command": export_command(summary.scope), "formats": ["csv", "json"]}
    # Only a rejection's event has it: a run's event stays as it was.
    if rejected:
        body["rejected"] = True
    problems = _problems("calibration-completed", body)
    if problems:
        raise ValueError(f"refusing to publish an invalid calibration-completed event: {problems}")
    return body


def _bank_fields(summary: RunSummary) -> dict:
    """The optional fields of a run of a scope with a bank: its mode, the population, what it did to the bank."""
    bank = summary.fit.get("bank") if isinstance(summary.fit, dict) else None
    if not bank:
        return {}
    counts = summary.counts
    if bank.get("mode") == "recalibration":
        impact = bank.get("impact", {})
        return {"mode": "recalibration",
                "bank": {"students_moved_more_than_se": int(impact.get("moved_more_than_se", 0)),
                         "students_scored": int(impact.get("students_scored", 0))}}
    population = {k: v for k, v in bank.get("population", {}).items() if v is not None}
    return {"mode": "bank", "population": population,
            "bank": {"items_promoted": int(counts.get("items_promoted", 0)),
                     "items_flagged": int(counts.get("items_flagged", 0)),
                     "items_suspended": int(counts.get("items_suspended", 0)),
                     "items_held_back": int(counts.get("items_held_back", 0))}}


def rejected_summary(request: CalibrationRequest, reason: str, model: str) -> RunSummary:
    """What answers a request rejected before any run: failed, with the reason as its error, and nothing counted.

    Its run id is new and names no run in mirt_fit_meta (there was none); a
    subscriber that only knows succeeded, skipped and failed sees a failed
    request with its reason, and ``publish --wait`` says why and stops.
    """
    return RunSummary(run_id=str(uuid.uuid4()), request_id=request.request_id, status=FAILED, model=model,
                      durations={"total": 0.0}, error=reason, dry_run=request.dry_run,
                      scope=request.scope if request.scope and valid_scope_name(request.scope) else None,
                      fan_out=dict(request.fan_out) if request.fan_out else None)


def cloudevent_attributes(ce_type: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Binary-mode CloudEvents context attributes for a new event."""
    attributes = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-type": ce_type,
        "ce-source": SOURCE,
        "ce-time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "content-type": "application/json",
    }
    attributes.update(extra or {})
    return attributes


def encode(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
