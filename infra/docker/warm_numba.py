"""Compile the numba kernels into NUMBA_CACHE_DIR, as a calibration run would call them.

The image build runs this once (as the runtime user, against the installed
package), so that the first run in a new container loads compiled kernels
from the cache instead of spending 10 s or more compiling them. It goes
through ``consumer.warmup.compile_kernels``, which is what the demo uses on a
first run: the standard errors on both their paths (the whole matrix, and
the approximation past its memory budget), the run's own fit step
(estimation, standard errors, item fit) on a small simulated data set for
every model the estimator offers with the default settings, and EAP
scoring.

Exit status 0 when every available model compiled and fitted, 1 otherwise:
a build must not ship an image whose numerical core cannot run.
``tests/repository/test_infra.py`` runs this too, so a change of those calls that would
break the image's build breaks the tests first.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if not cache_dir:
        print("warm_numba: NUMBA_CACHE_DIR is not set; the compiled kernels would not be kept", file=sys.stderr)
        return 1

    from consumer.irt.model import MODELS
    from consumer.warmup import compile_kernels

    fitted = []
    for model in MODELS:
        started = time.perf_counter()
        try:
            compile_kernels(["errors", "fit"], model)
        except NotImplementedError as reason:  # a model the estimator does not offer yet
            print(f"warm_numba: {model} skipped: {reason}", file=sys.stderr)
            continue
        fitted.append(model)
        print(f"warm_numba: {model} compiled and fitted in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    if fitted:
        compile_kernels(["scoring"], fitted[0])
    if not fitted:
        print("warm_numba: no model could be fitted", file=sys.stderr)
        return 1
    print(f"warm_numba: kernels cached in {cache_dir} for {', '.join(fitted)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
