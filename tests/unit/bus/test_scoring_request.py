"""A request's overrides.scoring: carried to the run as a setting; a method the service does not have is rejected."""

import pytest

from consumer.bus.events import InvalidMessage, parse_request, request_body
from consumer.settings import Settings


def test_a_request_for_wle_runs_with_wle():
    request = parse_request(b'{"request_id": "r-1", "overrides": {"scoring": "WLE", "model": "1PL"}}', {}, "m-1")
    assert request.overrides == {"scoring": "WLE", "model": "1PL"}
    assert Settings.load({}).with_overrides("request", **request.overrides).scoring == "WLE"
    assert request_body("r-2", scoring="EAP-sum")["overrides"] == {"scoring": "EAP-sum"}


@pytest.mark.parametrize("method", ["median", "wle", 3])
def test_a_scoring_method_outside_the_schema_is_rejected(method):
    body = f'{{"overrides": {{"scoring": {method!r}}}}}'.replace("'", '"').encode()
    with pytest.raises(InvalidMessage, match="scoring"):
        parse_request(body, {}, "m-1")
