"""A local Pub/Sub server speaking the real gRPC protocol, for the demo and the tests.

It is the Pub/Sub gRPC server of ``cloudbox`` 0.2.3 (PyPI), pinned by hash.
Google's own emulator is a Java program that is not installable from the
package registries this project may use; cloudbox's server implements
Publisher and Subscriber over gRPC (streaming pull, ack, nack and
redelivery, ack-deadline changes, ordering keys, attributes) and works with
the real ``google-cloud-pubsub`` client through ``PUBSUB_EMULATOR_HOST``.
``local_server_behaviour`` makes it honour the client's flow control and
the subscription's retry and dead-letter policies, as Pub/Sub does and
cloudbox does not. What it does not emulate: exactly-once delivery, and
the attributes Pub/Sub adds to a dead-lettered message; see
docs/development.md.

cloudbox declares Python >= 3.14, so pip will not install it here. Its
Pub/Sub server only needs grpcio and google-cloud-pubsub (already
dependencies of this project) and runs on 3.11 once its modules postpone
annotation evaluation. So the wheel is downloaded once (``pip download``,
by exact version, checked against its SHA-256), the few modules the server
needs are unpacked into a cache directory and given
``from __future__ import annotations``, and the server runs from there in
a subprocess of its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger(__name__)

CLOUDBOX_VERSION = "0.2.3"
CLOUDBOX_WHEEL = f"cloudbox-{CLOUDBOX_VERSION}-py3-none-any.whl"
CLOUDBOX_SHA256 = "a1d94275676578cefb8c209664c7b77494c9f35725ea44bd5841cfebe75beca6"
#: The modules the Pub/Sub gRPC server imports; nothing else of cloudbox is unpacked.
_MODULES = (
    "cloudbox/__init__.py",
    "cloudbox/config.py",
    "cloudbox/core/__init__.py",
    "cloudbox/core/store.py",
    "cloudbox/services/__init__.py",
    "cloudbox/services/pubsub/__init__.py",
    "cloudbox/services/pubsub/store.py",
    "cloudbox/services/pubsub/grpc_server.py",
)
_FUTURE = "from __future__ import annotations\n"
_LAUNCHER = """
import asyncio, sys
from cloudbox.services.pubsub import grpc_server
from cloudbox.services.pubsub.grpc_server import create_server
from consumer.bus import local_server_behaviour
local_server_behaviour.install(grpc_server)
async def main():
    server = await create_server(sys.argv[1], int(sys.argv[2]))
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main())
"""


def install(cache_dir: Path) -> Path:
    """Unpack (downloading once) the pinned cloudbox Pub/Sub server; returns the directory to import it from."""
    target = cache_dir / f"cloudbox-{CLOUDBOX_VERSION}"
    if (target / "cloudbox" / "services" / "pubsub" / "grpc_server.py").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheel = cache_dir / CLOUDBOX_WHEEL
    if not wheel.is_file():
        log.info("downloading the local Pub/Sub server (cloudbox %s) from PyPI, once", CLOUDBOX_VERSION)
        with tempfile.TemporaryDirectory() as scratch:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--ignore-requires-python",
                 "--only-binary=:all:", "--dest", scratch, f"cloudbox=={CLOUDBOX_VERSION}"],
                capture_output=True, text=True, stdin=subprocess.DEVNULL)
            downloaded = Path(scratch) / CLOUDBOX_WHEEL
            if result.returncode != 0 or not downloaded.is_file():
                raise ConfigError(f"could not download cloudbox {CLOUDBOX_VERSION} for the local Pub/Sub server: "
                                  f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}",
                                  "check access to PyPI, or set PUBSUB_EMULATOR_HOST to a running emulator")
            digest = hashlib.sha256(downloaded.read_bytes()).hexdigest()
            if digest != CLOUDBOX_SHA256:
                raise ConfigError(f"cloudbox {CLOUDBOX_VERSION} has SHA-256 {digest}, expected {CLOUDBOX_SHA256}",
                                  "the download is not the pinned release; do not use it")
            os.replace(downloaded, wheel)
    staging = Path(tempfile.mkdtemp(prefix="cloudbox-", dir=cache_dir))
    with zipfile.ZipFile(wheel) as archive:
        for name in _MODULES:
            source = archive.read(name).decode()
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source if _FUTURE in source else _FUTURE + source)
    os.replace(staging, target)
    return target


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LocalPubSub:
    """A running local Pub/Sub server; ``host`` is what ``PUBSUB_EMULATOR_HOST`` takes."""

    process: subprocess.Popen
    host: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LocalPubSub":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(cache_dir: Path, port: int | None = None, timeout: float = 30.0, own_session: bool = False) -> LocalPubSub:
    """Start the local Pub/Sub server on 127.0.0.1 and wait until it serves.

    ``own_session``: in a session of its own, so that the Ctrl-C typed at the
    process that started it does not stop it under that process while it
    shuts down cleanly (``serve --demo`` stops it last).
    """
    path = install(cache_dir)
    port = port or free_port()
    # cloudbox's modules, and this package (local_server_behaviour) wherever it is imported from.
    package_root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(package_root)]), "CLOUDBOX_DATA_DIR": ""}
    process = subprocess.Popen([sys.executable, "-c", _LAUNCHER, "127.0.0.1", str(port)], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, start_new_session=own_session)
    deadline = time.monotonic() + timeout
    line = process.stdout.readline() if process.stdout else ""
    while line.strip() != "ready":
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise ConfigError("the local Pub/Sub server did not start",
                              f"run: PYTHONPATH={path} {sys.executable} -c '...create_server...' to see why")
        line = process.stdout.readline()
    log.info("local Pub/Sub server (cloudbox %s) listening on 127.0.0.1:%d", CLOUDBOX_VERSION, port)
    return LocalPubSub(process, f"127.0.0.1:{port}")
