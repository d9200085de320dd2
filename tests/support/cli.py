"""The command line run as an operator runs it: ``python -m consumer`` in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def cli(*args: str, env: dict | None = None, timeout: float = 120, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python -m consumer ARGS`` with none of this machine's service settings, only ``env``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DATABASE_URL", "DB_"))}
    full_env.pop("INSTANCE_CONNECTION_NAME", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "consumer", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)


def log_entries(result: subprocess.CompletedProcess) -> list[dict]:
    """The command's log: one JSON object per line, as in production (stderr is not a terminal)."""
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [entry["message"] for entry in log_entries(result) if entry["severity"] == "ERROR"]
