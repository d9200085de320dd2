"""Acks and nacks under exactly-once delivery: a refusal from Pub/Sub is logged, and its redelivery is harmless.

The local Pub/Sub server does not emulate exactly-once delivery, so the one
test double here is the received message: its ``ack_with_response()``
returns the failed future the client library gives when Pub/Sub refuses an
ack (``AcknowledgeError``, INVALID_ACK_ID: the lease had lapsed). Everything
else is real: the consumer's message callback, the handler and the run on
the test PostgreSQL, and the completed events published to the local
Pub/Sub server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from google.cloud.pubsub_v1.subscriber import futures
from google.cloud.pubsub_v1.subscriber.exceptions import AcknowledgeError, AcknowledgeStatus

from consumer.bus import events
from consumer.bus.subscriber import CalibrationConsumer
from consumer.settings import Settings

from tests.support.platform_data import small_platform


@dataclass
class ReceivedMessage:
    """What the client library hands the callback, with the answers Pub/Sub gives to its ack and nack."""

    data: bytes
    message_id: str = "m-1"
    delivery_attempt: int | None = 1
    attributes: dict = field(default_factory=lambda: events.cloudevent_attributes(events.REQUESTED_TYPE))
    refuse: AcknowledgeStatus | None = None
    settled: list = field(default_factory=list)

    def _answer(self, what: str):
        self.settled.append(what)
        answer = futures.Future()
        if self.refuse is None:
            answer.set_result(AcknowledgeStatus.SUCCESS)
        else:
            answer.set_exception(AcknowledgeError(self.refuse, "the ack id has expired"))
        return answer

    def ack_with_response(self):
        return self._answer("ack")

    def nack_with_response(self):
        return self._answer("nack")

    def ack(self):  # the calls that cannot report a refusal: the consumer must not use them
        raise AssertionError("ack() cannot report a refusal under exactly-once delivery")

    nack = ack


def test_a_refused_ack_is_logged_once_and_its_redelivery_is_answered_without_a_second_run(
        engine, broker, database_url, caplog):
    small_platform(engine, n_persons=300, n_items=25, per_person=10)
    settings = Settings.load({"DATABASE_URL": database_url, "GOOGLE_CLOUD_PROJECT": broker.project})
    consumer = CalibrationConsumer(settings, engine)
    body = events.encode({"request_id": "exactly-once-1"})
    first = ReceivedMessage(body, refuse=AcknowledgeStatus.INVALID_ACK_ID)

    with caplog.at_level(logging.INFO):
        consumer._on_message(first)
        redelivered = ReceivedMessage(body, delivery_attempt=2)
        consumer._on_message(redelivered)

    assert first.settled == ["ack"] and redelivered.settled == ["ack"]
    refusals = [r.getMessage() for r in caplog.records if "refused the ack" in r.getMessage()]
    assert refusals == ["Pub/Sub refused the ack of message m-1 (INVALID_ACK_ID: the ack id has expired): it will "
                        "deliver the message again, and the redelivery finds this delivery's outcome recorded in "
                        "the database (a finished run is answered again, never run again)"]
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT status FROM mirt_fit_meta WHERE request_id = 'exactly-once-1'")).all()
    assert runs == [("succeeded",)]
    answers = broker.completed(2, timeout=30)
    assert [e["request_id"] for e, _ in answers] == ["exactly-once-1"] * 2
    assert answers[0][0]["run_id"] == answers[1][0]["run_id"]


def test_a_refused_nack_is_logged_with_what_follows(engine, broker, database_url, caplog):
    settings = Settings.load({"DATABASE_URL": database_url, "GOOGLE_CLOUD_PROJECT": broker.project})
    consumer = CalibrationConsumer(settings, engine)
    consumer.stopping.set()  # shutting down: a message that arrives now is nacked for the next replica
    message = ReceivedMessage(events.encode({"request_id": "late"}), refuse=AcknowledgeStatus.FAILED_PRECONDITION)
    with caplog.at_level(logging.INFO):
        consumer._on_message(message)
    assert message.settled == ["nack"]
    assert [r.getMessage() for r in caplog.records if "refused" in r.getMessage()] == [
        "Pub/Sub refused the nack of message m-1 (FAILED_PRECONDITION: the ack id has expired): the message comes "
        "back when its ack deadline passes rather than at once"]
