"""Poison messages recorded: whatever bytes a rejected request holds, its row in the database can be written."""

import sqlalchemy as sa

from consumer.db import queries

from tests.support.poison import POISON


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

