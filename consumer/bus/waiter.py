"""Waiting for the calibration-completed events that answer one request (``publish --wait``).

A request is answered by its run's event, or, when the consumer fanned it
out to every scope, by one event per scope, each carrying the parent's
request id and the number of scopes in ``fan_out``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from google.api_core.retry import Retry
from google.cloud import pubsub_v1

from ..errors import ServiceError
from ..settings import Settings

log = logging.getLogger(__name__)

#: How long making the temporary subscription may retry an unreachable Pub/Sub.
_SETUP_SECONDS = 10.0


class CompletionTimeout(ServiceError):
    """No calibration-completed event for the request arrived in time."""


class CompletionWaiter:
    """A short-lived subscription on the completed topic, made before the request is published."""

    def __init__(self, settings: Settings, client: pubsub_v1.SubscriberClient | None = None) -> None:
        self.client = client or pubsub_v1.SubscriberClient()
        project = settings.require_project()
        self.subscription = self.client.subscription_path(project, f"calibration-completed-wait-{uuid.uuid4().hex[:12]}")
        self.client.create_subscription(name=self.subscription,
                                        topic=self.client.topic_path(project, settings.completed_topic),
                                        ack_deadline_seconds=60, timeout=_SETUP_SECONDS,
                                        retry=Retry(initial=0.25, maximum=2.0, timeout=_SETUP_SECONDS))

    def wait_for(self, request_id: str, timeout: float) -> list[dict]:
        """The data of the calibration-completed events that answer ``request_id``: its run's, or every scope's."""
        scopes: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.client.pull(subscription=self.subscription, max_messages=10,
                                        timeout=min(30.0, max(deadline - time.monotonic(), 1.0)))
            if response.received_messages:
                self.client.acknowledge(subscription=self.subscription,
                                        ack_ids=[m.ack_id for m in response.received_messages])
            for received in response.received_messages:
                body = json.loads(received.message.data or b"{}")
                if body.get("request_id") == request_id:
                    return [body]
                fan_out = body.get("fan_out") or {}
                if fan_out.get("parent_request_id") == request_id and body.get("scope") not in scopes:
                    scopes[body.get("scope")] = body
                    log.info("scope %s of request %s: run %s %s (%d of %d scopes done)", body.get("scope"),
                             request_id, body.get("run_id"), body.get("status"), len(scopes), fan_out["scopes"])
                    if len(scopes) >= fan_out["scopes"]:
                        return sorted(scopes.values(), key=lambda event: event["scope"])
            if not response.received_messages:
                time.sleep(0.2)
        done = f" ({len(scopes)} of its scopes answered: {', '.join(sorted(scopes))})" if scopes else ""
        raise CompletionTimeout(f"no calibration-completed event for request {request_id} within {timeout:.0f} s"
                                f"{done}", "check that a consumer is running (python -m consumer serve) and its log")

    def close(self) -> None:
        try:
            self.client.delete_subscription(subscription=self.subscription, timeout=_SETUP_SECONDS,
                                            retry=Retry(initial=0.25, maximum=2.0, timeout=_SETUP_SECONDS))
        except Exception as problem:
            log.warning("could not delete the temporary subscription %s: %s", self.subscription, problem)
