"""A local stand-in for a Cloud SQL for PostgreSQL instance, for the Cloud SQL Python Connector.

It speaks the connector's side of Cloud SQL (version 1.x of
``cloud-sql-python-connector``):

- **OAuth token endpoint** (``token_uri``): issues access tokens for the
  principals the test registers; ``credentials(principal)`` gives real
  ``google.oauth2.credentials.Credentials`` that refresh against it. The
  connector refreshes them before its Admin API calls, and for IAM database
  authentication it refreshes a copy narrowed to the ``sqlservice.login``
  scope: that token is what Cloud SQL logs the IAM user in with.
- **Admin API** (``api_endpoint``, passed to the connector as
  ``sqladmin_api_endpoint``; plain HTTP on 127.0.0.1, which the connector
  accepts: it only appends ``/sql/v1beta4/...`` to the base URL):
  ``connectSettings`` (server CA certificate, IP addresses, database
  version, region, backend type) and ``generateEphemeralCert`` (signs the
  client's public key with the stand-in's client CA, short-lived; with
  ``access_token`` the token must be one this stand-in issued with the login
  scope, and it is bound to the certificate). Both require a bearer token
  this stand-in issued.
- **Server-side proxy** on port 3307 (the port the connector dials, not
  configurable) of the IP address ``connectSettings`` reports: TLS with a
  server certificate signed by the server CA, a client certificate signed by
  the client CA **required**; then it plays the instance's authentication
  for the PostgreSQL startup: a certificate issued with an IAM token logs
  in the IAM user the token belongs to with no password from the client
  (as Cloud SQL does: the connector sends none); any other certificate
  gets a password request, checked against the user's password; a client
  certificate that ``generateEphemeralCert`` did not issue is turned away. A
  refusal is an ``ErrorResponse`` as PostgreSQL sends it (SQLSTATE 28P01). After that it logs
  in to the test PostgreSQL as the user's backend role (answering trust,
  cleartext, MD5 or SCRAM-SHA-256 itself) and forwards bytes both ways.

To keep parallel test runs from fighting over 127.0.0.1:3307, the proxy
listens on a random address of 127.0.0.0/8 (all loopback on Linux) and
reports that address in ``connectSettings``; where only 127.0.0.1 exists it
uses 127.0.0.1:3307. When no address will do, ``start()`` raises
``StandInUnavailable`` with the reason.

Everything it saw is recorded (``tokens``, ``certificates``, ``logins``,
``refusals``, ``api_calls``, ``backend_logins``) for the tests to check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import ipaddress
import json
import random
import re
import secrets
import selectors
import socket
import ssl
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:  # the port the connector dials; read from the connector so that a change there shows up here
    from google.cloud.sql.connector.connector import SERVER_PROXY_PORT
except ImportError:  # pragma: no cover
    SERVER_PROXY_PORT = 3307

ADMIN_SCOPE = "https://www.googleapis.com/auth/sqlservice.admin"
LOGIN_SCOPE = "https://www.googleapis.com/auth/sqlservice.login"
_PROTOCOL_3 = 196608
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102


class StandInUnavailable(RuntimeError):
    """The stand-in cannot run on this machine; the message says why."""


def iam_database_user(principal: str) -> str:
    """The PostgreSQL user Cloud SQL makes for an IAM principal: a service account loses ``.gserviceaccount.com``."""
    return principal.removesuffix(".gserviceaccount.com")


@dataclass(frozen=True)
class Backend:
    """Where the test PostgreSQL listens: a TCP host and port, or a Unix socket."""

    host: str | None = "127.0.0.1"
    port: int = 5432
    unix_socket: str | None = None

    @classmethod
    def from_url(cls, url) -> "Backend":
        """From a SQLAlchemy URL such as the tests' ``server_url`` (``?unix_sock=`` for the embedded server)."""
        unix_socket = url.query.get("unix_sock")
        if unix_socket:
            return cls(host=None, unix_socket=unix_socket)
        return cls(host=url.host or "127.0.0.1", port=url.port or 5432)

    def connect(self, timeout: float) -> socket.socket:
        if self.unix_socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(self.unix_socket)
            except OSError:
                sock.close()
                raise
            return sock
        return socket.create_connection((self.host, self.port), timeout=timeout)


