"""DIF screen: power on planted DIF and false-flag rate on clean items, by group size.

Two groups of equal size answer a sparse bank (each student a random subset;
``tests/support/dif_data.planted_dif``): a ~ lognormal(0, 0.25),
b ~ U(-1.5, 1.5), the focal group N(-0.5, 1) (impact, which is not DIF)
and the reference N(0, 1). Planted: uniform DIF on ``--uniform`` items (b
shifted by ``--shift`` for the focal group: harder for them) and
non-uniform DIF on ``--non-uniform`` items (a multiplied by ``--ratio``).
Each replication fits the pooled 2PL (not timed) and runs
``irt.dif.screen``. Printed per group size, as a markdown table: the share
of planted items flagged (power, uniform and non-uniform apart) and of clean
items flagged (false flags), for the screen's flag and for its two parts
(Mantel-Haenszel ETS B or C; Wald with BH-adjusted p < 0.05 and RMSD_DIF >=
0.05), and the screen's mean time.

    python benchmarks/dif.py                          # about 2 minutes on 2 cores
    python benchmarks/dif.py --sizes 250 1000 --replications 10
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumer.irt import dif  # noqa: E402
from consumer.irt.estimate import estimate_items  # noqa: E402
from tests.support.dif_data import planted_dif  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 4000], help="students per group")
    parser.add_argument("--replications", type=int, default=5)
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--per-student", type=int, default=20)
    parser.add_argument("--uniform", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--non-uniform", type=int, nargs="*", default=[3, 4])
    parser.add_argument("--shift", type=float, default=0.5)
    parser.add_argument("--ratio", type=float, default=2.0)
    args = parser.parse_args(argv)
    uniform, non_uniform = np.array(args.uniform, int), np.array(args.non_uniform, int)
    clean = np.setdiff1d(np.arange(args.items), np.concatenate([uniform, non_uniform]))
    print(f"{args.items} items, {args.per_student} answers per student; uniform DIF (b + {args.shift}) on "
          f"{len(uniform)} items, non-uniform (a x {args.ratio}) on {len(non_uniform)}; "
          f"{args.replications} replications per size\n")
    print("| students per group | flag: power uniform | power non-uniform | false flags | MH B/C: power uniform | "
          "MH false flags | Wald: power uniform | power non-uniform | false flags | screen time (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        rates, seconds = [], []
        for rep in range(args.replications):
            data = planted_dif(size, args.items, args.per_student, uniform=tuple(uniform),
                               non_uniform=tuple(non_uniform), shift=args.shift, ratio=args.ratio,
                               seed=1000 * size + rep)
            pooled = estimate_items(data.responses, "2PL")
            started = time.perf_counter()
            screen = dif.screen(data.responses, data.group, ["reference", "focal"], pooled.params, "2PL")
            seconds.append(time.perf_counter() - started)
            c = screen.comparisons[0]
            mh = np.isin(c.mh.ets, ("B", "C"))
            with np.errstate(invalid="ignore"):
                wald = (c.wald_p_adjusted < dif.ALPHA) & (c.effect.rmsd >= dif.RMSD_FLAG)
            rates.append([c.flagged[uniform].mean(), c.flagged[non_uniform].mean(), c.flagged[clean].mean(),
                          mh[uniform].mean(), mh[clean].mean(),
                          wald[uniform].mean(), wald[non_uniform].mean(), wald[clean].mean()])
        mean = np.mean(rates, axis=0)
        cells = " | ".join(f"{v:.2f}" for v in mean)
        print(f"| {size:,} | {cells} | {np.mean(seconds):.2f} |", flush=True)


if __name__ == "__main__":
    main()
