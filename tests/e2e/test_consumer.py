"""The Pub/Sub consumer against a real Pub/Sub server (gRPC, the real client) and a real PostgreSQL."""

from __future__ import annotations

import time

import pytest

from tests.support.database import rows
from tests.support.platform_data import small_platform
from tests.support.poison import POISON
from tests.support.tcp_proxy import CuttableProxy


def test_a_request_in_gives_a_completed_event_out_and_rows_in_the_database(engine, broker, consumers):
    small_platform(engine)
    consumer = consumers()
    assert consumer.health("/healthz") == (200, {"status": "ok"})
    status, body = consumer.health("/readyz")
    assert status == 200 and body["checks"] == {"database": "ok", "subscription": "ok"}

    broker.request({"request_id": "weekly-2026-48", "requested_by": "cloud-scheduler"})
    ((event, attributes),) = broker.completed(1)

    assert event["request_id"] == "weekly-2026-48" and event["status"] == "succeeded"
    assert attributes["ce-type"] == "com.exam-prep.calibration.completed.v1"
    assert attributes["ce-specversion"] == "1.0" and attributes["content-type"] == "application/json"
    ((status, constants),) = rows(engine, "SELECT status, model_spec->'linking_constants' FROM mirt_fit_meta "
                                          "WHERE run_id = CAST(:r AS uuid)", r=event["run_id"])
    assert status == "succeeded"
    assert event["linking_constants"]["slope"] == pytest.approx(constants["slope"])
    assert event["linking_constants"]["slope"] == pytest.approx(1.2, abs=0.15)
    assert event["linking_constants"]["intercept"] == pytest.approx(0.3, abs=0.15)
    assert event["counts"]["observations"] == 24000 and event["counts"]["anchors"] == 12
    assert rows(engine, "SELECT count(*) FROM mirt_item_params WHERE run_id = CAST(:r AS uuid)",
                r=event["run_id"])[0][0] == 60


def test_a_duplicate_request_runs_once_and_is_answered_twice(engine, broker, consumers):
    small_platform(engine)
    consumers()
    broker.request({"request_id": "ad-hoc-7"})
    broker.request({"request_id": "ad-hoc-7"})
    events = broker.completed(2)
    assert [e["request_id"] for e, _ in events] == ["ad-hoc-7", "ad-hoc-7"]
    assert events[0][0]["run_id"] == events[1][0]["run_id"]
    assert rows(engine, "SELECT count(*) FROM mirt_fit_meta WHERE request_id = 'ad-hoc-7'")[0][0] == 1


def test_malformed_messages_are_acked_recorded_dead_lettered_and_the_consumer_goes_on(engine, broker, consumers):
    small_platform(engine)
    consumer = consumers()
    broker.request(b"{not json")
    broker.request({"overrides": {"lookback_days": -3}})
    broker.request({"request_id": "after-the-bad-ones"})

    ((event, _),) = broker.completed(1)
    assert event["request_id"] == "after-the-bad-ones" and event["status"] == "succeeded"
    reasons = [r[0] for r in rows(engine, "SELECT reason FROM mirt_rejected_message ORDER BY received_at")]
    assert len(reasons) == 2
    assert reasons[0].startswith("body is not JSON")
    assert "overrides/lookback_days: -3 is less than the minimum of 1" in reasons[1]
    dead = broker.pull("dead-letter-watch", 2)
    assert sorted(m.attributes["rejected-reason"][:16] for m in dead) == sorted(r[:16] for r in reasons)
    assert sum("rejected and acked" in m for m in consumer.messages()) == 2


def test_poison_bytes_interleaved_with_valid_requests_are_rejected_once_and_every_request_answered(
        engine, broker, consumers):
    small_platform(engine, n_persons=300, n_items=25, per_person=10)
    consumer = consumers()
    poisons = list(POISON.values())
    for n, body in enumerate(poisons):
        broker.request(body)
        broker.request({"request_id": f"valid-{n}"})

    answered = broker.completed(len(poisons), timeout=300)

    assert sorted(e["request_id"] for e, _ in answered) == sorted(f"valid-{n}" for n in range(len(poisons)))
    assert all(e["status"] == "succeeded" for e, _ in answered)
    reasons = [r[0] for r in rows(engine, "SELECT reason FROM mirt_rejected_message")]
    assert len(reasons) == len(poisons) and max(map(len, reasons)) < 600  # each once, none looping
    assert consumer.health("/healthz")[0] == 200


