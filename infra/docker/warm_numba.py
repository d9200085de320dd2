"""Compile the numba kernels into NUMBA_CACHE_DIR, as a calibration run would call them.

The image build runs this once (as the runtime user, against the installed
package), so that the first run in a new container loads compiled kernels
from the cache instead of spending ~10 s compiling them. It goes through the
same calls as ``consumer.run``: simulate a small sparse data set, fit every
model the estimator offers with the default settings, link, and score by EAP.

Exit status 0 when every available model compiled and fitted, 1 otherwise:
a build must not ship an image whose numerical core cannot run.
``tests/test_infra.py`` runs this too, so a change of those calls that would
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

    from consumer.irt import linking
    from consumer.irt.estimate import estimate_items
    from consumer.irt.model import MODELS
    from consumer.irt.quadrature import Quadrature
    from consumer.irt.scoring import score_eap
    from consumer.irt.simulate import simulate
    from consumer.settings import SPECS

    defaults = {name: spec.default for name, spec in SPECS.items()}
    quadrature = Quadrature.normal(defaults["quadrature_points"])
    data = simulate(400, 40, 20, seed=7)
    fitted = []
    for model in MODELS:
        started = time.perf_counter()
        try:
            fit = estimate_items(data.responses, model, quadrature=quadrature,
                                 tolerance=defaults["em_tolerance"],
                                 max_iterations=defaults["em_max_iterations"],
                                 min_responses=defaults["min_responses"])
        except NotImplementedError as reason:  # a model the estimator does not offer yet
            print(f"warm_numba: {model} skipped: {reason}", file=sys.stderr)
            continue
        score_eap(data.responses, fit.params, linking=linking.IDENTITY, quadrature=quadrature)
        fitted.append(model)
        print(f"warm_numba: {model} compiled and fitted in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    if not fitted:
        print("warm_numba: no model could be fitted", file=sys.stderr)
        return 1
    print(f"warm_numba: kernels cached in {cache_dir} for {', '.join(fitted)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