@dataclass(frozen=True)
class DatabaseUser:
    """A user of the instance, and the role it logs in as on the test PostgreSQL."""

    name: str
    password: str | None  # None: an IAM user (logs in with the token bound to its certificate)
    backend_user: str
    backend_password: str | None

    @property
    def iam(self) -> bool:
        return self.password is None


@dataclass(frozen=True)
class IssuedToken:
    token: str
    principal: str
    scopes: frozenset[str]
    expires_at: dt.datetime

    def valid(self, now: dt.datetime | None = None) -> bool:
        return (now or _now()) < self.expires_at


@dataclass(frozen=True)
class IssuedCertificate:
    serial: int
    not_after: dt.datetime
    access_token: IssuedToken | None  # set when the client asked for IAM database authentication


@dataclass(frozen=True)
class Login:
    """One PostgreSQL startup the proxy judged."""

    user: str
    database: str
    method: str  # "password" or "iam"
    accepted: bool
    reason: str
    certificate_serial: int
    token: str | None = None
    client_sent_password: bool = False


@dataclass
class _CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Cloud SQL stand-in"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str) -> _CA:
    """A self-signed CA (EC P-256: quick to make)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _CA(key, cert)


def sign_certificate(ca: _CA, public_key, common_name: str, *, client: bool, not_before: dt.datetime,
                     not_after: dt.datetime, ip: str | None = None) -> x509.Certificate:
    """A leaf certificate for ``public_key``, signed by ``ca``, for TLS client or server use."""
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name)).issuer_name(ca.cert.subject)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                     else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    if ip is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
                                        critical=False)
    return builder.sign(ca.key, hashes.SHA256())


# --- PostgreSQL wire protocol, only what the proxy needs ---------------------------------------

def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        data += chunk
    return bytes(data)


def read_message(sock: socket.socket) -> tuple[bytes, bytes, bytes]:
    """(type, payload, the whole message) of one typed protocol message."""
    header = _recv_exact(sock, 5)
    length = struct.unpack("!i", header[1:])[0]
    payload = _recv_exact(sock, length - 4)
    return header[:1], payload, header + payload


def _message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


def _error_response(sqlstate: str, text: str) -> bytes:
    fields = b"".join(tag + value.encode() + b"\0"
                      for tag, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", text)))
    return _message(b"E", fields + b"\0")


def startup_message(params: dict[str, str]) -> bytes:
    body = struct.pack("!i", _PROTOCOL_3) + b"".join(
        k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!i", len(body) + 4) + body


class _Refused(Exception):
    """The proxy refuses this connection; ``args[0]`` is the reason."""


# --- the stand-in ------------------------------------------------------------------------------

class CloudSQLStandIn:
    """One Cloud SQL instance, its Admin API and token endpoint, on this machine. See the module docstring."""

    def __init__(self, backend: Backend, *, project: str = "standin-project", region: str = "europe-west1",
                 instance: str = "standin-db", database_version: str = "POSTGRES_16",
                 certificate_lifetime: dt.timedelta = dt.timedelta(minutes=15),
                 token_lifetime: dt.timedelta = dt.timedelta(hours=1)) -> None:
        self.backend = backend
        self.project, self.region, self.instance = project, region, instance
        self.database_version = database_version
        self.certificate_lifetime = certificate_lifetime
        self.token_lifetime = token_lifetime
        self.client_id = "standin-client.apps.example"
        self.client_secret = secrets.token_hex(16)
        self.server_ca = make_ca(f"Cloud SQL stand-in server CA {project}:{instance}")
        self.client_ca = make_ca(f"Cloud SQL stand-in client CA {project}:{instance}")
        self.ip: str | None = None
        self.port = SERVER_PROXY_PORT
        self._lock = threading.Lock()
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> principal
        self.users: dict[str, DatabaseUser] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.certificates: dict[int, IssuedCertificate] = {}
        self.logins: list[Login] = []
        self.refusals: list[str] = []
        self.api_calls: list[tuple[str, str, int]] = []
        self.backend_logins = 0
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._http: http.server.ThreadingHTTPServer | None = None
        self._tls: ssl.SSLContext | None = None

    # -- setting up ----------------------------------------------------------------------------

    @property
    def connection_name(self) -> str:
        return f"{self.project}:{self.region}:{self.instance}"

    @property
    def api_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def token_uri(self) -> str:
        return f"{self.api_endpoint}/token"

    def add_principal(self, principal: str) -> str:
        """Register an IAM principal (a service account's email); returns its refresh token."""
        refresh_token = f"standin-refresh-{secrets.token_hex(12)}"
        with self._lock:
            self._refresh_tokens[refresh_token] = principal
        return refresh_token

    def credentials(self, principal: str):
        """Real Google OAuth2 credentials for ``principal`` that refresh against this stand-in."""
        from google.oauth2.credentials import Credentials
        return Credentials(token=None, refresh_token=self.add_principal(principal), token_uri=self.token_uri,
                           client_id=self.client_id, client_secret=self.client_secret)

    def add_user(self, name: str, *, password: str | None, backend_user: str,
                 backend_password: str | None) -> DatabaseUser:
        """A database user of the instance (``password=None``: an IAM user, named by ``iam_database_user``)."""
        user = DatabaseUser(name, password, backend_user, backend_password)
        with self._lock:
            self.users[name] = user
        return user

    def start(self) -> "CloudSQLStandIn":
        self._listener, self.ip = self._listen()
        try:
            self._tls = self._server_context()
            self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _api_handler(self))
            self._http.daemon_threads = True
        except BaseException:
            self._listener.close()
            raise
        self._spawn(self._http.serve_forever, "api", 0.05)
        self._spawn(self._accept_loop, "proxy")
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> "CloudSQLStandIn":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def open_connections(self) -> int:
        """Client connections the proxy holds open right now."""
        with self._lock:
            return sum(1 for sock in self._connections if isinstance(sock, ssl.SSLSocket))

    def sign_client_certificate(self, public_key, *, lifetime: dt.timedelta | None = None,
                                not_before: dt.datetime | None = None) -> x509.Certificate:
        """A client certificate from the client CA, as ``generateEphemeralCert`` signs them (not recorded as issued)."""
        now = _now()
        not_before = not_before or now - dt.timedelta(minutes=1)
        not_after = not_before + (lifetime or self.certificate_lifetime)
        return sign_certificate(self.client_ca, public_key, "cloudsql-ephemeral-client", client=True,
                                not_before=not_before, not_after=not_after)

    # -- the Admin API and token endpoint --------------------------------------------------------

    def _issue_token(self, principal: str, scopes: frozenset[str]) -> IssuedToken:
        issued = IssuedToken(f"ya29.standin-{secrets.token_urlsafe(24)}", principal, scopes,
                             _now() + self.token_lifetime)
        with self._lock:
            self.tokens[issued.token] = issued
        return issued

    def _token_endpoint(self, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("client_id") != self.client_id or not hmac.compare_digest(
                form.get("client_secret", ""), self.client_secret):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            principal = self._refresh_tokens.get(form.get("refresh_token", ""))
        if principal is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown refresh token"}
        scopes = frozenset(form.get("scope", "").split()) or frozenset({ADMIN_SCOPE})
        issued = self._issue_token(principal, scopes)
        return 200, {"access_token": issued.token, "token_type": "Bearer", "scope": " ".join(sorted(scopes)),
                     "expires_in": int(self.token_lifetime.total_seconds())}

    def _bearer(self, header: str | None) -> IssuedToken | None:
        if not header or not header.startswith("Bearer "):
            return None
        with self._lock:
            issued = self.tokens.get(header[len("Bearer "):])
        return issued if issued is not None and issued.valid() else None

    def _connect_settings(self) -> dict:
        return {
            "kind": "sql#connectSettings",
            "serverCaCert": {"kind": "sql#sslCert", "cert": self.server_ca.pem,
                             "commonName": self.server_ca.cert.subject.rfc4514_string(),
                             "instance": self.instance},
            "ipAddresses": [{"type": "PRIMARY", "ipAddress": self.ip},
                            {"type": "PRIVATE", "ipAddress": self.ip}],
            "region": self.region,
            "databaseVersion": self.database_version,
            "backendType": "SECOND_GEN",
            "pscEnabled": False,
            "serverCaMode": "GOOGLE_MANAGED_INTERNAL_CA",
        }

    def _generate_ephemeral_cert(self, body: dict) -> tuple[int, dict]:
        try:
            public_key = serialization.load_pem_public_key(str(body["public_key"]).encode())
        except Exception:
            return 400, _api_error(400, "public_key is not a PEM public key")
        access_token = None
        if "access_token" in body:
            with self._lock:
                access_token = self.tokens.get(str(body["access_token"]))
            if access_token is None or not access_token.valid():
                return 400, _api_error(400, "access_token is not a valid token")
            if LOGIN_SCOPE not in access_token.scopes:
                return 403, _api_error(403, f"access_token lacks the scope {LOGIN_SCOPE}")
        lifetime = self.certificate_lifetime
        if access_token is not None:  # Cloud SQL does not let the certificate outlive the token
            lifetime = min(lifetime, access_token.expires_at - _now())
        cert = self.sign_client_certificate(public_key, lifetime=lifetime)
        issued = IssuedCertificate(cert.serial_number, cert.not_valid_after_utc, access_token)
        with self._lock:
            self.certificates[issued.serial] = issued
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        return 200, {"ephemeralCert": {"kind": "sql#sslCert", "cert": pem,
                                       "certSerialNumber": str(cert.serial_number),
                                       "expirationTime": cert.not_valid_after_utc.isoformat()}}

    def _api(self, method: str, path: str, headers, body: bytes) -> tuple[int, dict]:
        if method == "POST" and path == "/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            return self._token_endpoint(form)
        match = re.fullmatch(r"/sql/v1beta4/projects/([^/]+)/instances/([^/:]+)"
                             r"(/connectSettings|:generateEphemeralCert)", path.split("?", 1)[0])
        if match is None:
            return 404, _api_error(404, f"no such method: {method} {path}")
        if self._bearer(headers.get("Authorization")) is None:
            return 401, _api_error(401, "Request had invalid authentication credentials.")
        project, instance, call = match.groups()
        if (project, instance) != (self.project, self.instance):
            return 404, _api_error(404, f"The Cloud SQL instance {project}:{instance} does not exist.")
        if call == "/connectSettings" and method == "GET":
            return 200, self._connect_settings()
        if call == ":generateEphemeralCert" and method == "POST":
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                return 400, _api_error(400, "the body is not JSON")
            return self._generate_ephemeral_cert(payload)
        return 405, _api_error(405, f"{method} is not allowed here")

    # -- the server-side proxy -----------------------------------------------------------------

    def _listen(self) -> tuple[socket.socket, str]:
        rng = random.Random()
        candidates = [f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}" for _ in range(3)]
        problems = []
        for ip in candidates + ["127.0.0.1"]:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((ip, self.port))
                sock.listen(32)
            except OSError as exc:
                sock.close()
                # EADDRNOTAVAIL: only 127.0.0.1 is configured (macOS); EADDRINUSE: taken
                problems.append(f"{ip}:{self.port}: {exc.strerror or exc}")
                continue
            sock.settimeout(0.1)
            return sock, ip
        raise StandInUnavailable(
            f"the Cloud SQL stand-in cannot listen on port {self.port}, the port the Cloud SQL connector "
            f"always dials ({'; '.join(problems)}); stop what listens there (a Cloud SQL Auth Proxy?) "
            "to run these tests")

    def _server_context(self) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = sign_certificate(self.server_ca, key.public_key(), f"{self.project}:{self.instance}", client=False,
                                not_before=now - dt.timedelta(minutes=5), not_after=now + dt.timedelta(days=1),
                                ip=self.ip)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED  # the client certificate is required ...
        context.load_verify_locations(cadata=self.client_ca.pem)  # ... and must come from the client CA
        with tempfile.TemporaryDirectory(prefix="cloudsql-standin-") as tmp:
            cert_file, key_file = Path(tmp, "server.pem"), Path(tmp, "server.key")
            cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
            context.load_cert_chain(cert_file, key_file)
        return context

    def _spawn(self, target, name: str, *args) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=f"cloudsql-standin-{name}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._spawn(self._serve_connection, "connection", raw)

    def _track(self, sock: socket.socket, on: bool) -> None:
        with self._lock:
            (self._connections.add if on else self._connections.discard)(sock)

    def _refuse(self, reason: str) -> None:
        with self._lock:
            self.refusals.append(reason)

    def _serve_connection(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        self._track(raw, True)
        client = backend = None
        try:
            client = self._tls.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            self._track(client, True)
            try:
                client.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                detail = " ".join(str(part) for part in (getattr(exc, "reason", None) or exc,
                                                         getattr(exc, "verify_message", None)) if part)
                self._refuse(f"TLS handshake refused: {detail}")
                return
            serial = x509.load_der_x509_certificate(client.getpeercert(binary_form=True)).serial_number
            with self._lock:
                issued = self.certificates.get(serial)
            if issued is None:
                self._refuse(f"client certificate {serial:x} was not issued by generateEphemeralCert")
                return
            backend = self._startup(client, issued)
            if backend is None:
                return
            self._track(backend, True)
            client.settimeout(None)
            backend.settimeout(None)
            self._splice(client, backend)
        except Exception as exc:  # a broken connection, never the stand-in: record it and go on
            self._refuse(f"connection ended: {type(exc).__name__}: {exc}")
        finally:
            for sock in (backend, client, raw):
                if sock is not None:
                    self._track(sock, False)
                    try:
                        sock.close()
                    except OSError:
                        pass

    def _startup(self, client: ssl.SSLSocket, issued: IssuedCertificate) -> socket.socket | None:
        """Authenticate the client's startup as the instance would; the logged-in backend socket, or None."""
        while True:
            length = struct.unpack("!i", _recv_exact(client, 4))[0]
            body = _recv_exact(client, length - 4)
            code = struct.unpack("!i", body[:4])[0]
            if code in (_SSL_REQUEST, _GSSENC_REQUEST):
                client.sendall(b"N")  # the connection is TLS already
                continue
            if code == _CANCEL_REQUEST:
                with self.backend.connect(timeout=5) as sock:
                    sock.sendall(struct.pack("!i", length) + body)
                return None
            if code != _PROTOCOL_3:
                raise _Refused(f"unsupported protocol {code}")
            break
        parts = body[4:].split(b"\0")
        params = {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2) if parts[i]}
        name, database = params.get("user", ""), params.get("database", params.get("user", ""))
        with self._lock:
            user = self.users.get(name)
        token = issued.access_token
        if token is not None:
            method, sent_password = "iam", False
            if not token.valid():
                ok, reason = False, "the IAM token bound to the certificate has expired"
            elif user is None or not user.iam:
                ok, reason = False, f"{name!r} is not an IAM database user of the instance"
            elif iam_database_user(token.principal) != name:
                ok, reason = False, f"the IAM token belongs to {token.principal}, not to {name!r}"
            else:
                ok, reason = True, "IAM token bound to the client certificate"
            text = f'Cloud SQL IAM user authentication failed for user "{name}"'
        else:
            method = "password"
            client.sendall(_message(b"R", struct.pack("!i", 3)))  # AuthenticationCleartextPassword
            kind, payload, _ = read_message(client)
            sent_password = kind == b"p"
            given = payload.rstrip(b"\0").decode(errors="replace") if sent_password else ""
            if user is None or user.iam:
                ok, reason = False, f"{name!r} is not a built-in database user of the instance"
            elif not hmac.compare_digest(given.encode(), user.password.encode()):
                ok, reason = False, "wrong password"
            else:
                ok, reason = True, "password"
            text = f'password authentication failed for user "{name}"'
        with self._lock:
            self.logins.append(Login(name, database, method, ok, reason, issued.serial,
                                     token.token if token else None, sent_password))
        if not ok:
            client.sendall(_error_response("28P01", text))
            return None
        return self._backend_login(client, user, {**params, "user": user.backend_user, "database": database})

    def _backend_login(self, client: ssl.SSLSocket, user: DatabaseUser, params: dict[str, str]):
        backend = self.backend.connect(timeout=10)
        try:
            backend.sendall(startup_message(params))
            scram = None
            while True:
                kind, payload, whole = read_message(backend)
                if kind == b"E":
                    client.sendall(whole)
                    backend.close()
                    return None
                if kind != b"R":
                    client.sendall(whole)
                    continue
                code = struct.unpack("!i", payload[:4])[0]
                if code == 0:  # AuthenticationOk: from here on the client talks to PostgreSQL itself
                    with self._lock:
                        self.backend_logins += 1
                    client.sendall(whole)
                    return backend
                password = user.backend_password
                if password is None:
                    raise _Refused(f"PostgreSQL asks a password for {user.backend_user!r} and none is known")
                if code == 3:
                    backend.sendall(_message(b"p", password.encode() + b"\0"))
                elif code == 5:
                    inner = hashlib.md5((password + user.backend_user).encode()).hexdigest().encode()
                    backend.sendall(_message(b"p", b"md5" + hashlib.md5(inner + payload[4:8]).hexdigest().encode()
                                             + b"\0"))
                elif code == 10:
                    import scramp
                    mechanisms = [m.decode() for m in payload[4:].split(b"\0") if m and not m.endswith(b"-PLUS")]
                    scram = scramp.ScramClient(mechanisms, user.backend_user, password)
                    first = scram.get_client_first().encode()
                    backend.sendall(_message(b"p", scram.mechanism_name.encode() + b"\0"
                                             + struct.pack("!i", len(first)) + first))
                elif code == 11:
                    scram.set_server_first(payload[4:].decode())
                    backend.sendall(_message(b"p", scram.get_client_final().encode()))
                elif code == 12:
                    scram.set_server_final(payload[4:].decode())
                else:
                    raise _Refused(f"PostgreSQL asks for authentication method {code}, which the stand-in lacks")
        except BaseException:
            backend.close()
            raise

    def _splice(self, client: ssl.SSLSocket, backend: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, backend)
            selector.register(backend, selectors.EVENT_READ, client)
            while not self._stopping.is_set():
                # TLS may hold decrypted bytes that select() cannot see
                ready = [(client, backend)] if client.pending() else [
                    (key.fileobj, key.data) for key, _ in selector.select(timeout=0.5)]
                for source, target in ready:
                    data = source.recv(65536)
                    if not data:
                        return
                    target.sendall(data)


def _api_error(code: int, message: str) -> dict:
    return {"error": {"code": code, "message": message, "errors": [{"message": message}]}}


def _api_handler(standin: CloudSQLStandIn):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                status, answer = standin._api(self.command, self.path, self.headers, body)
            except Exception as exc:  # a bug in the stand-in: answer 500 and let the test see it
                status, answer = 500, _api_error(500, f"stand-in failed: {type(exc).__name__}: {exc}")
            with standin._lock:
                standin.api_calls.append((self.command, self.path.split("?", 1)[0], status))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _handle

        def log_message(self, *args) -> None:
            pass

    return Handler