def test_while_the_database_is_down_requests_are_nacked_and_completed_later(engine, broker, consumers, server_url):
    small_platform(engine)
    proxy = CuttableProxy.in_front_of(server_url)
    try:
        consumer = consumers(database=proxy.url(engine.url))
        proxy.cut()
        broker.request({"request_id": "while-down"})
        consumer.wait_for_log("nacked, Pub/Sub will redeliver it", count=2, timeout=60)
        assert consumer.health("/readyz")[1]["checks"]["database"] == "failing"
        assert broker.completed(1, timeout=2) == []
        proxy.restore()
        ((event, _),) = broker.completed(1, timeout=120)
    finally:
        proxy.close()
    assert event["request_id"] == "while-down" and event["status"] == "succeeded"
    assert rows(engine, "SELECT status FROM mirt_fit_meta WHERE request_id = 'while-down'") == [("succeeded",)]


def test_during_a_partition_readiness_answers_503_within_3_s_and_requests_wait_for_the_network(
        engine, broker, consumers, server_url):
    small_platform(engine)
    proxy = CuttableProxy.in_front_of(server_url)
    try:
        consumer = consumers(database=proxy.url(engine.url))
        assert consumer.health("/readyz")[0] == 200
        proxy.partition()  # connections stay open, nothing flows
        answers = []
        for _ in range(3):  # a check still stuck from the probe before holds up none after it
            started = time.monotonic()
            status, body = consumer.health("/readyz")
            answers.append((status, body["checks"]["database"], time.monotonic() - started))
        assert all(status == 503 and database in ("timed out", "failing") for status, database, _ in answers)
        assert max(took for *_, took in answers) < 3.0, answers  # Kubernetes' probe timeout: the promise
        broker.request({"request_id": "during-the-partition"})
        # The run's first connection gives up at its connect timeout instead of hanging: nacked, retried.
        consumer.wait_for_log("nacked, Pub/Sub will redeliver it", timeout=60)
        proxy.heal()
        ((event, _),) = broker.completed(1, timeout=120)
        assert consumer.health("/readyz")[0] == 200
    finally:
        proxy.close()
    assert event["request_id"] == "during-the-partition" and event["status"] == "succeeded"


def test_sigterm_during_a_run_writes_nothing_and_the_request_completes_after_restart(engine, broker, consumers):
    small_platform(engine, n_persons=4000, n_items=200, per_person=30)
    # A fit that goes on for long: a tolerance EM hardly reaches, on a very fine grid.
    slow = consumers(MIRT_EM_TOLERANCE="1e-14", MIRT_EM_MAX_ITERATIONS="1000000", MIRT_QUADRATURE_POINTS="4001",
                     MIRT_SHUTDOWN_GRACE_SECONDS="8")
    broker.request({"request_id": "interrupted"})
    slow.wait_for_log("fitting 2PL")
    time.sleep(1.0)

    code, took = slow.terminate()

    assert code == 0 and took < 8.0, (code, took)
    assert any("abandoned" in m for m in slow.messages())
    assert rows(engine, "SELECT status FROM mirt_fit_meta") == [("abandoned",)]
    for table in ("mirt_item_params", "mirt_item_params_history", "mirt_ability", "mirt_ability_history"):
        assert rows(engine, f"SELECT count(*) FROM {table}")[0][0] == 0, table
    assert broker.completed(1, timeout=2) == []

    consumers()  # restarted, with the default tolerance
    ((event, _),) = broker.completed(1, timeout=120)
    assert event["request_id"] == "interrupted" and event["status"] == "succeeded"
    assert sorted(r[0] for r in rows(engine, "SELECT status FROM mirt_fit_meta")) == ["abandoned", "succeeded"]


