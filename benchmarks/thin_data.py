"""Plain ML against Bayes-modal priors on sparse 2PL designs of several densities.

The evidence behind ``MIRT_ITEM_PRIORS=auto``: for each design (answers per
item x answers per student), simulated with known truth (a ~ lognormal(0,
0.3), b ~ N(0, 1), theta ~ N(0, 1)), the 2PL is fitted twice with the
service's defaults otherwise: plain marginal ML (as R mirt) and with the
default priors (``consumer.irt.priors``: log a ~ N(mu, 0.5^2), b ~ N(m, (2 / e^mu)^2),
centred on the items every EM cycle). Printed per fit: E-step passes,
whether the EM converged, items a run holds back (not identified, or still
moving when the EM stopped at its 500 passes), and the RMSE
of a and b against the truth over the items that fit estimated (and, for a
like-for-like comparison, over the items both fits estimated).

    python benchmarks/thin_data.py                 # the sweep, about 5 minutes on 2 cores
    python benchmarks/thin_data.py --items 500     # a quicker, smaller bank
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumer.irt.estimate import estimate_items  # noqa: E402
from consumer.irt.priors import Priors  # noqa: E402
from consumer.irt.simulate import simulate  # noqa: E402

PER_ITEM = (50, 100, 200, 400, 1000)
PER_STUDENT = (5, 10, 40)


def rmse(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((x - y) ** 2))) if x.size else float("nan")


def fit(responses, priors: bool) -> tuple:
    started = time.perf_counter()
    result = estimate_items(responses, "2PL", priors=Priors(on_a_b=priors))
    return result, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000, help="items in the bank (default 2000)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    fit(simulate(200, 20, 10, seed=0).responses, False)  # compile before timing

    print("| answers per item | per student | responses | fit | passes | converged | held back | "
          "RMSE a | RMSE b | RMSE a, b on items both estimate | time s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for per_item in PER_ITEM:
        for per_student in PER_STUDENT:
            students = per_item * args.items // per_student
            truth = simulate(students, args.items, per_student, seed=args.seed)
            fits = {name: fit(truth.responses, name == "priors") for name in ("ML", "priors")}
            both = fits["ML"][0].estimated & fits["priors"][0].estimated
            for name, (result, seconds) in fits.items():
                e = result.estimated
                print(f"| {per_item} | {per_student} | {truth.responses.n_obs:,} | {name} | {result.iterations} | "
                      f"{'yes' if result.converged else 'no'} | {len(result.held_back) + len(result.still_moving)} | "
                      f"{rmse(result.params.a[e], truth.params.a[e]):.3f} | "
                      f"{rmse(result.params.b[e], truth.params.b[e]):.3f} | "
                      f"{rmse(result.params.a[both], truth.params.a[both]):.3f}, "
                      f"{rmse(result.params.b[both], truth.params.b[both]):.3f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
