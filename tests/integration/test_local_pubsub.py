"""The bundled local Pub/Sub server keeps a subscription's delivery policies as Pub/Sub does (serve --demo relies on it).

``consumer/bus/topology.py`` creates the consumer's subscription with infra/'s
retry and dead-letter policies; ``consumer/bus/local_server_behaviour.py``
makes the local server keep them. What Pub/Sub documents is the reference: a
message delivered ``max_delivery_attempts`` times without an ack is forwarded
to the dead-letter topic and not delivered again; each delivery carries its
attempt number.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from google.cloud import pubsub_v1

from consumer.bus import topology

#: Pub/Sub's smallest max_delivery_attempts is 5; backoffs of 1 s keep the test short.
POLICY = topology.Policy(ack_deadline_seconds=10, minimum_backoff_seconds=1, maximum_backoff_seconds=1,
                         max_delivery_attempts=5)


@pytest.fixture
def local_pubsub(pubsub_host, monkeypatch):
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        pytest.skip("PUBSUB_EMULATOR_HOST names another server; this checks the bundled one")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_host)
    project = f"test-{uuid.uuid4().hex[:10]}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topology.create(project, POLICY, completed_subscription="completed-watch",
                    dead_letter_subscription="dead-letter-watch", publisher=publisher, subscriber=subscriber)
    yield project, publisher, subscriber
    for name in (topology.REQUESTS_SUBSCRIPTION, "completed-watch", "dead-letter-watch"):
        subscriber.delete_subscription(subscription=subscriber.subscription_path(project, name), timeout=10)
    for name in (topology.REQUESTS_TOPIC, topology.COMPLETED_TOPIC, topology.DEAD_LETTER_TOPIC):
        publisher.delete_topic(topic=publisher.topic_path(project, name), timeout=10)


def _pull_one(subscriber, subscription: str, within: float):
    """The next message on ``subscription`` (not acked), or None when none comes ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        response = subscriber.pull(subscription=subscription, max_messages=1, timeout=10)
        if response.received_messages:
            return response.received_messages[0]
        time.sleep(0.1)
    return None


def test_a_message_nacked_on_its_last_attempt_goes_to_the_dead_letter_topic(local_pubsub):
    project, publisher, subscriber = local_pubsub
    requests = subscriber.subscription_path(project, topology.REQUESTS_SUBSCRIPTION)
    dead_letters = subscriber.subscription_path(project, "dead-letter-watch")
    # The subscription reports the policies it was created with.
    kept = subscriber.get_subscription(subscription=requests, timeout=10)
    assert kept.dead_letter_policy.dead_letter_topic == publisher.topic_path(project, topology.DEAD_LETTER_TOPIC)
    assert kept.dead_letter_policy.max_delivery_attempts == 5
    assert kept.retry_policy.minimum_backoff.total_seconds() == 1

    data = f"poison {uuid.uuid4()}".encode()
    publisher.publish(publisher.topic_path(project, topology.REQUESTS_TOPIC), data).result(timeout=30)
    attempts = []
    for _ in range(POLICY.max_delivery_attempts):
        received = _pull_one(subscriber, requests, within=15)
        assert received is not None, f"redelivery stopped after attempts {attempts}"
        assert received.message.data == data
        attempts.append(received.delivery_attempt)
        assert _pull_one(subscriber, dead_letters, within=0.3) is None  # not before its last attempt
        subscriber.modify_ack_deadline(subscription=requests, ack_ids=[received.ack_id], ack_deadline_seconds=0)
    assert attempts == [1, 2, 3, 4, 5]

    # After the fifth nack the requests subscription, still pulled as a consumer pulls it, has it no more: it is
    # on the dead-letter topic.
    assert _pull_one(subscriber, requests, within=3) is None
    dead = _pull_one(subscriber, dead_letters, within=5)
    assert dead is not None and dead.message.data == data
    subscriber.acknowledge(subscription=dead_letters, ack_ids=[dead.ack_id])
