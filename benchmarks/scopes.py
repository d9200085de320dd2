"""Six scopes fanned out to one consumer replica, then to three: wall time, and what limits it.

The platform holds six item banks (scopes of ``meta.subject``), each answered
by the same students. For each number of replicas, ``python -m consumer
serve`` runs that many times (as Kubernetes would run the pods) against one
PostgreSQL and the local Pub/Sub server; one fan-out request (``"scope":
"*"``) is published, and the clock stops at the sixth calibration-completed
event. Each replica's numba kernels use ``--threads`` threads (the pod's CPU
limit is 2).

Prints a markdown table (wall time, the runs' own durations, how many ran at
once at most, how the runs spread over the replicas) and the machine.

    python benchmarks/scopes.py                      # 1 and 3 replicas
    python benchmarks/scopes.py --replicas 1 2 3 --students 8000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare import fresh_database  # noqa: E402  (a database on the server the other benchmarks use)
from tests.support.platform_data import SCOPE_SCALES, load_scoped_simulation  # noqa: E402

SCOPES = tuple(SCOPE_SCALES)


def fill(engine, students: int, items: int, answers: int) -> int:
    """The tests' six banks (``tests/support/platform_data.py``), ``items`` questions each, every student answering
    ``answers`` of each, every tenth question an anchor; returns the attempts."""
    from consumer.irt.simulate import simulate
    banks = {scope: simulate(students, items, answers, seed=100 + n) for n, scope in enumerate(SCOPES)}
    with engine.begin() as conn:
        load_scoped_simulation(conn, banks, anchor_every=10)
    return sum(bank.responses.n_obs for bank in banks.values())


def run_fan_out(replicas: int, database_url: str, pubsub_host: str, threads: int, workdir: Path) -> dict:
    from google.cloud import pubsub_v1
    from consumer.bus import events
    from tests.support.broker import COMPLETED, REQUESTS, RETRY_POLICY, SUBSCRIPTION
    project = f"bench-{uuid.uuid4().hex[:8]}"
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    for topic in (REQUESTS, COMPLETED):
        publisher.create_topic(name=publisher.topic_path(project, topic))
    subscriber.create_subscription(request={"name": subscriber.subscription_path(project, SUBSCRIPTION),
                                            "topic": publisher.topic_path(project, REQUESTS),
                                            "ack_deadline_seconds": 10, "retry_policy": RETRY_POLICY})
    watch = subscriber.subscription_path(project, "watch")
    subscriber.create_subscription(name=watch, topic=publisher.topic_path(project, COMPLETED))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DB_", "OTEL_"))}
    env.update({"DATABASE_URL": database_url, "GOOGLE_CLOUD_PROJECT": project, "PUBSUB_EMULATOR_HOST": pubsub_host,
                "MIRT_SCOPE_KEY": "subject", "MIRT_LOOKBACK_DAYS": "3650",
                "LOG_FORMAT": "json", "NUMBA_NUM_THREADS": str(threads)})
    processes, logs = [], []
    try:
        for n in range(replicas):
            logs.append(workdir / f"{replicas}-replicas-{n}.log")
            processes.append(subprocess.Popen([sys.executable, "-m", "consumer", "serve"],
                                              env={**env, "PORT": str(18080 + n)}, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=logs[-1].open("w")))
        deadline = time.monotonic() + 120
        while not all("consumer pulling from" in log.read_text() for log in logs):
            if time.monotonic() > deadline:
                raise SystemExit("the replicas did not start:\n" + "\n".join(log.read_text()[-2000:] for log in logs))
            time.sleep(0.2)
        started = time.monotonic()
        publisher.publish(publisher.topic_path(project, REQUESTS), events.encode({"scope": "*"}),
                          **events.cloudevent_attributes(events.REQUESTED_TYPE)).result(timeout=30)
        done = []
        while len(done) < len(SCOPES) and time.monotonic() < started + 1800:
            response = subscriber.pull(subscription=watch, max_messages=10, timeout=10)
            if response.received_messages:
                subscriber.acknowledge(subscription=watch, ack_ids=[m.ack_id for m in response.received_messages])
            done += [json.loads(m.message.data) for m in response.received_messages]
        wall = time.monotonic() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=120)
    spans, per_replica = [], []
    for log in logs:
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        per_replica.append(sum(" starting " in x["message"] and x["message"].startswith("[") for x in lines))
    for event in done:
        spans.append(event["durations"]["total"])
    return {"replicas": replicas, "threads": threads, "wall": wall, "runs": len(done),
            "ok": all(e["status"] == "succeeded" for e in done), "run_seconds": spans,
            "spread": per_replica, "steps": {step: sum(e["durations"].get(step, 0.0) for e in done)
                                             for step in ("load", "fit", "diagnostics", "score", "write")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--threads", type=int, default=2, help="NUMBA_NUM_THREADS of each replica (default 2)")
    parser.add_argument("--students", type=int, default=6000)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--answers", type=int, default=40, help="answers per student and scope")
    args = parser.parse_args()

    import platformdirs
    from consumer.bus import local_server
    from consumer.db.migrations import migrate
    server = local_server.start(Path(platformdirs.user_cache_dir("irt-calibration")))
    os.environ["PUBSUB_EMULATOR_HOST"] = server.host  # this process's clients, and the replicas
    rows = []
    try:
        with fresh_database("mirt_bench_scopes") as (url, engine), \
                tempfile.TemporaryDirectory(prefix="mirt-bench-scopes-") as workdir:
            attempts = fill(engine, args.students, args.items, args.answers)
            migrate(engine)
            for replicas in args.replicas:
                with engine.begin() as conn:  # each fan-out starts from the same state
                    conn.exec_driver_sql("TRUNCATE mirt_fit_meta, mirt_item_params, mirt_item_params_history, "
                                         "mirt_ability, mirt_ability_history, mirt_run_fence")
                rows.append(run_fan_out(replicas, url.render_as_string(hide_password=False), server.host,
                                        args.threads, Path(workdir)))
    finally:
        server.stop()
    print(f"six scopes, {args.students} students x {args.items} items x {args.answers} answers each "
          f"({attempts:,} attempts in all), one fan-out request\n")
    print("| replicas | numba threads each | wall, publish to 6th completed | runs' own durations (sum; each) "
          "| steps, summed over the runs | runs per replica | speed-up |")
    print("|---|---|---|---|---|---|---|")
    base = rows[0]["wall"]
    for row in rows:
        each = ", ".join(f"{s:.1f}" for s in sorted(row["run_seconds"]))
        print(f"| {row['replicas']} | {row['threads']} | {row['wall']:.1f} s{'' if row['ok'] else ' (NOT all ok)'} "
              f"| {sum(row['run_seconds']):.1f} s ({each}) | "
              f"{', '.join(f'{step} {seconds:.1f}' for step, seconds in row['steps'].items())} s | "
              f"{'/'.join(map(str, row['spread']))} | {base / row['wall']:.2f}x |")
    print(f"\nmachine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, "
          f"Python {platform.python_version()}")


if __name__ == "__main__":
    main()
