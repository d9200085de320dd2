"""Which items the EM holds back on a thin design under plain ML, by tolerance and with or without SQUAREM.

The identification watch (``watch.Watch``) must hold back the items
whose answers do not identify them (slope on a bound, difficulty off the
grid, or a path heading there) and nothing else, however tight the
tolerance and however slow the EM. The design is the thin one of issue 17:
32,000 students x 3,200 items, 10 answers each (100 per item), 2PL by plain
marginal ML. Printed per fit: E-step passes, whether the EM converged, the
items held back on a bound or off the grid, those held back because their
path heads there, and those still moving when the passes ran out.

    python benchmarks/hold_back.py                       # about 2 minutes on 2 cores
    python benchmarks/hold_back.py --tolerances 1e-4 1e-6 1e-8 --plain
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumer.irt.estimate import estimate_items  # noqa: E402
from consumer.irt.simulate import simulate  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=32_000)
    parser.add_argument("--items", type=int, default=3_200)
    parser.add_argument("--per-student", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tolerances", type=float, nargs="+", default=[1e-4, 1e-6])
    parser.add_argument("--plain", action="store_true", help="also fit by plain EM (accelerate=False)")
    args = parser.parse_args(argv)
    truth = simulate(args.students, args.items, args.per_student, seed=args.seed)
    estimate_items(simulate(200, 20, 10, seed=0).responses)  # compile before timing

    print("| tolerance | EM | passes | converged | held back: on a bound / off the grid | heading there | "
          "still moving | time s |")
    print("|---|---|---|---|---|---|---|---|")
    for tolerance in args.tolerances:
        for accelerate in (True, False) if args.plain else (True,):
            started = time.perf_counter()
            fit = estimate_items(truth.responses, "2PL", tolerance=tolerance, accelerate=accelerate)
            heading = sum("heads off" in why for why in fit.held_back.values())
            screened = sum("answers come from students" in why for why in fit.held_back.values())
            print(f"| {tolerance:g} | {'SQUAREM' if accelerate else 'plain'} | {fit.iterations} | "
                  f"{'yes' if fit.converged else 'no'} | {len(fit.held_back) - heading - screened} | {heading} | "
                  f"{len(fit.still_moving)} | {time.perf_counter() - started:.1f} |", flush=True)


if __name__ == "__main__":
    main()
