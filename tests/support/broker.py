"""Test-side helpers around a Pub/Sub server: topics, subscriptions, and a consumer process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from google.cloud import pubsub_v1

from consumer.bus import events, topology
from consumer.bus.local_server import free_port

REQUESTS = topology.REQUESTS_TOPIC
SUBSCRIPTION = topology.REQUESTS_SUBSCRIPTION
COMPLETED = topology.COMPLETED_TOPIC
DEAD_LETTER = topology.DEAD_LETTER_TOPIC
#: The requests subscription's delivery settings: infra/'s retry policy (10 s doubling to 600 s) scaled down for
#: tests, and no dead-letter policy (the consumer forwards what it rejects; tests count deliveries themselves).
POLICY = topology.Policy(ack_deadline_seconds=10, minimum_backoff_seconds=1, maximum_backoff_seconds=10,
                         max_delivery_attempts=None)


@dataclass
class Broker:
    host: str
    project: str
    publisher: pubsub_v1.PublisherClient
    subscriber: pubsub_v1.SubscriberClient

    @classmethod
    def create(cls, host: str, project: str) -> "Broker":
        publisher = pubsub_v1.PublisherClient()
        subscriber = pubsub_v1.SubscriberClient()
        broker = cls(host, project, publisher, subscriber)
        topology.create(project, POLICY, completed_subscription="completed-watch",
                        dead_letter_subscription="dead-letter-watch", publisher=publisher, subscriber=subscriber)
        return broker

    def delete(self) -> None:
        """Delete the subscriptions and topics ``create`` made (whatever is already gone is skipped)."""
        from google.api_core import exceptions
        for name in (SUBSCRIPTION, "completed-watch", "dead-letter-watch"):
            with contextlib.suppress(exceptions.NotFound):
                self.subscriber.delete_subscription(subscription=self.subscription(name), timeout=10)
        for name in (REQUESTS, COMPLETED, DEAD_LETTER):
            with contextlib.suppress(exceptions.NotFound):
                self.publisher.delete_topic(topic=self.topic(name), timeout=10)

    def topic(self, name: str) -> str:
        return self.publisher.topic_path(self.project, name)

    def subscription(self, name: str) -> str:
        return self.subscriber.subscription_path(self.project, name)

    def request(self, body: dict | bytes, attributes: dict | None = None) -> str:
        """Publish to calibration-requested as another service would (CloudEvents binary mode)."""
        data = body if isinstance(body, bytes) else events.encode(body)
        attrs = events.cloudevent_attributes(events.REQUESTED_TYPE) if attributes is None else attributes
        return self.publisher.publish(self.topic(REQUESTS), data, **attrs).result(timeout=30)

    def pull(self, watcher: str, count: int, timeout: float = 120.0) -> list:
        """The next ``count`` messages on a watch subscription (acked), or fewer at the timeout."""
        received = []
        deadline = time.monotonic() + timeout
        while len(received) < count and time.monotonic() < deadline:
            response = self.subscriber.pull(subscription=self.subscription(watcher),
                                            max_messages=count - len(received), timeout=10)
            if response.received_messages:
                self.subscriber.acknowledge(subscription=self.subscription(watcher),
                                            ack_ids=[m.ack_id for m in response.received_messages])
                received += [m.message for m in response.received_messages]
            else:
                time.sleep(0.1)
        return received

    def completed(self, count: int = 1, timeout: float = 120.0) -> list[tuple[dict, dict]]:
        """(data, attributes) of the next ``count`` calibration-completed events."""
        return [(json.loads(m.data), dict(m.attributes)) for m in self.pull("completed-watch", count, timeout)]


@dataclass
class ConsumerProcess:
    """``python -m consumer serve`` in a subprocess, as it runs in production."""

    env: dict
    log_path: Path
    process: subprocess.Popen | None = None
    port: int = field(default_factory=free_port)

    def start(self) -> "ConsumerProcess":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DB_", "OTEL_"))}
        env.update({"PORT": str(self.port), "LOG_FORMAT": "json", **self.env})
        self.log_file = open(self.log_path, "a")
        self.process = subprocess.Popen([sys.executable, "-m", "consumer", "serve"], env=env,
                                        stdin=subprocess.DEVNULL, stdout=self.log_file, stderr=self.log_file)
        self.wait_for_log("consumer pulling from", timeout=60)
        return self

    def health(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def messages(self) -> list[str]:
        lines = self.log_path.read_text().splitlines() if self.log_path.exists() else []
        return [json.loads(line)["message"] for line in lines if line.startswith("{")]

    def wait_for_log(self, fragment: str, timeout: float = 60.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(fragment in m for m in self.messages()) >= count:
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"consumer exited ({self.process.returncode}) before logging {fragment!r}:\n"
                                     + "\n".join(self.messages()[-20:]))
            time.sleep(0.1)
        raise AssertionError(f"consumer did not log {fragment!r} within {timeout} s:\n"
                             + "\n".join(self.messages()[-20:]))

    def terminate(self, timeout: float = 60.0) -> tuple[int, float]:
        """SIGTERM, then wait; returns (exit status, seconds it took to exit)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.log_file.close()
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if getattr(self, "log_file", None):
            self.log_file.close()
