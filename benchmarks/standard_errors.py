"""Standard errors of item parameters: time and accuracy of each method against the exact information.

For each design the script simulates data (fixed seed), fits the model
(``estimate_items``, timed), does the final E-step once (as a calibration
run does, shared with item fit; timed apart) and then computes the standard
errors of a and b three ways:

- ``item blocks (before)``: each item's own block of the information only,
  the method used before for every design past a size cut-off (and, for the
  1PL, the common slope's SE from the sum of the slope entries);
- ``full``: the whole observed information, inverted (the reference, when
  it can be afforded: beyond ``information.FULL_MAX_BYTES`` it is forced
  here with ``method="full"`` to measure the approximation);
- ``approximate``: item blocks + belief propagation + global deflation,
  what ``standard_errors`` uses beyond the memory budget.

It prints one markdown table: design, parameters, method, seconds, and the
largest |SE / exact - 1| over items for a and b.

    python benchmarks/standard_errors.py                 # the default designs, a few minutes on 2 cores
    python benchmarks/standard_errors.py --large          # adds a 14,800-parameter exact reference (1.75 GB)
    python benchmarks/standard_errors.py --designs L      # 20M responses: approximate only, against the fit's time
    python benchmarks/standard_errors.py --designs 1pl,fipc
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from consumer.irt import information, information_design
from consumer.irt.estimate import estimate_items
from consumer.irt.priors import Priors
from consumer.irt.expected import FinalEStep
from consumer.irt.fipc import fixed_parameter_calibration
from consumer.irt.quadrature import Quadrature
from consumer.irt.simulate import simulate


@dataclass
class Design:
    key: str
    name: str
    persons: int
    items: int
    answers: int
    model: str = "2PL"
    priors: Priors | None = None
    guessing: float = 0.0
    anchors: int = 0  # > 0: fixed-parameter calibration with this many anchors, population N(0.4, 1.2^2)
    exact: bool = True  # compute the exact reference
    large: bool = False  # only with --large
    extra: dict = field(default_factory=dict)


DESIGNS = [
    Design("1pl", "1PL", 6_000, 300, 40, "1PL"),
    Design("dense", "dense 2PL", 5_000, 50, 50),
    Design("priors", "2PL, priors on a and b", 5_000, 200, 20, priors=Priors(on_a_b=True)),
    Design("3pl", "3PL, Beta(5, 17) on c", 20_000, 300, 30, "3PL", priors=Priors(), guessing=0.2),
    Design("fipc", "FIPC 2PL, 40 anchors", 20_000, 400, 30, anchors=40),
    Design("sparse", "sparse 2PL", 20_000, 2_000, 10),
    Design("thin", "thin 2PL, priors", 20_000, 4_000, 6, priors=Priors(on_a_b=True)),
    Design("sparse10k", "sparse 2PL", 50_000, 5_000, 10),
    Design("S", "2PL at the default cap (500k answers)", 5_000, 1_500, 100),
    Design("m", "2PL", 100_000, 5_000, 50),
    Design("large", "2PL, exact forced past the budget", 100_000, 7_400, 30, large=True),
    Design("L", "2PL", 400_000, 20_000, 50, exact=False),
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(f, *args, **kwargs):
    start = time.perf_counter()
    out = f(*args, **kwargs)
    return out, time.perf_counter() - start


def item_blocks(responses, params, model, priors, final) -> tuple[np.ndarray, np.ndarray]:
    """The SEs of a and b from each item's own block only (what was used before past the cut-off)."""
    blocks = information.item_information(responses, params, free_c=model == "3PL", final=final)
    blocks = blocks + information_design.prior_curvature(params, priors or Priors(), model)
    a, d = params.a, params.d
    ok = np.isfinite(blocks).all(axis=(1, 2))
    se_a, se_b = np.full(len(params), np.nan), np.full(len(params), np.nan)
    if model == "1PL":
        se_d = 1 / np.sqrt(blocks[ok, 1, 1])
        se_a[ok] = 1 / np.sqrt(blocks[ok, 0, 0].sum())
        se_b[ok] = np.sqrt((se_d / a[ok]) ** 2 + (d[ok] / a[ok] ** 2 * se_a[ok]) ** 2)
        return se_a, se_b
    cov = np.linalg.inv(blocks[ok])
    grad = np.stack([d[ok] / a[ok] ** 2, -1 / a[ok]], axis=1)
    se_a[ok] = np.sqrt(cov[:, 0, 0])
    se_b[ok] = np.sqrt(np.einsum("ju,juv,jv->j", grad, cov[:, :2, :2], grad))
    return se_a, se_b


