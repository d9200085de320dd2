"""Poison messages: whatever bytes a request holds, it is rejected with a short reason and recorded."""

import json

import pytest
import sqlalchemy as sa

from consumer.bus import events
from consumer.bus.events import InvalidMessage, parse_request
from consumer.db import queries

ATTRIBUTES = events.cloudevent_attributes(events.REQUESTED_TYPE)
POISON = {
    "a NUL in the request id": b'{"request_id": "abc\\u0000def"}',
    "a lone surrogate in requested_by": b'{"requested_by": "x\\ud800y"}',
    "JSON nested thousands deep": b"[" * 5000 + b"]" * 5000,
    "an integer of 5,000 digits": b'{"overrides": {"max_obs": ' + b"9" * 5000 + b"}}",
    "a body of 4 MB": json.dumps({"request_id": "x" * 4_000_000}).encode(),
    "a string too long for the schema": json.dumps({"request_id": "y" * 50_000}).encode(),
    "bytes that are not UTF-8": b'{"request_id": "\xff\xfe"}',
}


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
