"""Calibration scopes across replicas: ``python -m consumer serve`` processes on the local Pub/Sub server, as in production."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.database import rows
from tests.support.platform_data import SCOPE_SCALES, load_scoped_simulation, simulated_banks


SIX = list(SCOPE_SCALES)


def publish_and_wait(broker, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DB_", "OTEL_"))}
    env.update({"GOOGLE_CLOUD_PROJECT": broker.project, "PUBSUB_EMULATOR_HOST": broker.host, "LOG_FORMAT": "json"})
    return subprocess.run([sys.executable, "-m", "consumer", "publish", *args], env=env, capture_output=True,
                          text=True, timeout=400, stdin=subprocess.DEVNULL)


def test_three_replicas_calibrate_six_scopes_of_a_fan_out_each_once_in_parallel(engine, broker, consumers):
    with engine.begin() as conn:
        load_scoped_simulation(conn, simulated_banks(SIX, n_persons=1500, n_items=60, per_person=20), days_before=1)
    as_of = {"MIRT_LOOKBACK_DAYS": "3650"}  # the answers are a day before AS_OF, in the past of now
    replicas = [consumers(MIRT_SCOPE_KEY="subject", **as_of) for _ in range(3)]

    # The weekly fan-out, delivered twice (a duplicate publish), then a second fan-out waited on by the CLI.
    broker.request({"request_id": "weekly-48", "requested_by": "cloud-scheduler", "scope": "*"})
    broker.request({"request_id": "weekly-48", "requested_by": "cloud-scheduler", "scope": "*"})
    waited = publish_and_wait(broker, "--scope", "*", "--request-id", "weekly-49", "--wait", "--timeout", "300")

    assert waited.returncode == 0, waited.stderr[-3000:]
    answers = [json.loads(line) for line in waited.stdout.splitlines()]
    assert sorted(a["scope"] for a in answers) == sorted(SIX)
    assert {a["request_id"] for a in answers} == {f"weekly-49/{s}" for s in SIX}
    assert all(a["status"] == "succeeded" and a["fan_out"] == {"parent_request_id": "weekly-49", "scopes": 6}
               for a in answers)
    # Every scope of the first fan-out answered too (twice: its duplicate's children are answered again).
    first = [e for e, _ in broker.completed(18, timeout=300) if e["request_id"].startswith("weekly-48/")]
    assert sorted({e["request_id"] for e in first}) == sorted(f"weekly-48/{s}" for s in SIX)

    runs = rows(engine, "SELECT request_id, scope, status, started_at, finished_at FROM mirt_fit_meta "
                        "ORDER BY started_at")
    # Each scope calibrated exactly once per fan-out: the duplicated fan-out added no run.
    assert sorted((r[0], r[1]) for r in runs) == sorted((f"{p}/{s}", s) for p in ("weekly-48", "weekly-49")
                                                        for s in SIX)
    assert all(r[2] == "succeeded" for r in runs)
    overlap = lambda x, y: x[3] < y[4] and y[3] < x[4]
    # Runs of one scope never overlap; runs of different scopes do (three replicas at work at once).
    for s in SIX:
        mine = [r for r in runs if r[1] == s]
        assert not overlap(*mine), f"two runs of scope {s} overlapped"
    assert any(overlap(x, y) for x in runs for y in runs if x[1] != y[1])
    working = [sum(m.startswith(f"[{s}] calibration run ") and " starting " in m for s in SIX
                   for m in replica.messages()) for replica in replicas]
    assert sum(working) == 12 and sum(n > 0 for n in working) >= 2, working
    # Abilities per (student, scope): every student has one in each of the six scopes.
    assert rows(engine, "SELECT count(DISTINCT user_id), count(*) FROM mirt_ability") == [(1500, 1500 * 6)]
    # A busy scope's request waited its turn without spinning: its redeliveries backed off (the retry policy,
    # 1 s doubling to 10 s), so a handful of deferrals; nothing else was nacked.
    messages = [m for replica in replicas for m in replica.messages()]
    deferred = sum("holds its run lock; nacked at once" in m for m in messages)
    assert deferred < 30
    assert not any("nacked, Pub/Sub will redeliver" in m for m in messages)


def test_publish_wait_on_a_rejected_request_says_why_and_exits_2_instead_of_waiting_out_its_timeout(
        engine, broker, consumers):
    with engine.begin() as conn:
        load_scoped_simulation(conn, simulated_banks(["math", "english"], n_persons=300, n_items=25, per_person=10))
    consumers(MIRT_SCOPE_KEY="grade")  # a key no question has: no scope at all

    for scope, reason in (("*", "asks for every scope, and no question has a value under meta.grade"),
                          ("nosuchscope", "scope 'nosuchscope' is not in the bank: no question has a value under "
                                          "meta.grade")):
        waited = publish_and_wait(broker, "--scope", scope, "--wait", "--timeout", "120")
        assert waited.returncode == 2, waited.stderr[-3000:]
        (answer,) = [json.loads(line) for line in waited.stdout.splitlines()]
        assert answer["rejected"] and answer["status"] == "failed" and reason in answer["error"]
        errors = [json.loads(line)["message"] for line in waited.stderr.splitlines()
                  if line.startswith("{") and json.loads(line)["severity"] == "ERROR"]
        assert len(errors) == 1 and "was rejected by the consumer, and nothing was run" in errors[0]
        assert reason in errors[0]
    assert rows(engine, "SELECT count(*) FROM mirt_fit_meta") == [(0,)]
