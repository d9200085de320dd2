"""Compiling the numerical kernels before a run needs them, and saying so while it happens.

numba compiles each kernel of ``consumer.irt`` the first time it runs with
given argument types and keeps the machine code in its cache (``cache=True``:
under ``NUMBA_CACHE_DIR``, else next to the sources), so only the first run
after an install pays for it: about 17 s of compiling in all (CPU time), for
the most part in two processes side by side, against about 2 s for the
demo's whole run once compiled. The image compiles them at build time
(``infra/docker/warm_numba.py``, through ``compile_kernels``). Elsewhere:

- ``report_compilation`` makes a process say so in its log: a line once a
  compile has gone on for a second, and another whenever compiling keeps the
  log silent for 4 s;
- ``start`` compiles them in the background, in subprocesses of their own
  (numba compiles one function at a time in a process), while the caller
  does something else: the demo starts its database and fills it meanwhile,
  then ``Warmup.wait``\\ s; until they are done, a line every few seconds of
  silence says so.

The compiling goes through the calls a calibration run makes (its own fit
step with its diagnostics, then EAP scoring) on simulated data of the run's
shape when it is known (the demo knows it; the standard errors take one path
on small problems and another on large ones), so the argument types, and
hence the compiled signatures, are the run's.
Two processes never compile the same kernel at once: numba's cache index is
per function and written without a lock, so one process could lose the
other's entry. ``PARTS`` therefore splits the work by function: the
standard errors (``information_kernels``, on an E-step made with numpy, so
that no E-step kernel is compiled there), the fit with its diagnostics (the
E-step and M-step kernels; it reaches its standard errors once the other
process has compiled them, and loads them from the cache), and the scoring
(the posterior moments kernel). ``start`` runs the first two side by side:
numba compiles on one core per process.

``python -m consumer.warmup [PART ...]`` compiles in this process (the
subprocesses run this) and prints one line per part.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Callable

log = logging.getLogger("consumer.warmup")

#: Compiling that has gone on this long is announced; while compiling goes on, silence is broken this often.
ANNOUNCE_AFTER = 1.0
HEARTBEAT_EVERY = 4.0
#: Compiles less than this apart are one stretch of compiling (the kernels are many and each takes about a
#: second: one at a time they would never be announced).
STRETCH_GAP = 1.0


# --- saying so --------------------------------------------------------------------------------

class _CompileWatch:
    """Follows numba's compile events in this process; a thread speaks when compiling keeps the log silent."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.current = ""
        self.stretch = 0.0  # when the stretch of compiles in progress began
        self.ended = -STRETCH_GAP  # when the last compile ended
        self.first = 0.0  # when the first compile began
        self.compiled = 0
        self.announced = False
        self.last_said = 0.0
        self.thread: threading.Thread | None = None

    # numba.core.event.Listener's interface (subclassed in ``report_compilation``)
    def on_start(self, event) -> None:
        with self.lock:
            if self.depth == 0:
                now = time.monotonic()
                self.current = _kernel_name(event)
                if now - self.ended >= STRETCH_GAP:
                    self.stretch = now
                self.first = self.first or now
            self.depth += 1
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._speak, name="compile-watch", daemon=True)
                self.thread.start()

    def on_end(self, event) -> None:
        with self.lock:
            self.depth = max(self.depth - 1, 0)
            if self.depth == 0:
                self.compiled += 1
                self.ended = time.monotonic()

    def _speak(self) -> None:
        from .telemetry import seconds_since_last_log_line
        idle_since = time.monotonic()
        while True:
            time.sleep(0.25)
            now = time.monotonic()
            with self.lock:
                compiling = self.depth > 0 or now - self.ended < STRETCH_GAP
                current, started = self.current, self.stretch
                compiled, first, announced = self.compiled, self.first, self.announced
            if not compiling:
                if now - idle_since > 30.0:
                    return  # a later compile starts a new thread
                continue
            idle_since = now
            if not announced and now - started >= ANNOUNCE_AFTER:
                log.info("compiling the numerical kernels (numba; the first run after an install does this once, "
                         "later runs load them from the cache): %s", current)
                with self.lock:
                    self.announced, self.last_said = True, now
            elif announced and min(now - self.last_said, seconds_since_last_log_line()) >= HEARTBEAT_EVERY:
                log.info("still compiling the numerical kernels: %d compiled in %.0f s, now %s",
                         compiled, now - first, current)
                with self.lock:
                    self.last_said = now


