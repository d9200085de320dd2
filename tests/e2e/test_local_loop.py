"""The README's local loop, as a new user types it: demo, then serve --demo in one terminal, publish --demo --wait in another.

No Google Cloud and no emulator: ``serve --demo`` starts the bundled local
Pub/Sub server (a second ``serve --demo`` reuses it), and ``publish --demo``
finds it through the data directory they share.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from consumer.bus.local_server import free_port

from tests.support.cli import cli


class Serve:
    """``python -m consumer serve --demo`` in a process of its own, its log (JSON lines) in a file."""

    def __init__(self, env: dict, log_path: Path) -> None:
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "consumer", "serve", "--demo"],
                                        env={**env, "PORT": str(free_port())}, stdin=subprocess.DEVNULL,
                                        stdout=self.log_file, stderr=self.log_file)

    def messages(self) -> list[str]:
        return [json.loads(line)["message"] for line in self.log_path.read_text().splitlines()
                if line.startswith("{")]

    def wait_for(self, fragment: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.messages() if fragment in m]
            if found:
                return found[0]
            assert self.process.poll() is None, f"serve exited ({self.process.returncode}):\n{self.log_path.read_text()}"
            time.sleep(0.2)
        raise AssertionError(f"serve did not log {fragment!r} within {timeout} s:\n{self.log_path.read_text()}")

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log_file.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


def answers(host: str) -> bool:
    name, _, port = host.rpartition(":")
    try:
        with socket.create_connection((name, int(port)), timeout=2):
            return True
    except OSError:
        return False


def test_serve_demo_and_publish_demo_run_the_whole_loop_locally_and_serve_stops_cleanly(tmp_path):
    data_dir = tmp_path  # (as in test_cli: the embedded server runs as its own user, and may read it)
    demo = cli("demo", "--students", "1500", "--items", "80", "--answers", "25",
               env={"MIRT_DATA_DIR": str(data_dir)}, timeout=300)
    assert demo.returncode == 0, demo.stderr

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MIRT_", "DATABASE_URL", "DB_", "PUBSUB_", "GOOGLE_CLOUD_PROJECT"))}
    env.pop("INSTANCE_CONNECTION_NAME", None)
    env.update({"MIRT_DATA_DIR": str(data_dir), "LOG_FORMAT": "json"})
    serve = Serve(env, tmp_path / "serve.log")
    second = None
    try:
        # The log says where the local server listens and what to type next.
        line = serve.wait_for("try, in another terminal:")
        assert line.endswith(f"MIRT_DATA_DIR={data_dir} python -m consumer publish --demo --wait")
        host = json.loads((data_dir / "pubsub-demo.json").read_text())["host"]
        assert f"local Pub/Sub server on {host}" in line
        serve.wait_for("consumer pulling from projects/demo-project/subscriptions/calibration-requested-consumer")

        # A second serve --demo on the same data directory reuses that server, and leaves it running.
        second = Serve(env, tmp_path / "serve-2.log")
        second.wait_for(f"reusing the demo's local Pub/Sub server on {host}")
        second.wait_for("consumer pulling from")
        assert second.terminate() == 0
        assert answers(host)

        published = cli("publish", "--demo", "--wait", "--timeout", "120", env={"MIRT_DATA_DIR": str(data_dir)},
                        timeout=180)
        assert published.returncode == 0, published.stderr
        [event] = [json.loads(line) for line in published.stdout.splitlines()]
        assert event["status"] == "succeeded" and event["request_id"].startswith("cli-")
        assert event["counts"]["items"] == 80

        assert serve.terminate() == 0
        # The serve that started the local server stops it, and removes its note.
        assert not (data_dir / "pubsub-demo.json").exists()
        assert not answers(host)
    finally:
        serve.kill()
        if second is not None:
            second.kill()


def test_publish_demo_without_serve_demo_says_what_to_start(tmp_path):
    result = cli("publish", "--demo", "--wait", env={"MIRT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert "no local Pub/Sub server of the demo answers" in result.stderr
    assert "python -m consumer serve --demo" in result.stderr
