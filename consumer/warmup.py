"""The numerical kernels made ready before a run needs them, and the log saying so while they compile.

The compiled kernels of ``consumer.irt`` declare their argument types, so
numba compiles each one when its module is imported, and keeps the machine
code in its cache (``cache=True``: under ``NUMBA_CACHE_DIR``, else next to
the sources). Only the first import after an install compiles, about 13 s of
CPU; every later one loads them from the cache in a fraction of a second.

``KernelImport`` imports the kernel modules in a background thread. When
numba starts compiling there (the cache is cold), it says so in the log,
then again every few seconds until the kernels are ready; and the modules
after the first are compiled meanwhile by processes of their own, side by
side on the other cores (numba compiles one function at a time in a
process), then loaded from the cache. The demo starts it first thing and
waits for it before its run, so that the compiling overlaps the database
starting and filling; ``calibrate`` and ``serve`` wait for it at once
(``load_kernels``), and so does the image build
(``infra/docker/warm_numba.py``), so that containers start with them cached.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import threading
import time

log = logging.getLogger("consumer.warmup")

#: The modules whose kernels a calibration run calls; none imports another, so they compile side by side.
KERNEL_MODULES = ("consumer.irt.kernels", "consumer.irt.information_kernels", "consumer.irt.information_exact_kernels",
                  "consumer.irt.information_approximate_kernels", "consumer.irt.scoring_kernels")
#: While numba compiles, a log line this often (the demo's goal: never 5 s without one).
HEARTBEAT_SECONDS = 3.0


class KernelImport:
    """The kernel modules being imported in a background thread; ``wait`` for them before a run."""

    def __init__(self, then: tuple[str, ...] = ()) -> None:
        self.then = then  # modules imported after the kernels, in the same thread (what a run needs besides them)
        self.compiling_since: float | None = None  # when numba started compiling (None: all came from its cache)
        self.compiling_took = 0.0
        self.failure: BaseException | None = None
        self.done = threading.Event()
        self._helpers: dict[str, subprocess.Popen] = {}
        self._importing = ""
        threading.Thread(target=self._import, name="kernel-import", daemon=True).start()
        threading.Thread(target=self._heartbeat, name="kernel-import-heartbeat", daemon=True).start()

    def _import(self) -> None:
        from numba.core import event  # numba's documented event API: it announces a compile, not a cache load

        owner = self

        class CompileListener(event.Listener):
            def on_start(self, compile_event) -> None:
                if owner.compiling_since is None:
                    owner.compiling_since = time.monotonic()
                    log.info("compiling the numerical kernels (numba; the first run after an install does this "
                             "once, later runs load them from the cache)")
                    if owner._importing == KERNEL_MODULES[0]:  # a cold cache: the others compile meanwhile
                        owner._compile_elsewhere(KERNEL_MODULES[1:])

            def on_end(self, compile_event) -> None:
                pass  # (a Listener's other half)

        try:
            with event.install_listener("numba:compile", CompileListener()):
                for module in KERNEL_MODULES:
                    self._importing = module
                    helper = self._helpers.get(module)
                    if helper is not None:
                        helper.wait()  # then this import loads what it compiled (or compiles what it could not)
                    importlib.import_module(module)
            for module in self.then:
                importlib.import_module(module)
        except BaseException as failure:  # handed to the waiting thread, which raises it
            self.failure = failure
        finally:
            if self.compiling_since is not None:
                self.compiling_took = time.monotonic() - self.compiling_since
            self.done.set()

    def _compile_elsewhere(self, modules: tuple[str, ...]) -> None:
        """Start a process importing each of ``modules`` (so compiling them), with this process's package."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["consumer"].__file__)))
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        for module in modules:
            self._helpers[module] = subprocess.Popen(
                [sys.executable, "-c", f"import {module}"], env={**os.environ, "PYTHONPATH": path},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _heartbeat(self) -> None:
        while not self.done.wait(HEARTBEAT_SECONDS):
            if self.compiling_since is not None:
                log.info("still compiling the numerical kernels (%.0f s so far)",
                         time.monotonic() - self.compiling_since)

    def wait(self) -> None:
        """Return once every kernel is compiled or loaded (and ``then`` imported); raise what stopped their import, if
        anything did."""
        self.done.wait()
        if self.failure is not None:
            raise self.failure
        if self.compiling_since is not None:
            log.info("numerical kernels compiled in %.1f s; later runs load them from the cache", self.compiling_took)


def load_kernels() -> None:
    """Import the kernel modules now: loaded from numba's cache, or compiled and said so in the log."""
    KernelImport().wait()