def _kernel_name(event) -> str:
    function = getattr(event.data.get("dispatcher"), "py_func", None)
    if function is None:
        return "a kernel"
    module = function.__module__.removeprefix("consumer.irt.")
    return f"{module}.{function.__qualname__}"


_watch: _CompileWatch | None = None


def report_compilation() -> None:
    """From now on, log what numba compiles when it takes long (idempotent; costs nothing once compiled)."""
    global _watch
    if _watch is not None:
        return
    from numba.core import event

    class Listener(_CompileWatch, event.Listener):
        pass

    _watch = Listener()
    event.register("numba:compile", _watch)


def kernels_compiled_here() -> int:
    """How many kernels this process has compiled (0: all came from the cache, or none ran)."""
    return _watch.compiled if _watch is not None else 0


# --- compiling --------------------------------------------------------------------------------

#: Data shape (students, items, answers each) the warm-up fits when it is not told the run's; the standard
#: errors' two paths (the whole matrix, the approximation past its memory budget) are then both compiled.
DEFAULT_SHAPES = ((300, 30, 15),)


def _data(shape: tuple[int, int, int], seed: int = 11):
    """Sparse 2PL responses of ``shape``, with the array types a run loads (made without compiled code)."""
    import numpy as np
    from .irt.model import ItemParameters
    from .irt.responses import Responses
    n_persons, n_items, per_person = shape
    rng = np.random.default_rng(seed)
    params = ItemParameters(rng.lognormal(0.0, 0.3, n_items), rng.normal(0.0, 1.0, n_items), np.zeros(n_items))
    theta = rng.normal(0.0, 1.0, n_persons)
    item = np.sort(np.argsort(rng.random((n_persons, n_items)), axis=1)[:, :per_person], axis=1)
    item = item.ravel().astype(np.int32)
    person = np.repeat(np.arange(n_persons), per_person)
    p = 1.0 / (1.0 + np.exp(-params.a[item] * (theta[person] - params.b[item])))
    correct = (rng.random(item.size) < p).astype(np.uint8)
    ptr = np.arange(n_persons + 1, dtype=np.int64) * per_person
    return Responses(ptr, item, correct, n_items), params


def _compile_fit(model: str, shapes: tuple[tuple[int, int, int], ...]) -> None:
    """The run's own fit step (estimation, then standard errors and item fit) for ``model``, on data of ``shapes[0]``.

    (The E-step's and M-step's kernels take the same types whatever the
    shape; the standard errors' path depends on it: the ``errors`` part
    compiles them.)
    """
    import numpy as np
    from . import steps
    from .calibration import CalibrationRequest
    from .db.queries import Observations
    from .settings import Settings
    responses, _ = _data(shapes[0])
    settings = Settings.load(model=model)  # the environment's settings, as the run will have them
    context = steps.RunContext(None, settings, CalibrationRequest())
    observations = Observations(responses, [str(i) for i in range(responses.n_persons)],
                                np.arange(1, responses.n_items + 1), None, None)
    quiet = logging.getLogger("consumer.run")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the run's story of a made-up data set is no one's business
    try:
        steps.diagnose(context, observations, steps.fit(context, observations))
    finally:
        quiet.setLevel(level)


