"""What happens to one calibration-requested message, decided apart from the Pub/Sub client.

- malformed or schema-invalid: acked, recorded in ``mirt_rejected_message``
  with the reason, forwarded to the dead-letter topic when one is set;
  never retried;
- a request id already answered: not run again; its completed event is
  published again and the message acked;
- the database unreachable, or another replica holding the run lock: nacked,
  so Pub/Sub redelivers it later with backoff;
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
from ..errors import ConfigError, ServiceError
from ..run import ABANDONED, FINISHED, CalibrationRequest, RunSummary, calibrate
from ..settings import Settings
from ..telemetry import FitProgress, RunMetrics
from .events import InvalidMessage, bounded, parse_request
from .publisher import EventPublisher

log = logging.getLogger(__name__)
tracer = trace.get_tracer("consumer.bus")


class Outcome(enum.Enum):
    ACK = "ack"
    NACK = "nack"


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
        log.info("calibration request %s received (message %s, delivery attempt %s, requested by %s)",
                 request.request_id, delivery.message_id, delivery.delivery_attempt or 1,
                 request.requested_by or "-")
        try:
            self._ensure_migrated()
            # A consumer's log gets a progress line every few seconds of a long fit, never a redrawn one.
            summary = self._earlier_answer(request) or calibrate(
                self.engine, self.settings, request, should_stop=self.should_stop, once_per_request=True,
                progress=FitProgress(interactive=False))
        except ConfigError as problem:
            return self._reject(delivery, str(problem))
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

    def _earlier_answer(self, request: CalibrationRequest) -> RunSummary | None:
        """The summary of the finished run that already answered this request id, if there is one.

        Asked before the run lock is queued for, so a duplicate is answered
        even while another run holds the lock; ``calibrate`` asks again under
        the lock for deliveries that race. The log line carries the earlier
        run's id, the one ``mirt_fit_meta`` knows.
        """
        if not request.request_id:
            return None
        try:
            with self.engine.connect() as conn:
                stored = queries.finished_run_summary(conn, request.request_id, FINISHED)
        except sa.exc.DBAPIError as exc:
            raise unavailable(self.engine, exc) from exc
        if stored is None:
            return None
        earlier = RunSummary.from_dict(stored)
        earlier.duplicate = True
        log.info("request %s was already answered by run %s (%s): not running it again",
                 request.request_id, earlier.run_id, earlier.status, extra={"run_id": earlier.run_id})
        return earlier

    def _ensure_migrated(self) -> None:
        if not self._migrated:
            migrate(self.engine)
            self._migrated = True

    def _reject(self, delivery: Delivery, reason: str) -> Outcome:
        reason = bounded(reason)
        log.warning("message %s rejected and acked, never to be retried: %s", delivery.message_id, reason)
        try:
            self._ensure_migrated()  # a fresh database's first message may be a malformed one
            with self.engine.begin() as conn:
                queries.record_rejected_message(conn, delivery.message_id, reason, delivery.data,
                                                dict(delivery.attributes))
        except Exception as problem:
            log.error("could not record rejected message %s in the database: %s", delivery.message_id,
                      str(problem).splitlines()[0][:300])
        try:
            forwarded = self.publisher.dead_letter(delivery.data, dict(delivery.attributes), delivery.message_id,
                                                   reason)
            if forwarded:
                log.info("rejected message %s forwarded to dead-letter topic %s", delivery.message_id,
                         self.settings.dead_letter_topic)
        except Exception as problem:
            log.error("could not forward rejected message %s to the dead-letter topic: %s",
                      delivery.message_id, problem)
        return Outcome.ACK
