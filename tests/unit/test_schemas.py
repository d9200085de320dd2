"""The event contracts: every example validates, and what subscribers rely on is enforced."""

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "v1"


def validator(event: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{event}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


@pytest.mark.parametrize("example", sorted((SCHEMAS / "examples").glob("*.json")), ids=lambda p: p.name)
def test_every_example_validates_against_its_schema(example):
    event = example.name.split(".")[0]
    validator(event).validate(json.loads(example.read_text()))


def test_a_failed_completion_must_say_why_and_a_success_must_not_carry_an_error():
    check = validator("calibration-completed")
    failed = json.loads((SCHEMAS / "examples" / "calibration-completed.failed.json").read_text())
    assert not list(check.iter_errors(failed))
    assert list(check.iter_errors({**failed, "error": None}))
    succeeded = json.loads((SCHEMAS / "examples" / "calibration-completed.succeeded.json").read_text())
    assert list(check.iter_errors({**succeeded, "error": "oops"}))


def test_a_rejected_request_is_answered_as_a_failed_one_that_says_why():
    """Subscribers that know only succeeded, skipped and failed see a failed request and its reason."""
    check = validator("calibration-completed")
    rejected = json.loads((SCHEMAS / "examples" / "calibration-completed.rejected.json").read_text())
    assert rejected["status"] == "failed" and rejected["error"]
    assert list(check.iter_errors({**rejected, "status": "skipped", "error": None}))
    assert list(check.iter_errors({**rejected, "rejected": False}))
    failed = json.loads((SCHEMAS / "examples" / "calibration-completed.failed.json").read_text())
    assert "rejected" not in failed and not list(check.iter_errors(failed))


@pytest.mark.parametrize("data", [
    {"overrides": {"lookback_days": -3}},
    {"overrides": {"model": "4PL"}},
    {"overrides": {"max_obs": "lots"}},
    {"overrides": {"unknown": 1}},
    {"request_id": ""},
    {"scope": ""},
    {"scope": "math\u0000"},
    {"scope": "x" * 101},
    {"scope": "math", "fan_out": {"parent_request_id": "weekly"}},
    [],
])
def test_bad_requests_are_rejected(data):
    assert list(validator("calibration-requested").iter_errors(data))


def test_every_message_valid_before_scopes_still_is_and_means_the_same():
    """Schema v1 stays backward compatible: the old examples parse to the same request, with no scope."""
    from consumer.bus.events import parse_request
    for name in ("calibration-requested.weekly.json", "calibration-requested.ad-hoc.json"):
        body = json.loads((SCHEMAS / "examples" / name).read_text())
        request = parse_request(json.dumps(body).encode(), {}, "message-1")
        assert request.scope is None and request.fan_out is None
        assert request.request_id == body.get("request_id", "message-1")


def test_a_completed_event_may_name_the_export_command_and_nothing_else_there():
    check = validator("calibration-completed")
    succeeded = json.loads((SCHEMAS / "examples" / "calibration-completed.succeeded.json").read_text())
    assert succeeded["export"]["command"].startswith("python -m consumer export")
    assert not list(check.iter_errors({k: v for k, v in succeeded.items() if k != "export"}))  # optional
    assert list(check.iter_errors({**succeeded, "export": {}}))
    assert list(check.iter_errors({**succeeded, "export": {"command": ""}}))
    assert list(check.iter_errors({**succeeded, "export": {"command": "x", "formats": ["xlsx"]}}))
    assert list(check.iter_errors({**succeeded, "export": {"command": "x", "path": "/tmp/bank.csv"}}))


def test_the_event_of_a_run_that_wrote_parameters_names_the_command_that_exports_them():
    """The command in the event is one the command line takes, for the run's scope; dry runs and failures have none."""
    from consumer.__main__ import build_parser
    from consumer.bus.events import completed_body
    from consumer.calibration import RunSummary
    summary = RunSummary(run_id="b915a94c-bbc7-41bb-9a9c-e86542597299", request_id="r", status="succeeded",
                         model="2PL", durations={"total": 1.0}, scope="math and more")
    command = completed_body(summary)["export"]["command"]
    import shlex
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "consumer"]
    args = build_parser().parse_args(words[3:])
    assert args.command == "export" and args.scope == "math and more" and args.format == "json"
    assert "export" not in completed_body(RunSummary(**{**summary.__dict__, "dry_run": True}))
    failed = RunSummary(**{**summary.__dict__, "status": "failed", "error": "boom"})
    assert "export" not in completed_body(failed)
