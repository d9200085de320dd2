"""Item recovery with and without rapid-guess filtering, at several rates of rapid guessing.

Simulated sparse 2PL data with known truth (a ~ lognormal(0, 0.3), b ~ N(0,
1), theta ~ N(0, 1); ``consumer.irt.simulate``), then a share of the
students rapid-guessing (``add_rapid_guessing``): each of them answers a
share of their items in 0.3 to 2.5 s, right with probability 0.25 whatever
their ability; every other answer takes a lognormal time around the item's
own (median about 30 s). For each rate the 2PL is fitted three times: on
the answers as given (no filter), without the answers the rule flags
(``consumer.irt.rapid``, MIRT_RAPID_GUESS_RULE, default NT10 capped at 10
s), and, as the reference, on the same students answering in earnest (no
guessing simulated). Printed: how many answers are rapid (planted), the
share of them the rule catches and the share of earnest answers it takes
for guesses, then RMSE and bias (mean of estimate - truth) of a and b.

    python benchmarks/rapid_guess.py                   # about a minute on 2 cores
    python benchmarks/rapid_guess.py --rule fixed:3000 --students 20000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consumer.irt.estimate import estimate_items  # noqa: E402
from consumer.irt.rapid import DEFAULT_RULE, RapidGuessRule, find_rapid_guesses, leave_out  # noqa: E402
from consumer.irt.simulate import add_rapid_guessing, simulate  # noqa: E402

#: Shares of the students who rapid-guess (each guesses ``--share`` of their answers).
GUESSERS = (0.0, 0.05, 0.10, 0.20, 0.30, 0.50)


def errors(estimate: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(RMSE, bias) of ``estimate`` against ``truth`` over the items estimated."""
    ok = np.isfinite(estimate)
    diff = estimate[ok] - truth[ok]
    return float(np.sqrt(np.mean(diff ** 2))), float(np.mean(diff))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=10_000, help="students (default 10,000)")
    parser.add_argument("--items", type=int, default=200, help="items in the bank (default 200)")
    parser.add_argument("--answers", type=int, default=40, help="answers per student (default 40)")
    parser.add_argument("--share", type=float, default=0.5, help="share of a guesser's answers guessed (default 0.5)")
    parser.add_argument("--rule", default=DEFAULT_RULE, help=f"MIRT_RAPID_GUESS_RULE (default {DEFAULT_RULE})")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    rule = RapidGuessRule.parse(args.rule)
    truth = simulate(args.students, args.items, args.answers, seed=args.seed)
    a, b = truth.params.a, truth.params.b
    earnest = estimate_items(truth.responses, "2PL").params
    print(f"{args.students:,} students x {args.items:,} items x {args.answers} answers; a guesser guesses "
          f"{args.share:.0%} of their answers; rule {rule} ({rule.describe()})\n")
    print("| students guessing | answers rapid | caught | earnest taken | fit | RMSE a | bias a | RMSE b | bias b |")
    print("|---|---|---|---|---|---|---|---|---|")
    ref = (*errors(earnest.a, a), *errors(earnest.b, b))
    for guessers in GUESSERS:
        data = add_rapid_guessing(truth, guessers=guessers, share=args.share, seed=args.seed + 1)
        found = find_rapid_guesses(data.responses, data.times_ms, rule)
        caught = f"{found.rapid[data.rapid].mean():.1%}" if data.rapid.any() else "-"
        taken = found.rapid[~data.rapid].mean()
        kept = estimate_items(data.responses, "2PL").params
        filtered = estimate_items(leave_out(data.responses, found.rapid)[0], "2PL").params
        head = f"| {guessers:.0%} | {data.rapid.mean():.1%} | {caught} | {taken:.2%} "
        for name, params in (("no filter", kept), ("filtered", filtered)):
            rmse_a, bias_a = errors(params.a, a)
            rmse_b, bias_b = errors(params.b, b)
            print(f"{head}| {name} | {rmse_a:.3f} | {bias_a:+.3f} | {rmse_b:.3f} | {bias_b:+.3f} |")
            head = "| | | | "
    print(f"| (no guessing simulated) | | | | earnest | {ref[0]:.3f} | {ref[1]:+.3f} | {ref[2]:.3f} | {ref[3]:+.3f} |")


if __name__ == "__main__":
    main()
