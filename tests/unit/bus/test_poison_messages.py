"""Poison messages: whatever bytes a request holds, it is an invalid message with a short reason."""

import pytest

from consumer.bus import events
from consumer.bus.events import InvalidMessage, parse_request

from tests.support.poison import POISON, POISON_KINDS

ATTRIBUTES = events.cloudevent_attributes(events.REQUESTED_TYPE)


@pytest.mark.parametrize("body", POISON.values(), ids=POISON.keys())
def test_poison_bodies_are_invalid_messages_with_a_bounded_reason(body):
    with pytest.raises(InvalidMessage) as caught:
        parse_request(body, ATTRIBUTES, "m-1")
    assert len(events.bounded(str(caught.value))) <= events.MAX_REASON_CHARS + 40


def test_a_valid_request_still_parses():
    request = parse_request(b'{"request_id": "r-1", "overrides": {"model": "1PL"}}', ATTRIBUTES, "m-2")
    assert request.request_id == "r-1" and request.overrides == {"model": "1PL"}


def test_every_kind_of_poison_copy_is_rejected():
    for kind, make in POISON_KINDS.items():
        for n in (0, 7):
            with pytest.raises(InvalidMessage):
                parse_request(make(n), ATTRIBUTES, f"{kind}-{n}")
