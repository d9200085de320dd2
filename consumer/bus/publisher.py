"""Publishing events: calibration-completed (checked against its schema first), requests, dead letters."""

from __future__ import annotations

import logging

from google.cloud import pubsub_v1
from opentelemetry import propagate, trace

from ..run import RunSummary
from ..settings import Settings
from . import events

log = logging.getLogger(__name__)
tracer = trace.get_tracer("consumer.bus")

PUBLISH_TIMEOUT_SECONDS = 60.0
#: Ordering key of calibration requests: runs answer them in order of arrival.
REQUEST_ORDERING_KEY = "calibration"


class EventPublisher:
    """Publishes the service's events to the topics named in the settings."""

    def __init__(self, settings: Settings, client: pubsub_v1.PublisherClient | None = None) -> None:
        self.settings = settings
        self.project = settings.require_project()
        self.client = client or pubsub_v1.PublisherClient(
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True))

    def topic(self, name: str) -> str:
        return self.client.topic_path(self.project, name)

    def _publish(self, topic: str, body: dict, ce_type: str, extra: dict | None = None,
                 ordering_key: str = "") -> str:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        attributes = events.cloudevent_attributes(ce_type, {**carrier, **(extra or {})})
        future = self.client.publish(topic, events.encode(body), ordering_key=ordering_key, **attributes)
        return future.result(timeout=PUBLISH_TIMEOUT_SECONDS)

    def completed(self, summary: RunSummary) -> str:
        """Publish the calibration-completed event of ``summary``; returns the message id."""
        body = events.completed_body(summary)
        with tracer.start_as_current_span("calibration-completed publish",
                                          kind=trace.SpanKind.PRODUCER,
                                          attributes={"run_id": summary.run_id, "status": summary.status}):
            message_id = self._publish(self.topic(self.settings.completed_topic), body, events.COMPLETED_TYPE,
                                       {"request-id": body["request_id"]})
        log.info("published calibration-completed for run %s (request %s, %s) as message %s",
                 summary.run_id, body["request_id"], summary.status, message_id, extra={"run_id": summary.run_id})
        return message_id

    def request(self, body: dict) -> str:
        """Publish a calibration-requested event (what Cloud Scheduler and other services do)."""
        return self._publish(self.topic(self.settings.requests_topic), body, events.REQUESTED_TYPE,
                             ordering_key=REQUEST_ORDERING_KEY)

    def dead_letter(self, data: bytes, attributes: dict, message_id: str, reason: str) -> str | None:
        """Forward a rejected message, with the reason, when a dead-letter topic is configured."""
        if not self.settings.dead_letter_topic:
            return None
        extra = {"rejected-reason": reason[:1024], "original-message-id": message_id}
        future = self.client.publish(self.topic(self.settings.dead_letter_topic), data, **{**attributes, **extra})
        return future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
