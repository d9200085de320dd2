"""The Cloud SQL path run for real, against a local stand-in for Cloud SQL.

The service's own ``create_engine`` with ``INSTANCE_CONNECTION_NAME``,
``DB_USER``, ``DB_NAME`` and ``DB_PASS`` or ``DB_IAM_AUTH``; the real
``google.cloud.sql.connector.Connector`` (only pointed at the stand-in: the
``Connector`` that engine.py imports is wrapped to add
``sqladmin_api_endpoint=`` and ``credentials=``, and to record each one
made) and pg8000; the stand-in of tests/cloudsql_standin.py in front of the
test PostgreSQL (the local server or the embedded one, see conftest.py).

What the stand-in checks: Admin API calls carry a token it issued; a client
certificate it signed is required on port 3307; a password login needs the
user's password; an IAM login needs the login-scoped token the connector
sent to ``generateEphemeralCert``, bound to the certificate presented, of
the principal the database user belongs to. PostgreSQL on 127.0.0.1:5432 is
trust-auth here, so these checks live in the stand-in (it plays the
instance's authentication), not in PostgreSQL; each database user still
logs in to PostgreSQL as a role of its own (created per test when the
server allows), so ``current_user`` shows who got through.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import google.cloud.sql.connector as connector_package
from consumer.db import engine as engine_module
from consumer.db.engine import check_connection, create_engine
from consumer.errors import DatabaseLoginRefused
from consumer.settings import Settings

from tests.support.cloudsql_standin import (LOGIN_SCOPE, Backend, CloudSQLStandIn, StandInUnavailable, iam_database_user,
                               make_ca, read_message, sign_certificate, startup_message)

PROBE_NOTE = "written by the administrator"

@pytest.fixture
def standin(server_url):
    try:
        instance = CloudSQLStandIn(Backend.from_url(server_url)).start()
    except StandInUnavailable as why:
        pytest.skip(str(why))
    yield instance
    instance.stop()


class CloudSQL:
    """The service pointed at the stand-in: its settings for users of the instance, the engines and Connectors made."""

    def __init__(self, standin: CloudSQLStandIn, server_url: sa.URL, database: str, monkeypatch) -> None:
        self.standin = standin
        self.database = database
        self.admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
        self.admin_user, self.admin_password = server_url.username, server_url.password
        self.roles: list[str] = []
        self.engines: list[sa.Engine] = []
        self.connectors: list = []
        #: The service's runtime identity (its Application Default Credentials, in production).
        self.principal = f"calibration-{uuid.uuid4().hex[:8]}@{standin.project}.iam.gserviceaccount.com"
        credentials = standin.credentials(self.principal)
        real_connector = connector_package.Connector

        def connector(*args, **kwargs):
            made = real_connector(*args, sqladmin_api_endpoint=standin.api_endpoint, credentials=credentials,
                                  **kwargs)
            self.connectors.append(made)
            return made

        monkeypatch.setattr(connector_package, "Connector", connector)
        owner = sa.create_engine(server_url.set(database=database), isolation_level="AUTOCOMMIT")
        with owner.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE cloudsql_probe (note text)")
            conn.exec_driver_sql(f"INSERT INTO cloudsql_probe VALUES ('{PROBE_NOTE}')")
            conn.exec_driver_sql("GRANT SELECT ON cloudsql_probe TO PUBLIC")  # no grant that ties a role down
        owner.dispose()

    def _role(self, name: str) -> tuple[str, str | None]:
        """A login role for ``name`` on the test PostgreSQL, or the administrator's when roles cannot be made."""
        secret = uuid.uuid4().hex
        try:
            with self.admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE ROLE "{name}" LOGIN PASSWORD \'{secret}\'')
        except sa.exc.DBAPIError:
            return self.admin_user, self.admin_password
        self.roles.append(name)
        return name, secret

    def password_user(self) -> tuple[str, str]:
        name, password = f"svc_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        self.standin.add_user(name, password=password, **dict(zip(("backend_user", "backend_password"),
                                                                   self._role(name))))
        return name, password

    def iam_user(self, principal: str) -> str:
        name = iam_database_user(principal)
        self.standin.add_user(name, password=None, **dict(zip(("backend_user", "backend_password"),
                                                               self._role(name))))
        return name

    def backend_user(self, name: str) -> str:
        return self.standin.users[name].backend_user

    def settings(self, **env: str) -> Settings:
        return Settings.load({"INSTANCE_CONNECTION_NAME": self.standin.connection_name, "DB_NAME": self.database,
                              **env})

    def engine(self, **env: str) -> sa.Engine:
        engine = create_engine(self.settings(**env))
        self.engines.append(engine)
        return engine

    def close(self) -> None:
        for engine in self.engines:
            engine.dispose()
        engine_module.close_cloud_sql_connector()
        for connector in self.connectors:
            connector.close()
        with self.admin.connect() as conn:
            for role in self.roles:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        self.admin.dispose()


