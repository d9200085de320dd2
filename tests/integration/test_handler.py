"""The request handler, case by case: what a run raises or returns, and what becomes of the message.

Each row is one way a run can end (or fail to start): the outcome the
handler gives the message (ack, nack, defer) or the exception it lets the
subscriber turn into a nack, what it publishes (calibration-completed, a
rejection's answer, nothing), and whether the message is dead-lettered and
recorded in ``mirt_rejected_message``. The run itself is replaced by a
function that raises or returns what the row says; the database is the
test PostgreSQL, and the publisher a recorder.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from consumer.bus import events
from consumer.bus import handler as handler_module
from consumer.bus.handler import Delivery, Outcome, RequestHandler
from consumer.db import queries
from consumer.errors import (CalibrationRefused, ConfigError, DatabaseLoginRefused, DatabaseTLSMismatch,
                             DatabaseUnavailable, PlatformSchemaError, RunLockBusy, RunLockLost, UnknownScope)
from consumer.run import RunSummary
from consumer.settings import Settings

from tests.support.publisher import RecordingPublisher

RUN_ID = "00000000-0000-0000-0000-0000000000aa"


def summary(status: str, duplicate: bool = False, error: str | None = None) -> RunSummary:
    return RunSummary(run_id=RUN_ID, request_id="r-1", status=status, model="2PL", durations={"total": 1.0},
                      error=error, duplicate=duplicate)


@dataclass(frozen=True)
class Case:
    """One way a run ends: what ``calibrate`` does, and what the handler must make of it."""

    run: object  # an exception to raise, or the summary to return
    outcome: Outcome | type  # or the exception the handler lets through (the subscriber nacks it)
    published: str | None  # the completed event's status, "rejected", or None for nothing published
    dead_lettered: bool = False
    recorded: bool = False


CASES = {
    "succeeded": Case(summary("succeeded"), Outcome.ACK, "succeeded"),
    "skipped (a quiet week)": Case(summary("skipped"), Outcome.ACK, "skipped"),
    "failed (recorded by the run)": Case(summary("failed", error="too few anchors"), Outcome.ACK, "failed"),
    "already answered (a duplicate)": Case(summary("succeeded", duplicate=True), Outcome.ACK, "succeeded"),
    "abandoned at shutdown": Case(summary("abandoned", error="shutting down"), Outcome.NACK, None),
    "a bad setting or override": Case(ConfigError("request override max_obs must be at least 100"), Outcome.ACK,
                                      "rejected", dead_lettered=True, recorded=True),
    "a scope no question has": Case(UnknownScope("scope 'nosuchscope' is not in the bank"), Outcome.ACK,
                                    "rejected", dead_lettered=True, recorded=True),
    "the login refused": Case(DatabaseLoginRefused("the database refused the service's login"), Outcome.ACK,
                              "rejected", dead_lettered=True, recorded=False),
    "TLS the server does not speak": Case(DatabaseTLSMismatch("sslmode=require, and the server has no TLS"),
                                          Outcome.ACK, "rejected", dead_lettered=True, recorded=False),
    "another replica on the scope": Case(RunLockBusy("another calibration run holds its run lock"), Outcome.DEFER,
                                         None),
    "the run lock lost": Case(RunLockLost("the run lock was lost"), Outcome.NACK, None),
    "the database unreachable": Case(DatabaseUnavailable("cannot reach the database"), Outcome.NACK, None),
    "the platform's tables wrong": Case(PlatformSchemaError("table attempt is missing"), PlatformSchemaError, None),
    "a refusal raised, not recorded": Case(CalibrationRefused("anchors mostly drift"), CalibrationRefused, None),
    "a bug": Case(ZeroDivisionError("division by zero"), ZeroDivisionError, None),
}


@pytest.fixture
def handler_for(engine, database_url, monkeypatch):
    """A handler on the test database whose run does what ``run`` says (raise it, or return it)."""

    def make(run, environ: dict | None = None, publisher: RecordingPublisher | None = None) -> RequestHandler:
        def calibrate(engine, settings, request, **kwargs):
            if isinstance(run, BaseException):
                raise run
            return run

        monkeypatch.setattr(handler_module, "calibrate", calibrate)
        settings = Settings.load({"DATABASE_URL": database_url, "MIRT_DEAD_LETTER_TOPIC": "dead", **(environ or {})})
        return RequestHandler(engine, settings, publisher or RecordingPublisher())

    return make


def rejected_messages(engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT message_id, reason FROM mirt_rejected_message"))]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_way_a_run_ends_gives_its_outcome_and_its_event(case, handler_for, engine):
    handler = handler_for(case.run)
    delivery = Delivery("m-1", events.encode({"request_id": "r-1"}), {})

    if isinstance(case.outcome, type):
        with pytest.raises(case.outcome):
            handler.handle(delivery)
    else:
        assert handler.handle(delivery) is case.outcome

    published = handler.publisher.completed_events
    if case.published is None:
        assert published == []
    elif case.published == "rejected":
        (event,) = published
        # What a subscriber that knows only succeeded, skipped and failed sees: a failed request, and why.
        assert event["rejected"] is True and event["status"] == "failed" and event["request_id"] == "r-1"
        assert event["error"] == str(case.run) and event["counts"]["observations"] == 0
        assert event["run_id"] != RUN_ID
    else:
        (event,) = published
        assert event["status"] == case.published and event["run_id"] == RUN_ID and "rejected" not in event
    assert [m for m, _ in handler.publisher.dead_letters] == (["m-1"] if case.dead_lettered else [])
    assert rejected_messages(engine) == ([("m-1", str(case.run))] if case.recorded else [])


def test_a_completed_event_that_cannot_be_published_nacks_the_message_to_publish_it_on_redelivery(handler_for):
    handler = handler_for(summary("succeeded"), publisher=RecordingPublisher(fail_completed=True))
    assert handler.handle(Delivery("m-1", events.encode({"request_id": "r-1"}), {})) is Outcome.NACK


def test_a_malformed_message_is_rejected_and_recorded_with_no_answer_for_it_has_no_request(handler_for, engine):
    handler = handler_for(summary("succeeded"))
    assert handler.handle(Delivery("m-1", b"{not json", {})) is Outcome.ACK
    assert handler.publisher.completed_events == [] and len(handler.publisher.dead_letters) == 1
    assert len(rejected_messages(engine)) == 1


# --- a fan-out: the bank's scopes read before any run ---------------------------------------------

#: What reading the bank's scopes gives -> the outcome, the requests published, the answer published.
FAN_OUT_CASES = {
    "scopes found": (["english", "math"], Outcome.ACK, ["weekly/english", "weekly/math"], None),
    "no scope found": ([], Outcome.ACK, [], "rejected"),
    "the database unreachable": (sa.exc.OperationalError("SELECT", {}, ConnectionRefusedError("refused")),
                                 Outcome.NACK, [], None),
    "the login refused": (DatabaseLoginRefused("the database refused the service's login"), Outcome.ACK, [],
                          "rejected"),
}


@pytest.mark.parametrize("found, outcome, requests, published", FAN_OUT_CASES.values(), ids=FAN_OUT_CASES.keys())
def test_a_fan_out_publishes_a_request_per_scope_or_is_rejected_once_or_waits(
        found, outcome, requests, published, handler_for, engine, monkeypatch):
    def scopes_in_bank(conn, key):
        if isinstance(found, BaseException):
            raise found
        return found

    monkeypatch.setattr(queries, "scopes_in_bank", scopes_in_bank)
    handler = handler_for(summary("succeeded"), environ={"MIRT_SCOPE_KEY": "subject"})

    assert handler.handle(Delivery("m-1", events.encode({"request_id": "weekly", "scope": "*"}), {})) is outcome

    assert [r["request_id"] for r in handler.publisher.requests] == requests
    if published == "rejected":
        (event,) = handler.publisher.completed_events
        assert event["rejected"] and event["request_id"] == "weekly" and "fan_out" not in event
        assert len(handler.publisher.dead_letters) == 1
    else:
        assert handler.publisher.completed_events == [] and handler.publisher.dead_letters == []
    # A refused login is never recorded (the database refuses that too); nothing else here is a rejection.
    assert len(rejected_messages(engine)) == (1 if found == [] else 0)


def test_a_login_refused_while_the_fan_out_reads_the_bank_is_rejected_once_not_retried(
        handler_for, engine, monkeypatch):
    """The driver's own error, as a refused login arrives (SQLSTATE 28P01), not a ready-made DatabaseLoginRefused."""
    refused = sa.exc.ProgrammingError("SELECT", {}, Exception({"C": "28P01", "M": "password authentication failed"}))

    def scopes_in_bank(conn, key):
        raise refused

    monkeypatch.setattr(queries, "scopes_in_bank", scopes_in_bank)
    handler = handler_for(summary("succeeded"), environ={"MIRT_SCOPE_KEY": "subject"})
    assert handler.handle(Delivery("m-1", events.encode({"scope": "*"}), {})) is Outcome.ACK
    assert "refused the service's login: password authentication failed" in handler.publisher.dead_letters[0][1]
    assert rejected_messages(engine) == []