def worst(x: np.ndarray, reference: np.ndarray | None) -> str:
    if reference is None:
        return "-"
    with np.errstate(invalid="ignore", divide="ignore"):
        return f"{np.nanmax(np.abs(x / reference - 1)):.4f}"


def run(design: Design) -> list[list[str]]:
    log(f"{design.name}: simulating {design.persons:,} x {design.items:,} x {design.answers}")
    rng = np.random.default_rng(1)
    theta = rng.normal(0.4, 1.2, design.persons) if design.anchors else None
    truth = simulate(design.persons, design.items, design.answers, seed=5, guessing=design.guessing, theta=theta)
    responses = truth.responses
    fit, fit_time = timed(estimate_items, responses, design.model, priors=design.priors or Priors())
    params, kwargs, quadrature = fit.params, {}, Quadrature.normal()
    if design.anchors:
        anchors = np.arange(0, design.items, design.items // design.anchors)[:design.anchors]
        result, more = timed(fixed_parameter_calibration, responses, params, anchors,
                             truth.params.take(anchors), design.model, tolerance=1e-5)
        fit_time += more
        params = result.params
        kwargs = dict(fixed=anchors, population=(result.mean, result.sd))
        quadrature = quadrature.with_population(result.mean, result.sd)
    log(f"  fitted in {fit_time:.1f}s")
    final, estep_time = timed(FinalEStep.at, responses, params, quadrature)
    label = f"{design.name}, {design.persons:,} x {design.items:,} x {design.answers}"
    free_items = len(final.items) - design.anchors
    n_params = {"1PL": free_items + 1, "2PL": 2 * free_items, "3PL": 3 * free_items}[design.model]
    n_params += 2 if design.anchors else 0
    common = dict(priors=design.priors, final=final, **kwargs)
    exact = None
    rows = [[label, f"{n_params:,}", f"fit ({design.model}{', FIPC' if design.anchors else ''})",
             f"{fit_time:.1f}", "", ""],
            [label, f"{n_params:,}", "final E-step (shared with item fit)", f"{estep_time:.1f}", "", ""]]
    if design.exact:
        exact, seconds = timed(information.standard_errors, responses, params, design.model, method="full",
                               max_bytes=1 << 40, **common)
        log(f"  full in {seconds:.1f}s")
        rows.append([label, f"{n_params:,}", "full (exact)", f"{seconds:.1f}", "0", "0"])
    if not design.anchors:
        (se_a, se_b), seconds = timed(item_blocks, responses, params, design.model, design.priors, final)
        rows.append([label, f"{n_params:,}", "item blocks (before)", f"{seconds:.1f}",
                     worst(se_a, exact and exact.a), worst(se_b, exact and exact.b)])
    approximate, seconds = timed(information.standard_errors, responses, params, design.model,
                                 method="approximate", **common)
    log(f"  approximate in {seconds:.1f}s")
    rows.append([label, f"{n_params:,}", "approximate", f"{seconds:.1f}",
                 worst(approximate.a, exact and exact.a), worst(approximate.b, exact and exact.b)])
    chosen = "full" if n_params**2 * 8 <= information.FULL_MAX_BYTES else "approximate"
    rows[-1 if chosen == "approximate" else 2][2] += " <- default"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", help="comma-separated keys: " + ", ".join(d.key for d in DESIGNS)
                        + " (default: all but large and L)")
    parser.add_argument("--large", action="store_true", help="include the 14,800-parameter exact reference")
    args = parser.parse_args()
    chosen = [d for d in DESIGNS if (args.large or not d.large) and d.key != "L"]
    if args.designs:
        wanted = {w.strip() for w in args.designs.split(",")}
        chosen = [d for d in DESIGNS if d.key in wanted]
    # Compile the kernels before timing anything.
    warm = simulate(300, 20, 10, seed=0)
    warm_fit = estimate_items(warm.responses)
    for method in ("full", "approximate"):
        information.standard_errors(warm.responses, warm_fit.params, "2PL", method=method)
    table = [["design (persons x items x answers)", "parameters", "method", "seconds",
              "max abs SE(a)/exact - 1", "max abs SE(b)/exact - 1"]]
    for design in chosen:
        table += run(design)
    print("| " + " | ".join(table[0]) + " |")
    print("|" + "---|" * len(table[0]))
    for row in table[1:]:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
