"""How long ``serve`` takes to drain a flood of malformed messages with valid requests among them.

The flood is tests/support/poison.py's: ``--per-kind`` copies of each
of the twelve kinds of malformed request issue 9's fault injection sent (a
NUL or an unpaired surrogate in a string, JSON nested thousands deep, an
integer past Python's 4,300 digits, a body over 64 KiB, NUL bytes, bytes
that are not UTF-8, not JSON, schema-invalid, a string too long for the
schema), with ``--valid`` small calibration requests spread among them. It
is published to the local Pub/Sub server first; then one ``python -m
consumer serve`` is started on a fresh database (the PostgreSQL the other
benchmarks use) and drains it. Every malformed message is recorded in
``mirt_rejected_message`` and forwarded to the dead-letter topic; every
valid one runs and is answered.

Drain time runs from the consumer's "consumer pulling from" line to the
last message handled (the log's own times); the process start before it
(Python, numba's cached kernels, the database and Pub/Sub checks) is given
apart. Prints one markdown row per flood size, then the machine.

    python benchmarks/poison_drain.py                       # 300 and 600 malformed, 10 valid
    python benchmarks/poison_drain.py --per-kind 25 --valid 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare import server_url  # noqa: E402  (the same database the other benchmarks use)


def drain(per_kind: int, valid: int, admin_url, pubsub_host: str, workdir: Path) -> dict:
    import sqlalchemy as sa
    from consumer.irt.simulate import simulate
    from tests.support.broker import DEAD_LETTER, Broker, ConsumerProcess
    from tests.support.platform_data import load_simulation
    from tests.support.poison import poison_flood

    name = f"mirt_bench_poison_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    database_url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(database_url)
    process = None
    try:
        with engine.begin() as conn:
            load_simulation(conn, simulate(300, 25, 10, seed=5), anchors=range(0, 25, 5), old_scale=(1.2, 0.3),
                            days_before=1)
        broker = Broker.create(pubsub_host, f"bench-{uuid.uuid4().hex[:8]}")
        flood = poison_flood(per_kind=per_kind, valid=valid)
        for _, body in flood:
            broker.request(body)
        malformed = sum(kind != "valid" for kind, _ in flood)
        launched = time.monotonic()
        process = ConsumerProcess(env={"DATABASE_URL": database_url, "GOOGLE_CLOUD_PROJECT": broker.project,
                                       "PUBSUB_EMULATOR_HOST": pubsub_host, "MIRT_DEAD_LETTER_TOPIC": DEAD_LETTER},
                                  log_path=workdir / f"{name}.log").start()
        start_seconds = time.monotonic() - launched
        answered = broker.completed(valid, timeout=1800)
        process.wait_for_log("rejected and acked", count=malformed, timeout=1800)
        alive = process.process.poll() is None and process.health("/healthz")[0] == 200
        with engine.connect() as conn:
            recorded = conn.execute(sa.text("SELECT count(*), count(DISTINCT message_id), max(length(reason)) "
                                            "FROM mirt_rejected_message")).one()
        process.terminate()
        lines = [json.loads(line) for line in process.log_path.read_text().splitlines() if line.startswith("{")]
    finally:
        if process is not None:
            process.kill()
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()

    def at(line: dict) -> float:
        return datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()

    pulling = next(at(x) for x in lines if x["message"].startswith("consumer pulling from"))
    handled = [at(x) for x in lines if " rejected and acked" in x["message"]
               or x["message"].startswith("published calibration-completed")]
    rejections = sorted(at(x) for x in lines if " rejected and acked" in x["message"])
    return {"malformed": malformed, "valid": valid, "start": start_seconds, "drain": max(handled) - pulling,
            "per_rejection": statistics.median(b - a for a, b in zip(rejections, rejections[1:])),
            "runs": [e["durations"]["total"] for e, _ in answered], "answered": len(answered),
            "recorded": recorded[0], "distinct": recorded[1], "longest_reason": recorded[2], "alive": alive}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, nargs="+", default=[25, 50],
                        help="copies of each of the 12 kinds (default: 25 and 50, i.e. 300 and 600 messages)")
    parser.add_argument("--valid", type=int, default=10, help="valid requests among them (default 10)")
    args = parser.parse_args()

    import platformdirs
    from consumer.bus import local_server
    server = local_server.start(Path(platformdirs.user_cache_dir("irt-calibration")))
    os.environ["PUBSUB_EMULATOR_HOST"] = server.host
    admin_url = server_url()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="poison-drain-") as workdir:
            for per_kind in args.per_kind:
                results.append(drain(per_kind, args.valid, admin_url, server.host, Path(workdir)))
    finally:
        server.stop()

    print("| malformed | valid | start (s) | drain (s) | median s per rejection | valid runs (median s) "
          "| answered | recorded (distinct) | longest reason | alive |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['malformed']} | {r['valid']} | {r['start']:.1f} | {r['drain']:.1f} | {r['per_rejection']:.3f} "
              f"| {statistics.median(r['runs']):.2f} | {r['answered']}/{r['valid']} "
              f"| {r['recorded']} ({r['distinct']}) | {r['longest_reason']} | {'yes' if r['alive'] else 'NO'} |")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{os.cpu_count()} cores, load averages {load}; Python {platform.python_version()}, "
          f"{platform.platform()}; database {admin_url.render_as_string()}")


if __name__ == "__main__":
    main()
