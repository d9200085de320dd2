"""First contact and day-two operations, tried as a new user and an operator try them: real command lines.

- the first demo after an install (an empty numba cache, a fresh data
  directory): never silent for long, its run finds the kernels compiled, and
  the command it ends with shows the run's review page; the next demo finds
  them in the cache and does not speak of compiling;
- no command imports the compiled kernels before its run needs them;
- a first ``calibrate`` on an empty numba cache says that it is compiling;
- the progress line in a terminal is cleared before the next log line;
- Pub/Sub unreachable: ``serve`` and ``publish --wait`` fail within seconds,
  in one line naming the host, with exit status 2;
- a duplicate request's log line carries the run id that answered it.
"""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from consumer.bus.local_server import free_port
from consumer.irt.simulate import simulate

from tests.support.broker import ConsumerProcess
from tests.support.platform_data import AS_OF, load_simulation
from tests.support.cli import cli, error_lines

CHECKOUT = Path(__file__).resolve().parents[2]

#: Longest silence allowed between two log lines of a first run (the goal is 5 s: the heartbeats speak every
#: 3-4 s of compiling; the rest is headroom for a loaded two-core CI machine, where every step is slower).
SILENCE_BOUND = 8.0


def watched(args: list[str], env: dict, timeout: float = 300.0, cwd=None) -> dict:
    """Run ``python -m consumer ARGS`` and note when each stderr line arrived, as a person watching would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DATABASE_URL", "DB_"))}
    full_env.pop("INSTANCE_CONNECTION_NAME", None)
    full_env.update({"LOG_FORMAT": "json", **env})
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "consumer", *args], env=full_env, cwd=cwd, text=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[tuple[float, str]] = []
    out: list[str] = []
    readers = [threading.Thread(target=lambda: lines.extend((time.monotonic(), l) for l in process.stderr)),
               threading.Thread(target=lambda: out.extend(process.stdout))]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=timeout)
    finally:
        process.kill()
        for reader in readers:
            reader.join(timeout=10)
    ended = time.monotonic()
    stdout = "".join(out)
    moments = [started, *(t for t, _ in lines), ended]
    gaps = [(b - a, lines[i - 1][1] if i else "(start)") for i, (a, b) in enumerate(zip(moments, moments[1:]))]
    entries = [json.loads(l) for _, l in lines if l.startswith("{")]
    return {"status": process.returncode, "seconds": ended - started, "longest": max(gaps), "stdout": stdout,
            "messages": [e["message"] for e in entries], "entries": entries}


def between(messages: list[str], first: str, last: str) -> list[str]:
    start = next(i for i, m in enumerate(messages) if first in m)
    end = next(i for i, m in enumerate(messages) if last in m and i > start)
    return messages[start:end + 1]


@pytest.mark.slow
def test_the_first_demo_after_an_install_is_never_silent_and_ends_with_a_report_command_that_works(tmp_path):
    data_dir = tmp_path  # (as in test_cli: the embedded server runs as its own user, and may read it)
    caches = {"NUMBA_CACHE_DIR": str(tmp_path / "numba"), "MIRT_DATA_DIR": str(data_dir),
              "PYTHONPATH": str(CHECKOUT)}  # (run outside the checkout, it still imports this checkout's package)
    demo = watched(["demo"], env=caches, cwd=tmp_path)  # (the printed page is written where the demo ran)
    assert demo["status"] == 0, "\n".join(demo["messages"][-10:])
    silence, after = demo["longest"]
    print(f"first demo: {demo['seconds']:.1f} s, longest silence {silence:.1f} s (after {after[:100]!r})")
    assert silence <= SILENCE_BOUND, f"silent for {silence:.1f} s after {after}"
    messages = demo["messages"]
    assert any(m.startswith("compiling the numerical kernels") for m in messages)  # it says what takes the time
    assert any(m.startswith("numerical kernels compiled in") for m in messages)
    # The run itself finds every kernel compiled (in the background, while the database started and filled).
    run = between(messages, "calibration run", "calibration run")
    assert "succeeded in" in run[-1]
    assert not [m for m in run if "compiling" in m], "the run compiled kernels the warm-up should have compiled"

    # The demo ends with the command that shows its run; pasted as printed, it works.
    printed = demo["stdout"].split("The run's review page")[1].splitlines()[1].strip()
    run_id = re.search(r"report ([0-9a-f-]{36}) --demo", printed)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DATABASE_URL"))}
    env["PYTHONPATH"] = str(CHECKOUT)
    shown = subprocess.run(["bash", "-c", printed], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL)
    assert shown.returncode == 0, shown.stderr
    report = (tmp_path / f"demo-report-{run_id[:8]}.html").read_text()
    assert f"Calibration run {run_id}" in report and "<svg" in report

    # Without --demo the report looks in the embedded server's default database, says so, and leaves it alone.
    elsewhere = cli("report", run_id, "-o", str(tmp_path / "r.html"), env={"MIRT_DATA_DIR": str(data_dir)})
    assert elsewhere.returncode == 1
    (line,) = error_lines(elsewhere)
    assert f"embedded PostgreSQL in {data_dir / 'pgdata'}, database postgres" in line
    assert "it has no mirt_fit_meta table" in line
    assert "a run of the demo is read with --demo" in line and not (tmp_path / "r.html").exists()

    # The next demo loads the kernels from the cache: not a word of compiling.
    again = watched(["demo"], env=caches, cwd=tmp_path)
    assert again["status"] == 0, "\n".join(again["messages"][-10:])
    print(f"second demo: {again['seconds']:.1f} s, longest silence {again['longest'][0]:.1f} s")
    assert not [m for m in again["messages"] if "compiling" in m or "compiled" in m], again["messages"][:5]


#: Run in a fresh process: import what every command imports, print the kernel modules that came along.
_KERNELS_IMPORTED = """
import sys
import consumer.__main__, consumer.bank_admin, consumer.demo, consumer.review, consumer.tagging
from consumer.warmup import KERNEL_MODULES
print(",".join(m for m in KERNEL_MODULES if m in sys.modules))
"""


def test_no_command_imports_the_kernels_before_its_run_needs_them():
    """Importing a kernel module compiles it on a cold cache: the command line, the demo's module and the
    other commands' modules leave that to ``consumer.warmup``, so that a command that never fits starts at
    once and the demo's compiling happens in the background, said in the log."""
    done = subprocess.run([sys.executable, "-c", _KERNELS_IMPORTED], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported before any run: {done.stdout.strip()}"


def test_a_first_calibrate_on_an_empty_numba_cache_says_it_is_compiling(database_url, tmp_path):
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        load_simulation(conn, simulate(1500, 60, 20, seed=3), anchors=range(0, 60, 5), old_scale=(1.1, 0.2))
    engine.dispose()
    first = watched(["calibrate", "--as-of", AS_OF.isoformat()],
                    env={"DATABASE_URL": database_url, "NUMBA_CACHE_DIR": str(tmp_path / "numba")})
    assert first["status"] == 0, "\n".join(first["messages"][-10:])
    silence, after = first["longest"]
    print(f"first calibrate: {first['seconds']:.1f} s, longest silence {silence:.1f} s (after {after[:100]!r})")
    assert silence <= SILENCE_BOUND, f"silent for {silence:.1f} s after {after}"
    compiling = [m for m in first["messages"] if "compiling the numerical kernels" in m]
    assert compiling and "the first run after an install does this once" in compiling[0]


def visible_lines(raw: str) -> list[str]:
    """What a terminal shows of ``raw``: per line, the text after the last carriage return, erasures applied."""
    return [line.rstrip("\r").split("\r")[-1].replace("\x1b[K", "") for line in raw.split("\n")]


def test_the_progress_line_in_a_terminal_is_cleared_before_the_next_log_line(database_url):
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        load_simulation(conn, simulate(1500, 60, 20, seed=3), anchors=range(0, 60, 5), old_scale=(1.1, 0.2))
    engine.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DATABASE_URL", "DB_", "LOG_"))}
    env["DATABASE_URL"] = database_url
    leader, follower = pty.openpty()  # stderr is a terminal: text log lines and the redrawn progress line
    process = subprocess.Popen([sys.executable, "-m", "consumer", "calibrate", "--as-of", AS_OF.isoformat()],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    raw = b"".join(chunks).decode()
    assert "EM iteration" in raw, "no progress line was drawn"
    shown = visible_lines(raw)
    glued = [line for line in shown if "EM iteration" in line and re.search(r"\d\d:\d\d:\d\d (INFO|WARNING)", line)]
    assert not glued, glued
    assert any(re.match(r"\d\d:\d\d:\d\d INFO +fitted 2PL", line) for line in shown)


@pytest.mark.parametrize("args", [["serve"], ["publish", "--wait", "--timeout", "20"]])
def test_an_unreachable_pubsub_emulator_is_one_line_within_seconds_and_exit_status_2(args):
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = cli(*args, env={"GOOGLE_CLOUD_PROJECT": "demo-project", "PUBSUB_EMULATOR_HOST": host,
                             "DATABASE_URL": "postgresql://svc@127.0.0.1:1/platform"}, timeout=60)
    took = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result)
    assert line.startswith(f"cannot reach the Pub/Sub emulator at {host} (PUBSUB_EMULATOR_HOST): ")
    assert "start the emulator there or correct PUBSUB_EMULATOR_HOST" in line
    assert took < 15, f"took {took:.0f} s"


def test_a_pubsub_emulator_host_that_is_not_pubsub_is_one_line_within_seconds():
    # Something listens there but does not speak gRPC (another service on the port): no minute of retries.
    listener = socket.create_server(("127.0.0.1", 0))
    host = f"127.0.0.1:{listener.getsockname()[1]}"

    def refuse():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.close()

    threading.Thread(target=refuse, daemon=True).start()
    try:
        started = time.monotonic()
        result = cli("serve", env={"GOOGLE_CLOUD_PROJECT": "demo-project", "PUBSUB_EMULATOR_HOST": host,
                                   "DATABASE_URL": "postgresql://svc@127.0.0.1:1/platform"}, timeout=60)
        took = time.monotonic() - started
    finally:
        listener.close()
    assert result.returncode == 2, result.stderr
    (line,) = error_lines(result)
    assert line.startswith(f"cannot reach the Pub/Sub emulator at {host} (PUBSUB_EMULATOR_HOST): ")
    assert took < 25, f"took {took:.0f} s"


def test_a_duplicate_requests_log_line_names_the_run_that_answered_it(engine, database_url, broker, tmp_path):
    with engine.begin() as conn:
        load_simulation(conn, simulate(1200, 60, 20, seed=5), anchors=range(0, 60, 5), old_scale=(1.2, 0.3),
                        days_before=1)
    consumer = ConsumerProcess(env={"DATABASE_URL": database_url, "GOOGLE_CLOUD_PROJECT": broker.project,
                                    "PUBSUB_EMULATOR_HOST": broker.host}, log_path=tmp_path / "consumer.log")
    try:
        consumer.start()
        broker.request({"request_id": "ad-hoc-8"})
        broker.request({"request_id": "ad-hoc-8"})
        (first, _), (second, _) = broker.completed(2)
        consumer.wait_for_log("already answered by run")
    finally:
        consumer.kill()
    assert first["run_id"] == second["run_id"]
    entries = [json.loads(l) for l in (tmp_path / "consumer.log").read_text().splitlines() if l.startswith("{")]
    (duplicate,) = [e for e in entries if "already answered by run" in e["message"]]
    assert f"run {first['run_id']} (succeeded)" in duplicate["message"]
    assert duplicate["run_id"] == first["run_id"]
    with engine.connect() as conn:
        recorded = {r[0] for r in conn.exec_driver_sql("SELECT run_id::text FROM mirt_fit_meta")}
    assert recorded == {first["run_id"]}
    assert {e["run_id"] for e in entries if e.get("run_id")} <= recorded  # no log line names a run never recorded


def test_the_consumer_gives_its_runs_a_logged_progress_line(engine, monkeypatch):
    from consumer.bus import handler as handler_module
    from consumer.run import RunSummary
    from consumer.settings import Settings
    from consumer.telemetry import FitProgress
    seen = {}

    def fake_calibrate(engine, settings, request, **kwargs):
        seen.update(kwargs)
        return RunSummary(run_id="00000000-0000-0000-0000-000000000001", request_id=request.request_id,
                          status="succeeded")

    class Publisher:
        def completed(self, summary):
            return "m-1"

    monkeypatch.setattr(handler_module, "calibrate", fake_calibrate)
    handler = handler_module.RequestHandler(engine, Settings.load({}), Publisher())
    outcome = handler.handle(handler_module.Delivery("m-1", b"", {}))
    assert outcome is handler_module.Outcome.ACK
    assert isinstance(seen["progress"], FitProgress) and not seen["progress"].interactive
