"""The warm 500k command: ``python -m consumer calibrate --dry-run`` as a process, start to exit.

Runs the command ``--runs`` times on the database ``scale.py --size 500k``
makes (``mirt_scale_500k`` on the tests' server; another with
``--database-url``), numba's cache warm, and prints a markdown table: the
wall time of the whole process, its CPU time, and when (seconds from the
process's start) the run started, the answers were loaded, the fit and its
standard errors ended and the run finished, read from the log's own
timestamps; the machine's load average beside each.

    python benchmarks/scale.py --size 500k --generate-only   # the data, once
    python benchmarks/warm_command.py --runs 3
    python benchmarks/warm_command.py --runs 3 --standard-errors approximate
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/mirt_scale_500k"


def one_run(url: str, standard_errors: str) -> dict:
    env = {**os.environ, "DATABASE_URL": url, "MIRT_STANDARD_ERRORS": standard_errors, "LOG_FORMAT": "json"}
    before, started = os.times(), time.time()
    done = subprocess.run([sys.executable, "-m", "consumer", "calibrate", "--dry-run"], env=env,
                          capture_output=True, text=True)
    wall, after = time.time() - started, os.times()
    if done.returncode != 0:
        raise SystemExit(f"the command failed ({done.returncode}):\n{done.stderr[-2000:]}")
    marks, fit = {}, ""
    for line in done.stderr.splitlines() + done.stdout.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        message, at = record.get("message", ""), datetime.fromisoformat(record["time"]).timestamp() - started
        if message.startswith("calibration run ") and "starting" in message:
            marks.setdefault("started", at)
        elif message.startswith("loaded ") and "observations" in message:
            marks.setdefault("loaded", at)
        elif message.startswith("fitted "):
            marks.setdefault("fitted", at)
            fit = message.split(":", 1)[0]
        elif message.startswith("calibration run ") and "succeeded" in message:
            marks["finished"] = at
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall": wall, "cpu": cpu, "fit": fit, "load": os.getloadavg()[0], **marks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--standard-errors", choices=("exact", "approximate"), default="exact")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    args = parser.parse_args()
    print(f"`python -m consumer calibrate --dry-run`, MIRT_STANDARD_ERRORS={args.standard_errors}\n")
    print("| run | wall (s) | CPU (s) | run started | loaded | fitted | finished | the fit's line | load average |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for k in range(args.runs):
        r = one_run(args.database_url, args.standard_errors)
        at = [f"{r[m]:.2f}" if m in r else "–" for m in ("started", "loaded", "fitted", "finished")]
        print(f"| {k + 1} | {r['wall']:.2f} | {r['cpu']:.2f} | {' | '.join(at)} | {r['fit']} | {r['load']:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