def test_sigterm_during_the_loads_statement_cancels_it_and_exits_within_the_grace_period(engine, broker, consumers):
    small_platform(engine, n_persons=300, n_items=25, per_person=10)
    with engine.begin() as conn:  # attempt as a VIEW (as in production) over a query that takes its time
        conn.exec_driver_sql("ALTER TABLE attempt RENAME TO attempt_rows")
        conn.exec_driver_sql("CREATE VIEW attempt AS SELECT * FROM attempt_rows WHERE (SELECT pg_sleep(12) IS NOT NULL)")
    consumer = consumers(MIRT_SHUTDOWN_GRACE_SECONDS="3")
    broker.request({"request_id": "during-the-load"})
    deadline = time.monotonic() + 60
    while not rows(engine, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%attempt%' "
                           "AND pid <> pg_backend_pid()")[0][0]:
        assert time.monotonic() < deadline, "the load never started"
        time.sleep(0.1)

    code, took = consumer.terminate()

    assert code == 0 and took < 3.0, (code, took)
    assert rows(engine, "SELECT status FROM mirt_fit_meta") == [("abandoned",)]
    assert broker.completed(1, timeout=2) == []


@pytest.mark.slow
def test_a_burst_of_100_requests_is_answered_each_once_one_run_at_a_time(engine, broker, consumers):
    small_platform(engine, n_persons=300, n_items=25, per_person=10)
    ids = [f"burst-{i:03d}" for i in range(100)]
    for request_id in ids:
        broker.request({"request_id": request_id})
    consumers()

    events = broker.completed(100, timeout=400)

    # No ordering key (nothing may hold a request back behind another): each answered once, in any order.
    assert sorted(e["request_id"] for e, _ in events) == ids
    assert all(e["status"] == "succeeded" for e, _ in events)
    runs = rows(engine, "SELECT request_id, started_at, finished_at FROM mirt_fit_meta ORDER BY started_at")
    assert sorted(r[0] for r in runs) == ids
    assert all(later[1] >= earlier[2] for earlier, later in zip(runs, runs[1:])), "two runs overlapped"


def test_publish_waits_for_and_prints_the_matching_completed_event(engine, broker, consumers):
    import json
    import os
    import subprocess
    import sys
    small_platform(engine)
    consumers()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRT_")}
    env.update({"GOOGLE_CLOUD_PROJECT": broker.project, "PUBSUB_EMULATOR_HOST": broker.host, "LOG_FORMAT": "json"})
    result = subprocess.run([sys.executable, "-m", "consumer", "publish", "--request-id", "from-the-cli",
                             "--model", "1PL", "--wait", "--timeout", "120"],
                            capture_output=True, text=True, env=env, timeout=180, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    event = json.loads(result.stdout)
    assert event["request_id"] == "from-the-cli" and event["model"] == "1PL" and event["status"] == "succeeded"


def test_the_consumer_continues_the_trace_carried_by_the_request(engine, broker, consumers):
    from consumer.bus import events
    small_platform(engine)
    consumer = consumers(OTEL_TRACES_EXPORTER="console")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    attributes = events.cloudevent_attributes(events.REQUESTED_TYPE,
                                              {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    broker.request({"request_id": "traced"}, attributes=attributes)
    ((event, completed_attributes),) = broker.completed(1)
    assert event["status"] == "succeeded"
    # The completed event carries the same trace on to its subscribers...
    assert completed_attributes["traceparent"].split("-")[1] == trace_id
    consumer.terminate()
    spans = consumer.log_path.read_text()
    # ...and the console exporter shows the message's and the steps' spans inside it.
    for name in ("calibration-requested process", "calibration.fit", "calibration-completed publish"):
        assert f'"name": "{name}"' in spans, name
    assert spans.count(f'"trace_id": "0x{trace_id}"') >= 8


def test_two_replicas_never_calibrate_at_once_and_answer_every_request_once(engine, broker, consumers):
    small_platform(engine, n_persons=2000, n_items=60, per_person=20)
    replicas = [consumers(), consumers()]
    ids = [f"parallel-{i}" for i in range(6)]
    for request_id in ids:
        broker.request({"request_id": request_id})

    events = broker.completed(6, timeout=240)

    assert sorted(e["request_id"] for e, _ in events) == ids
    runs = rows(engine, "SELECT request_id, started_at, finished_at, status FROM mirt_fit_meta ORDER BY started_at")
    assert sorted(r[0] for r in runs) == ids and {r[3] for r in runs} == {"succeeded"}  # one run per request
    assert all(later[1] >= earlier[2] for earlier, later in zip(runs, runs[1:])), "two runs overlapped"
    answered = [sum("published calibration-completed" in m for m in replica.messages()) for replica in replicas]
    assert sum(answered) == 6
