"""The health endpoints, served by aiohttp on their own thread.

- ``GET /healthz``: 200 while the process and its subscriber are alive
  (Kubernetes liveness; Cloud Run's startup/liveness probes);
- ``GET /readyz``: 200 when the database answers and the subscription can
  be read, 503 with what is wrong otherwise (readiness). Each check has
  ``CHECK_SECONDS``: one that has not answered by then counts as failing
  ("timed out"), so a partitioned network gives a 503 at once instead of a
  request that hangs; the check itself finishes on its own thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable

from aiohttp import web

log = logging.getLogger(__name__)

Check = Callable[[], bool]

#: How long /readyz waits for each check: its answer comes within this (and well within Kubernetes' 3 s).
CHECK_SECONDS = 2.0


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
        names = list(self.ready_checks)
        results = await asyncio.gather(*(self._check(name) for name in names))
        checks = dict(zip(names, results))
        ok = all(result == "ok" for result in results)
        return web.json_response({"status": "ready" if ok else "not ready", "checks": checks},
                                 status=200 if ok else 503)

    async def _check(self, name: str) -> str:
        """"ok", "failing", or "timed out" when the check has not answered within ``CHECK_SECONDS``."""
        loop = asyncio.get_running_loop()
        answered = loop.create_future()

        def check() -> None:
            try:
                result = bool(self.ready_checks[name]())
            except Exception:
                result = False
            try:
                loop.call_soon_threadsafe(lambda: answered.done() or answered.set_result(result))
            except RuntimeError:  # the server stopped meanwhile
                pass

        # A thread of its own, a daemon: a check stuck on a dead network holds only itself (until its own
        # timeout), never the next probe nor the process's exit.
        threading.Thread(target=check, name=f"readiness-{name}", daemon=True).start()
        try:
            answer = await asyncio.wait_for(answered, CHECK_SECONDS)
        except asyncio.TimeoutError:
            log.warning("readiness check %r gave no answer within %.0f s: reported as failing", name, CHECK_SECONDS)
            return "timed out"
        return "ok" if answer else "failing"

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