@pytest.fixture
def cloudsql(standin, server_url, database_url, monkeypatch):
    case = CloudSQL(standin, server_url, sa.make_url(database_url).database, monkeypatch)
    yield case
    case.close()


def round_trip(engine: sa.Engine) -> tuple:
    marker = uuid.uuid4().hex
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT current_user, current_database(), (SELECT note FROM cloudsql_probe), "
                                   "CAST(:marker AS text)"), {"marker": marker}).one()
    assert row[3] == marker
    return tuple(row[:3])


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --- logging in -------------------------------------------------------------------------------

def test_password_login_round_trip(cloudsql, standin):
    user, password = cloudsql.password_user()
    engine = cloudsql.engine(DB_USER=user, DB_PASS=password)
    check_connection(engine)
    assert round_trip(engine) == (cloudsql.backend_user(user), cloudsql.database, PROBE_NOTE)

    assert standin.logins and all(login.user == user and login.method == "password" and login.accepted
                                  and login.client_sent_password for login in standin.logins)
    # the certificate presented is one generateEphemeralCert issued, with no IAM token in it
    assert all(standin.certificates[login.certificate_serial].access_token is None for login in standin.logins)
    calls = {(method, path.rsplit("/", 1)[-1], status) for method, path, status in standin.api_calls}
    assert {("GET", "connectSettings", 200), ("POST", "standin-db:generateEphemeralCert", 200)} <= calls
    assert not [call for call in standin.api_calls if call[2] != 200]


def test_connections_through_the_connector_get_the_services_timeouts(cloudsql, standin):
    user, password = cloudsql.password_user()
    engine = cloudsql.engine(DB_USER=user, DB_PASS=password)
    with engine.connect() as conn:
        sock = conn.connection.dbapi_connection._usock  # the connector's TLS socket, which it leaves blocking
        assert sock.gettimeout() == engine_module.READ_TIMEOUT_SECONDS
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 60_000


@pytest.mark.parametrize("db_user", ["service account email", "IAM database user name"])
def test_iam_login_round_trip(cloudsql, standin, db_user):
    name = cloudsql.iam_user(cloudsql.principal)
    engine = cloudsql.engine(DB_USER=cloudsql.principal if db_user == "service account email" else name,
                             DB_IAM_AUTH="true")
    check_connection(engine)
    assert round_trip(engine) == (cloudsql.backend_user(name), cloudsql.database, PROBE_NOTE)

    (login, *_) = standin.logins
    assert all(each.method == "iam" and each.accepted and each.user == name for each in standin.logins)
    assert not login.client_sent_password  # the token travels in the certificate request, not as a password
    token = standin.tokens[login.token]
    assert token.principal == cloudsql.principal and LOGIN_SCOPE in token.scopes
    assert standin.certificates[login.certificate_serial].access_token == token


def test_iam_token_of_another_principal_is_refused(cloudsql, standin):
    other = cloudsql.iam_user(f"reporting-{uuid.uuid4().hex[:8]}@{standin.project}.iam.gserviceaccount.com")
    engine = cloudsql.engine(DB_USER=other, DB_IAM_AUTH="true")  # the service's credentials are not other's
    with pytest.raises(DatabaseLoginRefused) as caught:  # a setting to fix: exit status 2, never retried
        check_connection(engine)
    assert caught.value.exit_code == 2 and not caught.value.transient
    assert (f"the database at Cloud SQL (connector) refused the service's login: Cloud SQL IAM user "
            f'authentication failed for user "{other}" (SQLSTATE 28P01)') in str(caught.value)
    assert standin.logins and all(login.method == "iam" and not login.accepted for login in standin.logins)
    assert standin.backend_logins == 0


