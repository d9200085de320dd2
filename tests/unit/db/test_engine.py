"""The engine factory's wiring, including the Cloud SQL connector path that cannot reach Cloud SQL here."""

from __future__ import annotations

import pytest

from consumer.db.engine import create_engine, describe, pg8000_url
from consumer.settings import Settings


def test_urls_are_turned_to_pg8000_and_sslmode_to_an_ssl_context():
    url, args = pg8000_url("postgres://svc:pw@db.internal:6432/platform?sslmode=require")
    assert url.drivername == "postgresql+pg8000" and url.port == 6432 and "sslmode" not in url.query
    assert args["ssl_context"].verify_mode.name == "CERT_NONE"
    url, args = pg8000_url("postgresql+psycopg://svc@h/db?sslmode=verify-full")
    assert url.drivername == "postgresql+pg8000" and args["ssl_context"].check_hostname
    assert pg8000_url("postgresql://svc@h/db")[1] == {}


def test_a_url_parameter_the_driver_does_not_take_is_a_setting_error_not_an_outage():
    from consumer.errors import ConfigError
    with pytest.raises(ConfigError, match="does not take: connect_timeout, options") as caught:
        pg8000_url("postgresql://svc@db/platform?connect_timeout=5&options=-c%20x")
    assert caught.value.exit_code == 2
    with pytest.raises(ConfigError, match="sslmode='sometimes'"):
        pg8000_url("postgresql://svc@db/platform?sslmode=sometimes")
    assert pg8000_url("postgresql://svc@/platform?unix_sock=/run/pg/.s.PGSQL.5432")[0].query["unix_sock"]


def test_describe_hides_the_password():
    eng = create_engine(Settings.load({"DATABASE_URL": "postgresql://svc:topsecret@db:5432/platform"}))
    assert describe(eng) == "postgresql+pg8000://svc@db:5432/platform"


class FakeConnector:
    instances: list["FakeConnector"] = []

    def __init__(self, **kwargs):
        self.init_kwargs = kwargs
        self.connects = []
        self.closed = False
        FakeConnector.instances.append(self)

    def connect(self, instance, driver, **kwargs):
        self.connects.append((instance, driver, kwargs))
        raise ConnectionRefusedError("fake connector: no Cloud SQL here")

    def close(self):
        self.closed = True


@pytest.fixture
def fake_connector(monkeypatch):
    import google.cloud.sql.connector as connector_module
    from consumer.db.engine import close_cloud_sql_connector
    close_cloud_sql_connector()
    FakeConnector.instances.clear()
    monkeypatch.setattr(connector_module, "Connector", FakeConnector)
    yield FakeConnector
    close_cloud_sql_connector()


@pytest.mark.parametrize("env, expected_kwargs, ip", [
    ({"DB_PASS": "pw"}, {"user": "svc", "db": "platform", "enable_iam_auth": False, "password": "pw"}, "PUBLIC"),
    ({"DB_IAM_AUTH": "true", "DB_IP_TYPE": "private"},
     {"user": "svc@proj.iam", "db": "platform", "enable_iam_auth": True}, "PRIVATE"),
])
def test_cloud_sql_goes_through_the_connector_with_pg8000(fake_connector, env, expected_kwargs, ip):
    user = "svc@proj.iam" if env.get("DB_IAM_AUTH") else "svc"
    settings = Settings.load({"INSTANCE_CONNECTION_NAME": "proj:europe-west1:platform-db", "DB_USER": user,
                              "DB_NAME": "platform", **env})
    eng = create_engine(settings)
    with pytest.raises(Exception, match="no Cloud SQL here"):
        eng.connect()
    (connector,) = fake_connector.instances
    assert connector.init_kwargs["refresh_strategy"] == "lazy"
    instance, driver, kwargs = connector.connects[0]
    assert kwargs.pop("ip_type").name == ip
    assert (instance, driver, kwargs) == ("proj:europe-west1:platform-db", "pg8000", expected_kwargs)
    # The process's one Connector outlives the engine (tests/integration/test_cloudsql.py covers its lifecycle).
    eng.dispose()
    assert not connector.closed


def test_cloud_sql_settings_are_checked():
    from consumer.errors import ConfigError
    with pytest.raises(ConfigError, match="project:region:instance"):
        Settings.load({"INSTANCE_CONNECTION_NAME": "just-a-name", "DB_USER": "u", "DB_NAME": "d", "DB_PASS": "p"})
    with pytest.raises(ConfigError, match="password or IAM"):
        Settings.load({"INSTANCE_CONNECTION_NAME": "p:r:i", "DB_USER": "u", "DB_NAME": "d"})


# --- client-side timeouts ----------------------------------------------------------------------


def test_a_database_url_timeout_that_is_not_seconds_is_a_setting_error():
    from consumer.errors import ConfigError
    with pytest.raises(ConfigError, match="timeout that is not a number of seconds"):
        pg8000_url("postgresql://svc@db/platform?timeout=soon")
    with pytest.raises(ConfigError, match="tcp_keepalive='perhaps'"):
        pg8000_url("postgresql://svc@db/platform?tcp_keepalive=perhaps")
