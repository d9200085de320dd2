"""How many threads the BLAS (OpenBLAS, as numpy and scipy ship it) may start, for a stretch of code.

The compiled kernels already keep every core busy with threads of their
own (``chunks``); the BLAS calls between them (the standard errors'
Cholesky factorisation and triangular inverse) start OpenBLAS's threads,
which wait for one another by spinning. On two cores shared with
PostgreSQL, other replicas or other work, that spinning costs more than
the second thread gains: the factorisation of the 3,000 parameters of a
500k-answer calibration took 0.44-0.54 s on one thread against
0.83-2.40 s (and up to four times the CPU) on two, at load average 4 on
two cores (benchmarks/README.md, "Scale").

``limited(1)`` sets every OpenBLAS loaded in the process to one thread and
puts the previous counts back afterwards. Without OpenBLAS (another BLAS,
or a platform without ``/proc/self/maps``) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from typing import Iterator

#: (get, set) pairs of the thread-count functions, by the names OpenBLAS builds export.
_NAMES = (("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
          ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
          ("openblas_get_num_threads", "openblas_set_num_threads"),
          ("openblas_get_num_threads64_", "openblas_set_num_threads64_"))
_found: list[tuple] | None = None
_lock = threading.Lock()
#: Blocks inside ``limited`` now (several threads may be), and the counts to put back after the last.
_depth = 0
_before: list[int] = []


def _libraries() -> list[tuple]:
    """(get, set) of every OpenBLAS this process has loaded; found once."""
    global _found
    if _found is None:
        found, paths = [], []
        try:
            with open("/proc/self/maps") as maps:
                for line in maps:
                    path = line.split()[-1] if "/" in line else ""
                    name = os.path.basename(path).lower()
                    if "openblas" in name and ".so" in name and path not in paths:
                        paths.append(path)
        except OSError:
            paths = []
        for path in paths:
            try:
                library = ctypes.CDLL(path)
            except OSError:
                continue
            for get, set_ in _NAMES:
                if hasattr(library, get) and hasattr(library, set_):
                    getter, setter = getattr(library, get), getattr(library, set_)
                    getter.restype, setter.argtypes = ctypes.c_int, [ctypes.c_int]
                    found.append((getter, setter))
                    break
        _found = found
    return _found


@contextlib.contextmanager
def limited(threads: int) -> Iterator[None]:
    """Within the block, every loaded OpenBLAS uses at most ``threads`` threads (the first block's count
    holds until the last block open in the process ends)."""
    global _depth, _before
    with _lock:
        libraries = _libraries()
        if _depth == 0:
            _before = [get() for get, _ in libraries]
            for (_, set_), count in zip(libraries, _before):
                set_(max(1, min(threads, count)))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for (_, set_), count in zip(libraries, _before):
                    set_(count)