def test_wrong_password_is_refused_with_the_services_error(cloudsql, standin):
    user, password = cloudsql.password_user()
    wrong = f"not-{password}"
    engine = cloudsql.engine(DB_USER=user, DB_PASS=wrong)
    with pytest.raises(DatabaseLoginRefused) as caught:
        check_connection(engine)
    error = caught.value
    assert error.exit_code == 2
    assert error.message == (f"the database at Cloud SQL (connector) refused the service's login: password "
                             f'authentication failed for user "{user}" (SQLSTATE 28P01)')
    assert "DB_PASS" in error.hint
    assert wrong not in str(error) and password not in str(error)
    assert standin.logins[0].reason == "wrong password" and standin.backend_logins == 0


# --- the client certificate -------------------------------------------------------------------

def _pem_files(tmp_path, name: str, cert, key) -> tuple[str, str]:
    cert_file, key_file = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def _first_answer(standin: CloudSQLStandIn, user: str, database: str, cert_files=None) -> str:
    """What the proxy answers a PostgreSQL startup over TLS with ``cert_files``: "R3" asks for a password."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(cadata=standin.server_ca.pem)  # the server CA that connectSettings hands out
    if cert_files:
        context.load_cert_chain(*cert_files)
    try:
        with socket.create_connection((standin.ip, standin.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=standin.ip) as tls:
            tls.sendall(startup_message({"user": user, "database": database}))
            kind, payload, _ = read_message(tls)
            return kind.decode() + str(struct.unpack("!i", payload[:4])[0])
    except (ssl.SSLError, OSError):
        return "refused"


def _ephemeral_cert(standin: CloudSQLStandIn, public_key, token: str | None):
    from cryptography import x509
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    request = urllib.request.Request(
        f"{standin.api_endpoint}/sql/v1beta4/projects/{standin.project}/instances/{standin.instance}"
        ":generateEphemeralCert", data=json.dumps({"public_key": pem.decode()}).encode(), method="POST",
        headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return x509.load_pem_x509_certificate(json.load(answer)["ephemeralCert"]["cert"].encode())


def test_the_proxy_requires_the_client_certificate_the_admin_api_signed(cloudsql, standin, tmp_path):
    import google.auth.transport.requests
    user, _ = cloudsql.password_user()
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(urllib.error.HTTPError) as unauthenticated:
        _ephemeral_cert(standin, key.public_key(), token=None)
    assert unauthenticated.value.code == 401
    credentials = standin.credentials(cloudsql.principal)
    credentials.refresh(google.auth.transport.requests.Request())
    signed = _ephemeral_cert(standin, key.public_key(), credentials.token)

    # control: the certificate the Admin API signed gets through TLS to the password request
    assert _first_answer(standin, user, cloudsql.database, _pem_files(tmp_path, "signed", signed, key)) == "R3"

    now = dt.datetime.now(dt.timezone.utc)
    stranger = make_ca("someone else's CA")
    unsigned = {
        "no client certificate": None,
        "signed by another CA": sign_certificate(stranger, key.public_key(), "client", client=True,
                                                 not_before=now, not_after=now + dt.timedelta(hours=1)),
        "signed by the server CA": sign_certificate(standin.server_ca, key.public_key(), "client", client=True,
                                                    not_before=now, not_after=now + dt.timedelta(hours=1)),
        "expired": standin.sign_client_certificate(key.public_key(), not_before=now - dt.timedelta(hours=2),
                                                   lifetime=dt.timedelta(hours=1)),
    }
    refusals_before = len(standin.refusals)
    for case, cert in unsigned.items():
        files = _pem_files(tmp_path, case.replace(" ", "-"), cert, key) if cert is not None else None
        assert _first_answer(standin, user, cloudsql.database, files) == "refused", case
    assert wait_for(lambda: len(standin.refusals) >= refusals_before + len(unsigned))
    handshakes = [r for r in standin.refusals[refusals_before:] if r.startswith("TLS handshake refused")]
    assert len(handshakes) == len(unsigned), standin.refusals
    assert sum("PEER_DID_NOT_RETURN_A_CERTIFICATE" in r for r in handshakes) == 1, handshakes
    assert sum("CERTIFICATE_VERIFY_FAILED" in r for r in handshakes) == 3, handshakes
    assert any("expired" in r for r in handshakes), handshakes
    assert standin.backend_logins == 0 and not any(login.accepted for login in standin.logins)


# --- the Connector's lifecycle ----------------------------------------------------------------

def _connector_threads(connector) -> set[threading.Thread]:
    """The threads a Connector owns: its event loop's, and that loop's default executor's."""
    threads = {connector._thread} if connector._thread is not None else set()
    executor = getattr(connector._loop, "_default_executor", None)
    return threads | set(getattr(executor, "_threads", ()))


