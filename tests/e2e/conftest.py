"""The service as it runs in production: ``python -m consumer serve`` processes on this test's broker and database."""

from __future__ import annotations

import pytest

from tests.support.broker import DEAD_LETTER, ConsumerProcess


@pytest.fixture
def consumers(tmp_path, broker, database_url):
    """Start consumer processes for this test's broker and database; all are killed at the end."""
    started = []

    def start(database=database_url, **env):
        process = ConsumerProcess(
            env={"DATABASE_URL": database, "GOOGLE_CLOUD_PROJECT": broker.project,
                 "PUBSUB_EMULATOR_HOST": broker.host, "MIRT_DEAD_LETTER_TOPIC": DEAD_LETTER, **env},
            log_path=tmp_path / f"consumer-{len(started)}.log")
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.kill()
