"""What happens to one calibration-requested message, decided apart from the Pub/Sub client.

- malformed or schema-invalid: acked, recorded in ``mirt_rejected_message``
  with the reason, forwarded to the dead-letter topic when one is set;
  never retried;
- a request that cannot become a run (a scope no question has, a fan-out
  that finds no scope, a bad override): rejected the same way, and
  answered with a completed event marked ``rejected`` (status failed, the
  reason as its error), so that whoever waits for it learns why; nothing
  is recorded as a run;
- a setting the database refuses (the login, TLS): rejected the same way
  on every path, but not recorded (the database refuses that too), to be
  replayed once the setting is fixed;
- a request for every scope (a fan-out): one request per scope present in
  the bank is published back to calibration-requested, with request ids
  derived from the parent's (so a redelivered fan-out adds no runs), and
  the message acked;
- a request id already answered: not run again; its completed event is
  published again and the message acked;
- the database unreachable: nacked, so Pub/Sub redelivers it later with backoff;
- another replica calibrating the request's scope: deferred, i.e. nacked at
  once, so the replica takes other requests (other scopes) meanwhile and
  this one comes back after the subscription's retry backoff;
- a run given up at shutdown: nacked, to be run after the restart;
- otherwise the run's completed event (succeeded, skipped or failed) is
  published and the message acked.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Callable

import sqlalchemy as sa
from opentelemetry import context, propagate, trace

from ..db import queries
from ..db.engine import unavailable
from ..db.migrations import migrate
from ..errors import ConfigError, DatabaseLoginRefused, DatabaseRefused, RunLockBusy, ServiceError
from .. import scope as scopes
from ..calibration import ABANDONED, CalibrationRequest
from ..run import calibrate, earlier_answer
from ..settings import Settings
from ..telemetry import FitProgress, RunMetrics
from .events import InvalidMessage, bounded, parse_request, rejected_summary, request_body
from .publisher import EventPublisher

log = logging.getLogger(__name__)
tracer = trace.get_tracer("consumer.bus")


class Outcome(enum.Enum):
    ACK = "ack"
    NACK = "nack"
    #: Not now: nacked at once (no pause), redelivered after the retry backoff, the replica free meanwhile.
    DEFER = "defer"


@dataclass(frozen=True)
class Delivery:
    """What the handler needs of a received Pub/Sub message."""

    message_id: str
    data: bytes
    attributes: dict[str, str] = field(default_factory=dict)
    delivery_attempt: int | None = None


class RequestHandler:
    """Turns calibration-requested messages into runs and calibration-completed events."""

    def __init__(self, engine: sa.Engine, settings: Settings, publisher: EventPublisher,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.engine = engine
        self.settings = settings
        self.publisher = publisher
        self.should_stop = should_stop
        self.metrics = RunMetrics()
        self._migrated = False

    def handle(self, delivery: Delivery) -> Outcome:
        parent = propagate.extract(delivery.attributes)
        token = context.attach(parent)
        try:
            with tracer.start_as_current_span(
                    "calibration-requested process", kind=trace.SpanKind.CONSUMER,
                    attributes={"messaging.system": "gcp_pubsub", "messaging.message.id": delivery.message_id,
                                "delivery_attempt": delivery.delivery_attempt or 0}) as span:
                outcome = self._handle(delivery)
                span.set_attribute("outcome", outcome.value)
                return outcome
        finally:
            context.detach(token)

    def _handle(self, delivery: Delivery) -> Outcome:
        try:
            request = parse_request(delivery.data, delivery.attributes, delivery.message_id)
        except InvalidMessage as problem:
            return self._reject(delivery, str(problem))
        log.info("calibration request %s received (message %s, delivery attempt %s, requested by %s%s)",
                 request.request_id, delivery.message_id, delivery.delivery_attempt or 1,
                 request.requested_by or "-", f", scope {request.scope}" if request.scope else "")
        if scopes.fans_out(self.settings.scope_key, request.scope):
            return self._fan_out(delivery, request)
        try:
            self._ensure_migrated()
            summary = earlier_answer(self.engine, self.settings, request) or self._calibrate(request)
        except DatabaseRefused as problem:
            return self._refused(delivery, request, problem)
        except ConfigError as problem:
            return self._reject(delivery, str(problem), request)
        except RunLockBusy as problem:
            log.info("request %s not run now: %s; nacked at once: it comes back after the subscription's retry "
                     "backoff, and this replica takes other requests meanwhile", request.request_id, problem)
            return Outcome.DEFER
        except ServiceError as problem:
            if problem.transient:
                log.warning("request %s not run now: %s; nacked, Pub/Sub will redeliver it",
                            request.request_id, problem)
                return Outcome.NACK
            raise
        if summary.status == ABANDONED:
            log.warning("request %s nacked: its run was abandoned at shutdown and will run after the restart",
                        request.request_id)
            return Outcome.NACK
        if not summary.duplicate:
            self.metrics.record(summary)
        try:
            self.publisher.completed(summary)
        except Exception as problem:
            log.error("could not publish calibration-completed for run %s: %s; nacked, so the redelivery "
                      "publishes it again without running again", summary.run_id, problem)
            return Outcome.NACK
        return Outcome.ACK

    def _calibrate(self, request: CalibrationRequest):
        """The request's run, once its scope is known to be in the bank (an unknown one is never run)."""
        scopes.require_in_bank(self.engine, scopes.resolve(self.settings.scope_key, request.scope))
        # A consumer's log gets a progress line every few seconds of a long fit, never a redrawn one.
        return calibrate(self.engine, self.settings, request, should_stop=self.should_stop, once_per_request=True,
                         progress=FitProgress(interactive=False))

    def _fan_out(self, delivery: Delivery, request: CalibrationRequest) -> Outcome:
        """Publish one request per scope present in the bank, each with an id derived from this one's."""
        key = self.settings.scope_key
        try:
            self._ensure_migrated()
            try:
                with self.engine.connect() as conn:
                    found = queries.scopes_in_bank(conn, key)
            except sa.exc.DBAPIError as exc:
                raise unavailable(self.engine, exc) from exc
        except DatabaseRefused as problem:
            return self._refused(delivery, request, problem)
        except ServiceError as problem:
            log.warning("request %s not fanned out now: %s; nacked, Pub/Sub will redeliver it",
                        request.request_id, problem)
            return Outcome.NACK
        names = [name for name in found if scopes.valid_name(name)]
        if len(names) < len(found):
            log.warning("%d values of question.meta.%s are not scope names (1 to 100 printable characters, not "
                        "\"*\") and are left out: %s", len(found) - len(names), key,
                        bounded(", ".join(repr(v) for v in found if v not in names), 300))
        if not names:
            return self._reject(delivery, f"request {request.request_id} asks for every scope, and no question has "
                                          f"a value under meta.{key} (MIRT_SCOPE_KEY): there is no scope to "
                                          "calibrate; check MIRT_SCOPE_KEY against question.meta", request)
        fan_out = {"parent_request_id": request.request_id, "scopes": len(names)}
        settings_overrides = {**request.overrides, "dry_run": request.dry_run}
        try:
            for name in names:
                self.publisher.request(request_body(scopes.child_request_id(request.request_id, name),
                                                    request.requested_by, scope=name, fan_out=fan_out,
                                                    mode=request.mode, **settings_overrides))
        except Exception as problem:
            log.error("could not publish the requests of fan-out %s: %s; nacked, so the redelivery publishes them "
                      "again (the ones already run are not run twice)", request.request_id,
                      bounded(str(problem), 300))
            return Outcome.NACK
        log.info("request %s fanned out to %d scopes of meta.%s, one request each: %s", request.request_id,
                 len(names), key, bounded(", ".join(names), 300))
        return Outcome.ACK

    def _ensure_migrated(self) -> None:
        if not self._migrated:
            migrate(self.engine)
            self._migrated = True

    def _refused(self, delivery: Delivery, request: CalibrationRequest, problem: DatabaseRefused) -> Outcome:
        """A setting the database refuses: the request is rejected without being recorded, on every path."""
        setting = "the login" if isinstance(problem, DatabaseLoginRefused) else "the database setting"
        log.error("request %s not run: %s; the request is forwarded to the dead-letter topic, to be replayed "
                  "once %s is fixed (the database refusing it cannot record it)", request.request_id, problem,
                  setting)
        return self._reject(delivery, str(problem), request, record=False)

    def _reject(self, delivery: Delivery, reason: str, request: CalibrationRequest | None = None,
                record: bool = True) -> Outcome:
        """Ack, record (unless ``record`` is false) and dead-letter the message; answer its request if it has one."""
        reason = bounded(reason)
        try:
            if record:
                self._ensure_migrated()  # a fresh database's first message may be a malformed one
                with self.engine.begin() as conn:
                    queries.record_rejected_message(conn, delivery.message_id, reason, delivery.data,
                                                    dict(delivery.attributes))
        except Exception as problem:
            log.error("could not record rejected message %s in the database: %s", delivery.message_id,
                      str(problem).splitlines()[0][:300])
        # Said once the rejection is recorded, so that whoever reads the line finds the record.
        log.warning("message %s rejected and acked, never to be retried: %s", delivery.message_id, reason)
        try:
            forwarded = self.publisher.dead_letter(delivery.data, dict(delivery.attributes), delivery.message_id,
                                                   reason)
            if forwarded:
                log.info("rejected message %s forwarded to dead-letter topic %s", delivery.message_id,
                         self.settings.dead_letter_topic)
        except Exception as problem:
            log.error("could not forward rejected message %s to the dead-letter topic: %s",
                      delivery.message_id, problem)
        if request is not None:
            self._answer_rejected(request, reason)
        return Outcome.ACK

    def _answer_rejected(self, request: CalibrationRequest, reason: str) -> None:
        """Publish the completed event that tells whoever waits for ``request`` that it was rejected, and why."""
        try:
            model = self.settings.with_overrides("request", **request.overrides).model
        except ConfigError:  # the overrides may be what was wrong
            model = self.settings.model
        try:
            self.publisher.completed(rejected_summary(request, reason, model), rejected=True)
        except Exception as problem:  # the rejection stands (recorded, dead-lettered); only the answer is lost
            log.error("could not publish calibration-completed for rejected request %s: %s", request.request_id,
                      bounded(str(problem), 300))
