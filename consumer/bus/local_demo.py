"""``serve --demo`` and ``publish --demo``: the whole Pub/Sub loop on this machine, with no Google Cloud.

``serve --demo`` starts the bundled local Pub/Sub server (``local_server``),
or reuses the one a running ``serve --demo`` started for the same data
directory; creates the topics and subscriptions as infra/ defines them
(``topology``) in the project ``demo-project``; and notes where the server
listens in ``pubsub-demo.json`` in the data directory (MIRT_DATA_DIR), where
``publish --demo`` finds it. The ``serve`` that started the server stops it
when it exits, and removes the note.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shlex
import socket
from pathlib import Path

from ..errors import ConfigError
from ..settings import Settings
from . import topology

log = logging.getLogger(__name__)

PROJECT = "demo-project"
NOTE = "pubsub-demo.json"


def serving(settings: Settings) -> Settings:
    """Point this process at the demo's local Pub/Sub server (started here if none runs); the settings to serve with."""
    host = running_host(settings)
    if host is not None:
        log.info("reusing the demo's local Pub/Sub server on %s (noted in %s)", host, _note(settings))
    else:
        import platformdirs
        from . import local_server
        server = local_server.start(Path(platformdirs.user_cache_dir("irt-calibration")), own_session=True)
        host = server.host
        note = _note(settings)
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(json.dumps({"host": host, "pid": server.process.pid}))
        atexit.register(_stop, server, note)
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    topology.create(PROJECT, exist_ok=True)
    log.info("demo: local Pub/Sub server on %s, project %s: requests on %s, completed events on %s, dead letters "
             "on %s; try, in another terminal: %s", host, PROJECT, topology.REQUESTS_TOPIC, topology.COMPLETED_TOPIC,
             topology.DEAD_LETTER_TOPIC, publish_command())
    # The demo's bank is one scale: a MIRT_SCOPE_KEY meant for the platform's bank does not apply to it.
    return settings.with_overrides("demo", project=PROJECT, dead_letter_topic=topology.DEAD_LETTER_TOPIC,
                                   scope_key="")


def publishing(settings: Settings) -> Settings:
    """Point this process at the local Pub/Sub server ``serve --demo`` runs; the settings to publish with."""
    host = running_host(settings)
    if host is None:
        raise ConfigError(f"no local Pub/Sub server of the demo answers (none noted in {_note(settings)}, or it "
                          f"stopped)", "start one in another terminal: python -m consumer serve --demo "
                                       "(with the same MIRT_DATA_DIR)")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    return settings.with_overrides("demo", project=PROJECT)


def running_host(settings: Settings) -> str | None:
    """``host:port`` of the demo's local server noted in the data directory, if it accepts connections."""
    try:
        host = json.loads(_note(settings).read_text())["host"]
        name, _, port = host.rpartition(":")
        with socket.create_connection((name, int(port)), timeout=2):
            return host
    except (OSError, ValueError, KeyError, TypeError):
        return None


def publish_command() -> str:
    """The command that publishes a request to the demo's server and waits for its answer, as one can paste it."""
    data_dir = os.environ.get("MIRT_DATA_DIR", "").strip()  # (absolute: the command works from any directory)
    prefix = f"MIRT_DATA_DIR={shlex.quote(str(Path(data_dir).expanduser().resolve()))} " if data_dir else ""
    return f"{prefix}python -m consumer publish --demo --wait"


def _note(settings: Settings) -> Path:
    return settings.embedded_data_dir / NOTE


def _stop(server, note: Path) -> None:
    try:
        if json.loads(note.read_text()).get("pid") == server.process.pid:
            note.unlink()
    except (OSError, ValueError):
        pass
    server.stop()
    log.info("demo: stopped the local Pub/Sub server on %s", server.host)
