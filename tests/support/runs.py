"""Calibration runs in tests: the request they answer, a bank whose anchors moved, a server that ended a backend."""

from __future__ import annotations

import time

import sqlalchemy as sa

from consumer.run import CalibrationRequest

from .database import rows
from .platform_data import AS_OF, FIRST_QUESTION_ID

REQUEST = CalibrationRequest(request_id="req-1", requested_by="tests", as_of=AS_OF)


def plant_drift(conn, items: dict[int, float]) -> None:
    """Move the reference difficulty of the anchors at these positions by the given logits."""
    for position, shift in items.items():
        conn.execute(sa.text("UPDATE question SET meta = jsonb_set(meta, '{irt,b}', "
                             "to_jsonb((meta->'irt'->>'b')::float8 + :shift)) WHERE id = :id"),
                     {"shift": shift, "id": FIRST_QUESTION_ID + position})


def wait_until_gone(engine, pid: int, timeout: float = 10.0) -> None:
    """Wait until the server has ended backend ``pid`` (pg_terminate_backend only signals it)."""
    deadline = time.monotonic() + timeout
    while rows(engine, "SELECT 1 FROM pg_stat_activity WHERE pid = :pid", pid=pid):
        assert time.monotonic() < deadline, f"backend {pid} still there {timeout} s after it was terminated"
        time.sleep(0.02)
