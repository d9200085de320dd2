"""Publishing events: calibration-completed (checked against its schema first), requests, dead letters."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import socket
from typing import Iterator

from google.api_core import exceptions as google_exceptions
from google.cloud import pubsub_v1
from opentelemetry import propagate, trace

from ..errors import ConfigError
from ..calibration import RunLog, RunSummary
from ..settings import Settings
from . import events

log = logging.getLogger(__name__)
tracer = trace.get_tracer("consumer.bus")

PUBLISH_TIMEOUT_SECONDS = 60.0
GOOGLE_ENDPOINT = "pubsub.googleapis.com:443"


def endpoint() -> str:
    """Where the client library sends Pub/Sub calls: the emulator when PUBSUB_EMULATOR_HOST names one."""
    return os.environ.get("PUBSUB_EMULATOR_HOST", "").strip() or GOOGLE_ENDPOINT


def unreachable(reason: str) -> ConfigError:
    """A one-line ``ConfigError`` for a Pub/Sub that does not answer: the host, the reason, what to check."""
    host = endpoint()
    if host == GOOGLE_ENDPOINT:
        return ConfigError(f"cannot reach Pub/Sub at {host}: {reason}",
                           "check this machine's access to Google APIs (network, firewall, proxy, Private Google "
                           "Access), or set PUBSUB_EMULATOR_HOST for a local emulator")
    return ConfigError(f"cannot reach the Pub/Sub emulator at {host} (PUBSUB_EMULATOR_HOST): {reason}",
                       "start the emulator there or correct PUBSUB_EMULATOR_HOST (host:port); unset it to use "
                       "Google Cloud Pub/Sub")


def require_reachable(timeout: float = 3.0) -> None:
    """Fail at once when the emulator PUBSUB_EMULATOR_HOST names does not accept connections.

    The client library would retry for a minute before saying so. Google's
    own endpoint is not probed here (a proxy may stand between); calls to it
    are bounded instead (``pubsub_failure``).
    """
    host = endpoint()
    if host == GOOGLE_ENDPOINT:
        return
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit():
        raise ConfigError(f"PUBSUB_EMULATOR_HOST must read host:port, got {host!r}")
    try:
        with socket.create_connection((name.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as problem:
        raise unreachable(problem.strerror or str(problem) or type(problem).__name__) from None


@contextlib.contextmanager
def pubsub_failure() -> Iterator[None]:
    """Turn the client library's "cannot get through" errors into one clear ``ConfigError``."""
    try:
        yield
    except google_exceptions.RetryError as problem:
        cause = getattr(problem, "cause", None)
        raise unreachable(_first_line(cause or problem)) from None
    except (google_exceptions.ServiceUnavailable, google_exceptions.DeadlineExceeded) as problem:
        raise unreachable(_first_line(problem)) from None
    except concurrent.futures.TimeoutError:
        raise unreachable("no answer in time") from None


def _first_line(problem: BaseException) -> str:
    text = str(problem).strip()
    return text.splitlines()[0][:300] if text else type(problem).__name__


class EventPublisher:
    """Publishes the service's events to the topics named in the settings."""

    def __init__(self, settings: Settings, client: pubsub_v1.PublisherClient | None = None) -> None:
        self.settings = settings
        self.project = settings.require_project()
        # No ordering keys: requests do not depend on each other's order (infra/terraform/pubsub.tf).
        self.client = client or pubsub_v1.PublisherClient()

    def topic(self, name: str) -> str:
        return self.client.topic_path(self.project, name)

    def _publish(self, topic: str, body: dict, ce_type: str, extra: dict | None = None,
                 timeout: float = PUBLISH_TIMEOUT_SECONDS) -> str:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        attributes = events.cloudevent_attributes(ce_type, {**carrier, **(extra or {})})
        future = self.client.publish(topic, events.encode(body), **attributes)
        return future.result(timeout=timeout)

    def completed(self, summary: RunSummary, *, rejected: bool = False) -> str:
        """Publish the calibration-completed event of ``summary`` (of a rejected request: ``rejected``); returns the
        message id."""
        body = events.completed_body(summary, rejected=rejected)
        with tracer.start_as_current_span("calibration-completed publish",
                                          kind=trace.SpanKind.PRODUCER,
                                          attributes={"run_id": summary.run_id, "status": summary.status}):
            message_id = self._publish(self.topic(self.settings.completed_topic), body, events.COMPLETED_TYPE,
                                       {"request-id": body["request_id"]})
        if rejected:
            log.info("published calibration-completed for request %s (rejected, no run) as message %s",
                     body["request_id"], message_id)
            return message_id
        RunLog(log, {"run_id": summary.run_id, "scope": summary.scope or ""}).info(
            "published calibration-completed for run %s (request %s, %s) as message %s", summary.run_id,
            body["request_id"], summary.status, message_id)
        return message_id

    def request(self, body: dict, timeout: float = PUBLISH_TIMEOUT_SECONDS) -> str:
        """Publish a calibration-requested event (what Cloud Scheduler and other services do)."""
        return self._publish(self.topic(self.settings.requests_topic), body, events.REQUESTED_TYPE, timeout=timeout)

    def dead_letter(self, data: bytes, attributes: dict, message_id: str, reason: str) -> str | None:
        """Forward a rejected message, with the reason, when a dead-letter topic is configured."""
        if not self.settings.dead_letter_topic:
            return None
        extra = {"rejected-reason": reason[:1024], "original-message-id": message_id}
        future = self.client.publish(self.topic(self.settings.dead_letter_topic), data, **{**attributes, **extra})
        return future.result(timeout=PUBLISH_TIMEOUT_SECONDS)
