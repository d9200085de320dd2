"""Scoring time at 400,000 students for each method of the menu (MIRT_SCORING) and for the plausible values.

Two designs, 2PL (``--model 3PL`` for the 3PL), simulated with a fixed seed:

- ``fixed form``: every student answers the same 40 items (EAP-sum's case:
  one Lord-Wingersky table for everybody);
- ``bank``: every student answers 40 of 2,000 items, drawn at random, so
  that almost every student has a form of their own (EAP-sum then runs one
  recursion per student).

Each method is timed once after a warm-up call on a small sample (the
kernels are compiled when imported; the warm-up starts the threads). The
table goes to stdout, with the load average before and after, since the
machine may be shared.

    python benchmarks/scoring.py                    # 400,000 students, both designs, about a minute on 2 cores
    python benchmarks/scoring.py --students 100000 --model 3PL
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np

from consumer.irt import plausible, scoring
from consumer.irt.model import ItemParameters
from consumer.irt.quadrature import Quadrature
from consumer.irt.responses import Responses
from consumer.irt.simulate import simulate

METHODS = ("EAP", "MAP", "ML", "WLE", "EAP-sum")


def design(name: str, students: int, model: str, seed: int) -> tuple[Responses, ItemParameters]:
    n_items = 40 if name == "fixed form" else 2000
    rng = np.random.default_rng(seed)
    params = ItemParameters(rng.lognormal(0.0, 0.3, n_items), rng.normal(0.0, 1.0, n_items),
                            np.full(n_items, 0.2 if model == "3PL" else 0.0))
    data = simulate(students, n_items, 40, seed=seed, params=params)
    return data.responses, params


def sample(responses: Responses, n: int) -> Responses:
    stop = responses.person_ptr[n]
    return Responses(responses.person_ptr[:n + 1].copy(), responses.item[:stop], responses.correct[:stop],
                     responses.n_items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=400_000)
    parser.add_argument("--model", choices=("2PL", "3PL"), default="2PL")
    parser.add_argument("--draws", type=int, default=5, help="plausible values per student")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args()
    quadrature = Quadrature.normal()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {numba.get_num_threads()} "
          f"threads, {os.cpu_count()} cores; {args.model}, 61 quadrature points\n")
    print("| design | students | answers | method | seconds | students per second | at the range's end |")
    print("|---|---|---|---|---|---|---|")
    for name in ("fixed form", "bank"):
        responses, params = design(name, args.students, args.model, args.seed)
        small = sample(responses, 2000)
        for method in (*METHODS, "plausible values"):
            if method == "plausible values":
                plausible.draw_plausible_values(small, params, args.draws, np.random.default_rng(1))
                started = time.perf_counter()
                values = plausible.draw_plausible_values(responses, params, args.draws, np.random.default_rng(1))
                plausible.population_statistics(values)
                seconds, ends = time.perf_counter() - started, "-"
                label = f"plausible values ({args.draws} each, with Rubin's rules)"
            else:
                scoring.score(small, params, method, quadrature=quadrature)
                started = time.perf_counter()
                abilities = scoring.score(responses, params, method, quadrature=quadrature)
                seconds = time.perf_counter() - started
                ends, label = f"{sum(abilities.at_bound().values()):,}", method
            print(f"| {name} | {responses.n_persons:,} | {responses.n_obs:,} | {label} | {seconds:.2f} | "
                  f"{responses.n_persons / seconds:,.0f} | {ends} |", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
