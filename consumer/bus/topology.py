"""The service's topics and subscriptions, made on a local Pub/Sub server as infra/terraform/pubsub.tf makes them.

On Google Cloud, Terraform creates them; on the local server (``serve
--demo``) and in the tests, ``create`` does: the requests topic and the
consumer's subscription on it (ack deadline, retry policy, dead-letter
policy), the completed topic, the dead-letter topic, and a subscription on
each of those two that someone can read (a waiter, a person, a test).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from google.api_core import exceptions
from google.cloud import pubsub_v1

from ..settings import SPECS

REQUESTS_TOPIC = SPECS["requests_topic"].default
REQUESTS_SUBSCRIPTION = SPECS["requests_subscription"].default
COMPLETED_TOPIC = SPECS["completed_topic"].default
#: infra's dead_letter_topic and dead_letter_subscription (variables.tf).
DEAD_LETTER_TOPIC = "calibration-requested-dead-letter"
DEAD_LETTER_SUBSCRIPTION = "calibration-requested-dead-letter-inspect"
COMPLETED_SUBSCRIPTION = "calibration-completed-watch"


@dataclass(frozen=True)
class Policy:
    """The consumer subscription's delivery settings; the defaults are infra/'s (variables.tf)."""

    ack_deadline_seconds: int = 60
    minimum_backoff_seconds: int = 10
    maximum_backoff_seconds: int = 600
    #: None: no dead-letter policy (the consumer still forwards rejected messages itself).
    max_delivery_attempts: int | None = 10


def create(project: str, policy: Policy = Policy(), *, completed_subscription: str = COMPLETED_SUBSCRIPTION,
           dead_letter_subscription: str = DEAD_LETTER_SUBSCRIPTION, exist_ok: bool = False,
           publisher: pubsub_v1.PublisherClient | None = None,
           subscriber: pubsub_v1.SubscriberClient | None = None) -> None:
    """Create the topics and subscriptions in ``project`` (``exist_ok``: those already there are left as they are).

    The clients go where ``PUBSUB_EMULATOR_HOST`` points.
    """
    publisher = publisher or pubsub_v1.PublisherClient()
    subscriber = subscriber or pubsub_v1.SubscriberClient()
    tolerated = (exceptions.AlreadyExists,) if exist_ok else ()

    def topic(name: str) -> str:
        return publisher.topic_path(project, name)

    for name in (REQUESTS_TOPIC, COMPLETED_TOPIC, DEAD_LETTER_TOPIC):
        with contextlib.suppress(*tolerated):
            publisher.create_topic(name=topic(name))
    requests = {"name": subscriber.subscription_path(project, REQUESTS_SUBSCRIPTION), "topic": topic(REQUESTS_TOPIC),
                "ack_deadline_seconds": policy.ack_deadline_seconds,
                "retry_policy": {"minimum_backoff": {"seconds": policy.minimum_backoff_seconds},
                                 "maximum_backoff": {"seconds": policy.maximum_backoff_seconds}}}
    if policy.max_delivery_attempts is not None:
        requests["dead_letter_policy"] = {"dead_letter_topic": topic(DEAD_LETTER_TOPIC),
                                          "max_delivery_attempts": policy.max_delivery_attempts}
    with contextlib.suppress(*tolerated):
        subscriber.create_subscription(request=requests)
    for name, on in ((completed_subscription, COMPLETED_TOPIC), (dead_letter_subscription, DEAD_LETTER_TOPIC)):
        with contextlib.suppress(*tolerated):
            subscriber.create_subscription(name=subscriber.subscription_path(project, name), topic=topic(on))
