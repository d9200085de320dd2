"""The health endpoints, served by aiohttp on their own thread.

- ``GET /healthz``: 200 while the process and its subscriber are alive
  (Kubernetes liveness; Cloud Run's startup/liveness probes);
- ``GET /readyz``: 200 when the database answers and the subscription can
  be read, 503 with what is wrong otherwise (readiness).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

from aiohttp import web

log = logging.getLogger(__name__)

Check = Callable[[], bool]


class HealthServer:
    """Serves /healthz and /readyz on ``port`` from a background thread."""

    def __init__(self, port: int, alive: Check, ready_checks: dict[str, Check], host: str = "0.0.0.0") -> None:
        self.port = port
        self.host = host
        self.alive = alive
        self.ready_checks = ready_checks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def _healthz(self, request: web.Request) -> web.Response:
        ok = self.alive()
        return web.json_response({"status": "ok" if ok else "down"}, status=200 if ok else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        names = list(self.ready_checks)
        results = await asyncio.gather(*(loop.run_in_executor(None, self.ready_checks[n]) for n in names))
        checks = {name: "ok" if result else "failing" for name, result in zip(names, results)}
        ok = all(results)
        return web.json_response({"status": "ready" if ok else "not ready", "checks": checks},
                                 status=200 if ok else 503)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="health-server", daemon=True)
        self._thread.start()
        self._started.wait(timeout=10)
        if self._error is not None:
            from .errors import ConfigError
            raise ConfigError(f"cannot serve health endpoints on port {self.port}: {self._error}",
                              "set PORT to a free port")
        log.info("health endpoints on http://%s:%d/healthz and /readyz", self.host, self.port)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._runner = web.AppRunner(self._app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, self.host, self.port).start())
        except BaseException as problem:
            self._error = problem
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
