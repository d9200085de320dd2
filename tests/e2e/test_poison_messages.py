"""A flood of poison messages through a running consumer: each rejected once, every valid request answered."""

import pytest

from consumer.bus import events

from tests.support.database import rows
from tests.support.platform_data import small_platform
from tests.support.poison import poison_flood


@pytest.mark.slow
def test_hundreds_of_poison_messages_among_valid_requests_are_each_rejected_once_and_every_request_answered(
        engine, broker, consumers):
    small_platform(engine, n_persons=300, n_items=25, per_person=10)
    flood = poison_flood(per_kind=25, valid=10)  # 300 malformed messages of 12 kinds, 10 requests among them
    ids = {}
    for kind, body in flood:
        ids[broker.request(body)] = kind
    consumer = consumers()  # published first: the local server hands everything over at once, leased at once

    answered = broker.completed(10, timeout=600)

    assert sorted(e["request_id"] for e, _ in answered) == [f"valid-{n}" for n in range(10)]
    assert all(e["status"] == "succeeded" for e, _ in answered)
    malformed = {message_id for message_id, kind in ids.items() if kind != "valid"}
    consumer.wait_for_log("rejected and acked", count=len(malformed), timeout=120)
    recorded = rows(engine, "SELECT message_id, reason FROM mirt_rejected_message")
    assert sorted(r.message_id for r in recorded) == sorted(malformed)  # every one, each once: none looping
    assert max(len(r.reason) for r in recorded) <= events.MAX_REASON_CHARS + 40  # the cut says how much it left out
    assert broker.completed(1, timeout=5) == []  # no request answered twice
    assert consumer.process.poll() is None and consumer.health("/healthz")[0] == 200