def _final_estep(responses, params, quadrature):
    """``FinalEStep.at(responses, params, quadrature)`` in numpy: the same arrays, no E-step kernel compiled."""
    import numpy as np
    from .irt.expected import FinalEStep
    data, kept = responses.restrict_items(np.isfinite(params.a) & np.isfinite(params.b))
    items = params.take(kept)
    log_curves = items.log_curves(quadrature.nodes)
    rows = 2 * data.item.astype(np.int64) + data.correct
    person = data.person_index()
    post = np.tile(quadrature.log_weights, (data.n_persons, 1))
    np.add.at(post, person, log_curves.reshape(-1, quadrature.nodes.size)[rows])
    post = np.exp(post - post.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    counts = np.zeros((2 * len(items), quadrature.nodes.size))
    np.add.at(counts, rows, post[person])
    mass = post[np.diff(data.person_ptr) > 0].sum(axis=0)
    return FinalEStep(quadrature, data, kept, items, log_curves, counts.reshape(len(items), 2, -1), mass)


def _compile_errors(model: str, shapes: tuple[tuple[int, int, int], ...]) -> None:
    """The standard errors as the run's fit step calls them, on data of ``shapes[0]``.

    On the run's shape, the path it takes (``method="auto"``); not told the
    shape, both paths.
    """
    import numpy as np
    from .irt import information
    from .irt.priors import Priors
    from .irt.model import ItemParameters
    from .irt.quadrature import Quadrature
    from .settings import Settings
    responses, params = _data(shapes[0])
    if model == "3PL":  # (a lower asymptote inside its prior's support)
        params = ItemParameters(params.a, params.b, np.full(len(params), 0.2))
    quadrature = Quadrature.normal(Settings.load(model=model).quadrature_points)
    final = _final_estep(responses, params, quadrature)
    for method in ("full", "approximate") if shapes == DEFAULT_SHAPES else ("auto",):
        information.standard_errors(responses, params, model, quadrature, Priors(), final=final, method=method)


def _compile_scoring(model: str, shapes: tuple[tuple[int, int, int], ...]) -> None:
    """EAP scoring as the run calls it (the same kernel whatever the model and size)."""
    from .irt import linking
    from .irt.quadrature import Quadrature
    from .irt.scoring import score_eap
    from .settings import Settings
    responses, params = _data(shapes[0])
    score_eap(responses, params, linking=linking.IDENTITY,
              quadrature=Quadrature.normal(Settings.load().quadrature_points))


#: What each background process compiles; no numba function is compiled by two of them.
PARTS: dict[str, tuple[str, Callable[[str, tuple[tuple[int, int, int], ...]], None]]] = {
    "errors": ("the standard errors", _compile_errors),
    "fit": ("the fit and item fit", _compile_fit),
    "scoring": ("the scoring", _compile_scoring),
}


def compile_kernels(parts: list[str] | None = None, model: str = "2PL",
                    shapes: tuple[tuple[int, int, int], ...] = DEFAULT_SHAPES) -> list[tuple[str, float, int]]:
    """Compile (or load from the cache) the kernels of ``parts`` for ``model`` in this process, in ``PARTS``' order.

    Returns (part, seconds, kernels compiled) for each part.
    """
    report_compilation()
    done = []
    for part in [p for p in PARTS if p in (parts or PARTS)]:
        _, compile_part = PARTS[part]
        started, before = time.perf_counter(), kernels_compiled_here()
        compile_part(model, shapes)
        done.append((part, time.perf_counter() - started, kernels_compiled_here() - before))
    return done


def _after(marker: str) -> None:
    """Make this process's standard errors wait until ``marker`` exists: another process is compiling them."""
    from .irt import information
    compute = information.standard_errors

    def standard_errors(*args, **kwargs):
        deadline = time.monotonic() + 600.0
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        return compute(*args, **kwargs)

    information.standard_errors = standard_errors


# --- in the background ------------------------------------------------------------------------

@dataclass
class Warmup:
    """Background processes compiling the kernels; ``wait`` for them before a run."""

    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    #: Their stderr, in files: a pipe nobody reads while they run could fill and stop them.
    errors: dict[str, IO[str]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    #: part -> (seconds, kernels compiled, CPU seconds of its process), or the reason it failed
    outcome: dict[str, tuple[float, int, float] | str] = field(default_factory=dict)
    #: A directory of the processes' own (where one tells another it is done)
    scratch: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="mirt-warmup-"))
    stopped: threading.Event = field(default_factory=threading.Event)

    def _collect(self) -> None:
        for part, process in self.processes.items():
            if part in self.outcome or process.poll() is None:
                continue
            out = process.stdout.read() if process.stdout else ""
            try:
                seconds, compiled, cpu = json.loads(out.strip().splitlines()[-1])[part]
                self.outcome[part] = (float(seconds), int(compiled), float(cpu))
            except Exception:
                self.errors[part].seek(0)
                lines = self.errors[part].read().strip().splitlines()
                self.outcome[part] = lines[-1] if lines else f"exit status {process.returncode}"

    def speak(self, every: float = 3.0) -> None:
        """From now until the processes end, a line whenever the log has been silent ``every`` s (a thread).

        So that the caller's own steps meanwhile (the demo's database
        filling) are not silent either on a slow machine.
        """
        def heartbeat() -> None:
            from .telemetry import seconds_since_last_log_line
            said = time.monotonic()
            while not self.stopped.wait(0.1):
                pending = [PARTS[p][0] for p, process in self.processes.items() if process.poll() is None]
                if not pending:
                    return
                now = time.monotonic()
                if min(seconds_since_last_log_line(), now - said) >= every:
                    # The processes run on a warm cache too (they only load the kernels then): say both.
                    log.info("compiling the numerical kernels of %s (once after an install; later runs load them "
                             "from the cache; %.0f s so far)", " and ".join(pending), now - self.started)
                    said = now

        threading.Thread(target=heartbeat, name="warmup-heartbeat", daemon=True).start()

    def wait(self, timeout: float = 600.0) -> None:
        """Wait until every part is compiled (``speak`` says so meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            self._collect()
            pending = [PARTS[p][0] for p in self.processes if p not in self.outcome]
            if not pending:
                break
            if time.monotonic() > deadline:
                self.stop()
                log.warning("gave up waiting for the kernels of %s to compile; the run compiles what it needs",
                            " and ".join(pending))
                return
            time.sleep(0.1)
        done = {p: o for p, o in self.outcome.items() if isinstance(o, tuple)}
        for part, why in self.outcome.items():
            if isinstance(why, str):
                log.warning("could not compile the kernels of %s ahead of the run (%s); the run compiles them itself",
                            PARTS[part][0], why)
        if any(compiled for _, compiled, _ in done.values()):
            log.info("numerical kernels compiled in %.1f s (%s); later runs load them from the cache",
                     time.monotonic() - self.started,
                     ", ".join(f"{PARTS[p][0]} {s:.1f} s ({cpu:.1f} s of CPU)" for p, (s, _, cpu) in done.items()))

    def stop(self) -> None:
        self.stopped.set()
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()
        for errors in self.errors.values():
            errors.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def start(model: str = "2PL", shape: tuple[int, int, int] | None = None, parts: list[str] | None = None) -> Warmup:
    """Start compiling the kernels of ``model`` in the background, one process per part, side by side.

    ``shape`` (students, items, answers each) is that of the data the run will
    see, when known: the warm-up then takes the run's paths and only those.
    The fit's part brings the standard errors' along (the fit step computes
    them), in a process of its own: the fit's process waits for it when it
    comes to them.
    """
    warmup = Warmup()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    shapes = ["--shape", ",".join(map(str, shape))] if shape else []
    parts = list(parts or PARTS)
    if "fit" in parts and "errors" not in parts:
        parts.insert(parts.index("fit"), "errors")
    marker = os.path.join(warmup.scratch, "errors-compiled")
    for part in parts:
        order = (["--done", marker] if part == "errors" else
                 ["--after", marker] if part == "fit" and "errors" in parts else [])
        warmup.errors[part] = tempfile.TemporaryFile("w+")
        warmup.processes[part] = subprocess.Popen(
            [sys.executable, "-m", "consumer.warmup", "--model", model, *shapes, *order, part], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=warmup.errors[part], text=True)
    warmup.speak()
    return warmup


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m consumer.warmup",
                                     description="Compile the numerical kernels into numba's cache; print, per "
                                                 "part, one JSON line {part: [seconds, kernels compiled, CPU "
                                                 "seconds of the process so far]}.")
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"{' or '.join(PARTS)} (default: all)")
    parser.add_argument("--model", default="2PL", help="the model whose fit to compile (default 2PL)")
    parser.add_argument("--shape", metavar="STUDENTS,ITEMS,ANSWERS",
                        help="the shape of the data the run will see (default: a small one, and both paths of "
                             "the standard errors)")
    parser.add_argument("--done", metavar="FILE", help="create FILE when done (compiled or not)")
    parser.add_argument("--after", metavar="FILE",
                        help="compute the standard errors only once FILE exists (another process compiles them)")
    args = parser.parse_args(argv)
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}: choose from {', '.join(PARTS)}")
    shapes = (tuple(int(x) for x in args.shape.split(",")),) if args.shape else DEFAULT_SHAPES
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.after:
        _after(args.after)
    try:
        for part, seconds, compiled in compile_kernels(args.parts or None, args.model, shapes):
            cpu = sum(os.times()[:2])  # the process's so far: its imports and the parts before too
            print(json.dumps({part: [round(seconds, 2), compiled, round(cpu, 2)]}), flush=True)
    finally:
        if args.done:
            open(args.done, "w").close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
