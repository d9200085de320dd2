"""Time the README's first command as a new user meets it: ``python -m consumer demo`` with cold caches.

Each run gets a fresh numba cache (``NUMBA_CACHE_DIR``, so every kernel is
compiled as on a fresh install) and a fresh data directory
(``MIRT_DATA_DIR``, so the embedded PostgreSQL is initialised from scratch);
then the same demo runs again on those now warm caches, with ``--fresh``
(without it, a second demo adds the next week: twice the answers). The log is read as it
arrives, so the longest silence (the most time between two log lines, or
from the start to the first) is the one a person watching would see; the
CPU time (user + system) is that of the demo and the processes it waited
for (the kernels' compiling in the background), not the database server's:
on a busy machine it says what the run itself cost. The
local Pub/Sub server is downloaded once into the user cache directory
before the first timed run and not timed: it needs the network, not the
machine.

Prints one markdown row per run for the results table of benchmarks/README.md,
then the machine (cores, load averages, versions).

    python benchmarks/first_run.py            # 3 cold runs, each followed by a warm one
    python benchmarks/first_run.py --runs 1
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def timed_demo(numba_cache: Path, data_dir: Path, extra: list[str]) -> dict:
    """Run the demo once; its wall and CPU time, the longest gap between log lines and its exit status."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DATABASE_URL", "DB_"))}
    env.pop("INSTANCE_CONNECTION_NAME", None)
    env.update({"NUMBA_CACHE_DIR": str(numba_cache), "MIRT_DATA_DIR": str(data_dir), "LOG_FORMAT": "json"})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "consumer", "demo", *extra], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    arrivals: list[tuple[float, str]] = []

    def read() -> None:
        for line in process.stderr:
            arrivals.append((time.monotonic(), line.strip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    status = process.wait()
    reader.join()
    ended = time.monotonic()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    moments = [started] + [t for t, _ in arrivals] + [ended]
    gaps = [(later - earlier, i) for i, (earlier, later) in enumerate(zip(moments, moments[1:]))]
    longest, where = max(gaps)
    quiet_after = arrivals[where - 1][1][:120] if where > 0 else "(start)"
    return {"seconds": ended - started, "cpu": cpu, "silence": longest, "after": quiet_after, "status": status,
            "tail": [line for _, line in arrivals[-5:]]}


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    import numba
    import numpy
    return (f"{os.cpu_count()} cores, load average {load} (1, 5, 15 min), Python {platform.python_version()}, "
            f"numpy {numpy.__version__}, numba {numba.__version__}, {platform.platform()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="cold runs (each followed by a warm one; default 3)")
    parser.add_argument("demo_args", nargs="*", help="extra flags for the demo (after --)")
    args = parser.parse_args()

    import platformdirs
    from consumer.bus import local_server
    local_server.install(Path(platformdirs.user_cache_dir("irt-calibration")))  # the one download, not timed

    print(f"machine before: {machine()}", file=sys.stderr)
    print("| size (responses) | engine | fit (s) | EAP (s) | total (s) | peak RSS (GB) | RMSE a | RMSE b | RMSE θ "
          "| notes |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    cold_times, warm_times = [], []
    for run in range(args.runs):
        scratch = Path(tempfile.mkdtemp(prefix="mirt-first-run-"))
        try:
            cold = timed_demo(scratch / "numba", scratch / "data", args.demo_args)
            warm = timed_demo(scratch / "numba", scratch / "data", ["--fresh", *args.demo_args])
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for label, result in (("cold", cold), ("warm", warm)):
            if result["status"] != 0:
                print(f"run {run + 1} ({label}) exited {result['status']}:\n" + "\n".join(result["tail"]),
                      file=sys.stderr)
                return 1
        cold_times.append(cold["seconds"])
        warm_times.append(warm["seconds"])
        print(f"| demo (160k) | `python -m consumer demo`, first run after install (cold caches) | – | – "
              f"| {cold['seconds']:.1f} | – | – | – | – | CPU {cold['cpu']:.1f} s; longest silence "
              f"{cold['silence']:.1f} s; the same demo again (warm caches, --fresh): {warm['seconds']:.1f} s (CPU "
              f"{warm['cpu']:.1f} s), longest silence {warm['silence']:.1f} s |")
        print(f"run {run + 1}: cold {cold['seconds']:.1f} s, CPU {cold['cpu']:.1f} s (longest silence "
              f"{cold['silence']:.1f} s, after: {cold['after']}); warm {warm['seconds']:.1f} s, CPU "
              f"{warm['cpu']:.1f} s", file=sys.stderr)
    print(f"median of {args.runs}: cold {statistics.median(cold_times):.1f} s, warm "
          f"{statistics.median(warm_times):.1f} s", file=sys.stderr)
    print(f"machine after: {machine()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
