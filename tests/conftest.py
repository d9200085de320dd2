"""What every test may ask for: its tier, a real PostgreSQL (a fresh database per test), a Pub/Sub server.

Each test is marked with its tier, the directory under tests/ it lives in
(see ``TIERS``), so that ``python -m pytest -m unit`` runs the fast tier
alone and a new test gets its tier from where it is put.

The PostgreSQL server is, in order: ``TEST_DATABASE_URL`` when set; the
PostgreSQL on 127.0.0.1:5432 when one answers there (as on the developers'
and CI's machines); otherwise an embedded PostgreSQL started in a temporary
directory. ``TEST_DATABASE_URL=embedded`` takes the embedded one even when a
server answers on 5432, to try the tests as a machine without PostgreSQL
runs them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from consumer.db.engine import pg8000_url
from consumer.db.migrations import migrate

from tests.support.database import embedded_server_url, local_server_answers, remove_embedded_server

#: The directories under tests/, each a marker of the same name (declared in pyproject.toml).
TIERS = ("unit", "integration", "e2e", "repository")

#: Fixtures that reach a server: a unit test asking for one belongs in tests/integration/.
SERVER_FIXTURES = {"server_url", "database_url", "engine", "pubsub_host", "broker"}

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier, and refuse a unit test that asks for a server."""
    for item in items:
        parts = item.path.relative_to(TESTS).parts if item.path.is_relative_to(TESTS) else ()
        tier = parts[0] if len(parts) > 1 and parts[0] in TIERS else None
        if tier is None:
            continue
        item.add_marker(tier)
        servers = SERVER_FIXTURES.intersection(item.fixturenames)
        if tier == "unit" and servers:
            raise pytest.UsageError(f"{item.nodeid} is a unit test but asks for {', '.join(sorted(servers))}, "
                                    "which need a server: move it to tests/integration/")


@pytest.fixture(scope="session")
def server_url() -> sa.URL:
    """URL of a database on the test server, to connect to as an administrator."""
    chosen = os.environ.get("TEST_DATABASE_URL", "").strip()
    if chosen and chosen != "embedded":
        return pg8000_url(chosen)[0]
    if not chosen and local_server_answers():
        url = sa.make_url("postgresql+pg8000://postgres@127.0.0.1:5432/postgres")
        try:
            sa.create_engine(url).connect().close()
            return url
        except Exception:
            pass
    return embedded_server_url()


@pytest.fixture(scope="session", autouse=True)
def _embedded_server_removed_at_the_end():
    """The session's embedded PostgreSQL, if a test started one, is stopped and its directory removed.

    Set up before any other fixture, so torn down after all of them (the
    databases they dropped lived in it).
    """
    yield
    remove_embedded_server()


@pytest.fixture
def database_url(server_url) -> str:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"mirt_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield server_url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def engine(database_url):
    """An engine on the fresh database, with the service's tables migrated."""
    eng = sa.create_engine(database_url)
    migrate(eng)
    yield eng
    eng.dispose()


# --- Pub/Sub ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pubsub_host():
    """``PUBSUB_EMULATOR_HOST`` of a Pub/Sub server speaking the real gRPC protocol.

    Google's emulator when ``PUBSUB_EMULATOR_HOST`` is already set; otherwise
    the pinned local server (consumer.bus.local_server), started here.
    """
    if os.environ.get("PUBSUB_EMULATOR_HOST"):
        yield os.environ["PUBSUB_EMULATOR_HOST"]
        return
    import platformdirs
    from consumer.bus import local_server
    server = local_server.start(Path(platformdirs.user_cache_dir("irt-calibration")))
    yield server.host
    server.stop()


@pytest.fixture
def broker(pubsub_host, monkeypatch):
    """Topics and subscriptions in a project of this test's own on the Pub/Sub server."""
    from tests.support.broker import Broker
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_host)
    broker = Broker.create(pubsub_host, f"test-{uuid.uuid4().hex[:10]}")
    yield broker
    broker.delete()  # an emulator that outlives the session (PUBSUB_EMULATOR_HOST) keeps no test's topics


# --- OpenTelemetry ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def spans():
    """The spans finished in this process, kept in memory.

    Session-wide because OpenTelemetry takes one tracer provider per process
    and ignores a second.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter
