"""A test session leaves nothing behind: the embedded PostgreSQL it started is stopped and its directory removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_session_that_started_the_embedded_server_removes_it_at_its_end(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    scratch.chmod(0o755)  # the embedded server runs as a user of its own when the tests run as root
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DB_", "OTEL_"))}
    session = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/e2e/test_database_login.py::test_the_engine_reports_a_wrong_password_as_a_refused_login"],
        cwd=ROOT, env={**env, "TMPDIR": str(scratch)}, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL)
    assert session.returncode == 0, session.stdout[-3000:]
    left = sorted(p.name for p in scratch.iterdir() if p.name.startswith("mirt-test-"))
    assert left == [], f"the session left its embedded server's directory behind: {left}"
