"""/readyz answers within its deadline whatever its checks do: a check that hangs counts as failing."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

from consumer.bus.local_server import free_port
from consumer.health import CHECK_SECONDS, HealthServer


def readyz(port: int) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as answer:
            status, body = answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        status, body = error.code, json.loads(error.read())
    return status, body, time.monotonic() - started


def test_a_check_that_hangs_is_reported_timed_out_within_the_deadline_and_holds_up_no_later_probe():
    stuck = threading.Event()
    server = HealthServer(free_port(), alive=lambda: True, host="127.0.0.1",
                          ready_checks={"database": lambda: stuck.wait(60), "subscription": lambda: True})
    server.start()
    try:
        answers = [readyz(server.port) for _ in range(3)]  # each probe starts another stuck check
        assert [(status, body["checks"]) for status, body, _ in answers] == \
            [(503, {"database": "timed out", "subscription": "ok"})] * 3
        assert all(took < CHECK_SECONDS + 1.0 for *_, took in answers), answers
        stuck.set()  # the network is back: the next probe is answered by the check itself
        status, body, _ = readyz(server.port)
        assert (status, body) == (200, {"status": "ready", "checks": {"database": "ok", "subscription": "ok"}})
    finally:
        stuck.set()
        server.stop()


def test_a_check_that_raises_is_failing():
    def broken() -> bool:
        raise RuntimeError("no route to host")

    server = HealthServer(free_port(), alive=lambda: True, host="127.0.0.1",
                          ready_checks={"database": broken, "subscription": lambda: True})
    server.start()
    try:
        status, body, _ = readyz(server.port)
        assert (status, body["checks"]["database"]) == (503, "failing")
    finally:
        server.stop()