def test_disposing_the_engine_closes_its_connections(cloudsql, standin):
    user, password = cloudsql.password_user()
    engine = cloudsql.engine(DB_USER=user, DB_PASS=password)
    with engine.connect() as first, engine.connect() as second:
        first.exec_driver_sql("SELECT 1")
        second.exec_driver_sql("SELECT 1")
    assert standin.open_connections == 2  # pooled
    engine.dispose()
    assert wait_for(lambda: standin.open_connections == 0), "the pool left connections to Cloud SQL open"


def test_engines_share_one_connector(cloudsql, standin):
    user, password = cloudsql.password_user()
    iam = cloudsql.iam_user(cloudsql.principal)
    engines = [cloudsql.engine(DB_USER=user, DB_PASS=password), cloudsql.engine(DB_USER=user, DB_PASS=password),
               cloudsql.engine(DB_USER=iam, DB_IAM_AUTH="true", DB_IP_TYPE="private")]
    for engine in engines:
        check_connection(engine)
    assert len(cloudsql.connectors) == 1
    live = [c for c in cloudsql.connectors if any(t.is_alive() for t in _connector_threads(c))]
    assert len(live) == 1


def test_an_engine_stays_usable_after_dispose(cloudsql):
    user, password = cloudsql.password_user()
    engine = cloudsql.engine(DB_USER=user, DB_PASS=password)
    check_connection(engine)
    engine.dispose()
    assert round_trip(engine) == (cloudsql.backend_user(user), cloudsql.database, PROBE_NOTE)


def test_engines_made_and_disposed_leave_no_threads_behind(cloudsql, standin):
    user, password = cloudsql.password_user()
    before = set(threading.enumerate())
    for _ in range(3):
        engine = cloudsql.engine(DB_USER=user, DB_PASS=password)
        check_connection(engine)
        engine.dispose()
    assert wait_for(lambda: standin.open_connections == 0)
    new = {t for t in set(threading.enumerate()) - before if t.is_alive() and not t.name.startswith("cloudsql-standin")}
    owners = [c for c in cloudsql.connectors if _connector_threads(c) & new]
    assert len(owners) <= 1, f"{len(owners)} Connectors still hold threads: {sorted(t.name for t in new)}"
    assert new <= (_connector_threads(owners[0]) if owners else set()), sorted(t.name for t in new)


_AT_EXIT_SCRIPT = r"""
import atexit, json, sys
made = []

def report():  # registered first, so it runs after every exit handler the service registers
    print(json.dumps([{"closed": c._closed, "thread_alive": bool(c._thread and c._thread.is_alive())}
                      for c in made]))

atexit.register(report)
config = json.loads(sys.argv[1])
import google.cloud.sql.connector as package
from google.oauth2.credentials import Credentials
real = package.Connector

def connector(*args, **kwargs):
    made.append(real(*args, sqladmin_api_endpoint=config["endpoint"],
                     credentials=Credentials(token=None, **config["credentials"]), **kwargs))
    return made[-1]

package.Connector = connector
from consumer.db.engine import check_connection, create_engine
from consumer.settings import Settings
check_connection(create_engine(Settings.load(config["env"])))  # and exit without disposing anything
"""


def test_the_connector_is_closed_when_the_process_exits(cloudsql, standin):
    user, password = cloudsql.password_user()
    refresh_token = standin.add_principal(cloudsql.principal)
    config = {"endpoint": standin.api_endpoint,
              "credentials": {"refresh_token": refresh_token, "token_uri": standin.token_uri,
                              "client_id": standin.client_id, "client_secret": standin.client_secret},
              "env": {"INSTANCE_CONNECTION_NAME": standin.connection_name, "DB_NAME": cloudsql.database,
                      "DB_USER": user, "DB_PASS": password}}
    done = subprocess.run([sys.executable, "-c", _AT_EXIT_SCRIPT, json.dumps(config)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout.strip().splitlines()[-1])
    assert made, "the service made no Connector"
    assert all(c["closed"] and not c["thread_alive"] for c in made), made
