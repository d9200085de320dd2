"""Poison messages: whatever bytes a request holds, it is rejected with a short reason and recorded."""

import pytest
import sqlalchemy as sa

from consumer.bus import events
from consumer.bus.events import InvalidMessage, parse_request
from consumer.db import queries

from tests.support.database import rows
from tests.support.platform_data import small_platform
from tests.support.poison import POISON, POISON_KINDS, poison_flood

ATTRIBUTES = events.cloudevent_attributes(events.REQUESTED_TYPE)
@pytest.mark.parametrize("body", POISON.values(), ids=POISON.keys())
def test_poison_bodies_are_invalid_messages_with_a_bounded_reason(body):
    with pytest.raises(InvalidMessage) as caught:
        parse_request(body, ATTRIBUTES, "m-1")
    assert len(events.bounded(str(caught.value))) <= events.MAX_REASON_CHARS + 40


def test_a_valid_request_still_parses():
    request = parse_request(b'{"request_id": "r-1", "overrides": {"model": "1PL"}}', ATTRIBUTES, "m-2")
    assert request.request_id == "r-1" and request.overrides == {"model": "1PL"}


def test_any_bytes_of_a_rejected_message_can_be_recorded(engine):
    with engine.begin() as conn:
        for n, body in enumerate(POISON.values()):
            queries.record_rejected_message(conn, f"m-{n}\x00", "reason with a NUL \x00 and \ud800",
                                            body, {"ce-source": "nul\x00", "k\ud800": "v"})
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT message_id, reason, data, attributes FROM mirt_rejected_message")).all()
    assert len(stored) == len(POISON)
    assert all("\x00" not in r.reason and "\x00" not in r.data for r in stored)
    assert stored[0].attributes["ce-source"] == "nul\\u0000"


def test_every_kind_of_poison_copy_is_rejected():
    for kind, make in POISON_KINDS.items():
        for n in (0, 7):
            with pytest.raises(InvalidMessage):
                parse_request(make(n), ATTRIBUTES, f"{kind}-{n}")


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
