"""A run far longer than the ack deadline, CPU-bound fit included, against ``python -m consumer serve``.

The subscription's ack deadline is 10 s (tests/support/broker.py); the consumer's
client library leases the message for ``LEASE_SECONDS`` and keeps renewing
the lease from a thread of its own while the fit runs in compiled kernels
that release the GIL. The run is made long with real work: 8,000 students
with 10 answers each on 200 items, fitted to a tolerance of 1e-8 (about 20
EM passes) on a quadrature grid fine enough for about a minute of fitting
and standard errors on this machine at this moment: a dry run of
``calibrate`` on a 401-point grid is timed first, and the grid scaled from
it (the machines these tests run on differ, and so does their load, by
several times). The test checks that the run lasted at least two leases,
else it would prove nothing. (Few answers per student keep the standard
errors' share small: their cost grows with the square of a student's
answers, the fit's only linearly.)

A server that ignores the client's flow control (cloudbox's own streaming
pull did, before consumer/bus/local_server_behaviour.py; see docs/development.md)
pushes a message published while the run goes on down the stream at once,
where the client does not read it while its one allowed message is in
flight; nothing extends that message's deadline, so such a server issues it
again every ack deadline, and the client reads every copy once the run ends.
The test holds against either kind of server: the request that runs long
must be delivered once and run once; the one published behind it may come
several times (once, from a server that honours flow control), but only
after the long run has ended, and runs once, its other copies answered from
the record.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from consumer.bus.subscriber import LEASE_SECONDS

from tests.support.database import rows
from tests.support.platform_data import small_platform

ACK_DEADLINE_SECONDS = 10  # the subscription's, as tests/support/broker.py creates it
#: What the long run is sized for: four leases. Scaling from the dry run overestimates the cost of a point (an
#: EM pass has costs the grid does not change), so runs come out at three or so, and the check of two holds.
TARGET_SECONDS = 4 * LEASE_SECONDS


def grid_for_a_run_of(seconds: float, database_url: str) -> int:
    """Quadrature points for a run of about ``seconds`` on this database, from a timed dry run on 401 points."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIRT_", "DB_", "OTEL_"))}
    probe = subprocess.run([sys.executable, "-m", "consumer", "calibrate", "--dry-run", "--json",
                            "--quadrature-points", "401", "--em-tolerance", "1e-8"],
                           env={**env, "DATABASE_URL": database_url}, capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL)
    assert probe.returncode == 0, probe.stderr[-2000:]
    took = json.loads(probe.stdout)["durations"]
    per_point = (took["fit"] + took.get("diagnostics", 0.0)) / 401
    return int(min(max(seconds / per_point, 1001), 40001)) | 1


@pytest.mark.slow
def test_a_run_far_past_the_ack_deadline_is_delivered_once_run_once_and_answered_once(
        engine, broker, consumers, database_url):
    small_platform(engine, n_persons=8000, n_items=200, per_person=10)
    grid = grid_for_a_run_of(TARGET_SECONDS, database_url)
    consumer = consumers(MIRT_EM_TOLERANCE="1e-8", MIRT_EM_MAX_ITERATIONS="200", MIRT_QUADRATURE_POINTS=str(grid))
    broker.request({"request_id": "long"})
    consumer.wait_for_log("fitting 2PL")
    # A small run, published while the long one goes on.
    broker.request({"request_id": "behind-the-long-one", "overrides": {"model": "1PL", "max_obs": 20000}})

    answers = broker.completed(2, timeout=400)
    answers += broker.completed(50, timeout=ACK_DEADLINE_SECONDS + 5)  # whatever else comes

    long_answers = [e for e, _ in answers if e["request_id"] == "long"]
    assert len(long_answers) == 1 and long_answers[0]["status"] == "succeeded", long_answers
    took = long_answers[0]["durations"]["total"]
    assert took >= 2 * LEASE_SECONDS >= 4 * ACK_DEADLINE_SECONDS, \
        f"the run took {took:.0f} s: too short to need its lease renewed; give it more work"
    log = consumer.messages()
    received = [n for n, m in enumerate(log) if m.startswith("calibration request long received")]
    assert len(received) == 1, "the long run's message was delivered again: its lease was not kept up"
    assert "delivery attempt 1" in log[received[0]]
    assert rows(engine, "SELECT count(*) FROM mirt_fit_meta WHERE request_id = 'long'")[0][0] == 1
    assert f"EM, {grid} quadrature points" in "".join(log)  # the fit itself was the long part

    # The request published during the run: handled only after it (copies of it, from a server without flow control).
    finished = next(n for n, m in enumerate(log) if m.startswith("published calibration-completed")
                    and "(request long," in m)
    behind = [n for n, m in enumerate(log) if m.startswith("calibration request behind-the-long-one received")]
    assert behind and min(behind) > finished, "a message was handled while the long run went on"
    assert rows(engine, "SELECT count(*) FROM mirt_fit_meta WHERE request_id = 'behind-the-long-one'")[0][0] == 1
    behind_answers = [e for e, _ in answers if e["request_id"] == "behind-the-long-one"]
    assert len(behind_answers) == len(behind) and len({e["run_id"] for e in behind_answers}) == 1
    assert sum("was already answered by run" in m for m in log) == len(behind) - 1
    assert consumer.health("/healthz")[0] == 200
