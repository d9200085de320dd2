"""Compile the numba kernels into NUMBA_CACHE_DIR, so that a new container finds them there.

The image build runs this once (as the runtime user, against the installed
package). The kernels declare their argument types, so importing their
modules compiles them; this imports them as ``calibrate`` and ``serve`` do
(``consumer.warmup.load_kernels``), and numba keeps the machine code in
NUMBA_CACHE_DIR: the first run in a new container loads it instead of
spending 10 s or more compiling.

Exit status 0 when the kernels compiled and the cache holds them, 1
otherwise: a build must not ship an image whose numerical core cannot be
loaded. ``tests/repository/test_infra.py`` runs this too, so a kernel that no longer
compiles breaks the tests before it breaks a build.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def main() -> int:
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if not cache_dir:
        print("warm_numba: NUMBA_CACHE_DIR is not set; the compiled kernels would not be kept", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="warm_numba: %(message)s", stream=sys.stderr)

    from consumer.warmup import load_kernels
    try:
        load_kernels()
    except Exception as problem:  # any failure to compile is a broken image
        print(f"warm_numba: the kernels do not compile: {type(problem).__name__}: {problem}", file=sys.stderr)
        return 1
    if not any(Path(cache_dir).rglob("*.nbi")):
        print(f"warm_numba: numba kept nothing in {cache_dir}: is it writable by this user?", file=sys.stderr)
        return 1
    print(f"warm_numba: kernels cached in {cache_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
