"""The review page's plots, each from arrays to a captioned inline SVG figure."""

from __future__ import annotations

import numpy as np

from ..irt.model import ItemParameters
from . import formats as fmt
from . import statistics as stats
from .markup import Markup, figure
from .svg import COLOURS, Chart, wright_map


def _padded(values: np.ndarray, pad: float = 0.05) -> tuple[float, float]:
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    span = high - low or max(abs(high), 1.0)
    return low - pad * span, high + pad * span


def item_curve(question_id: int, params: ItemParameters, theta: np.ndarray, observed: np.ndarray,
               answers: np.ndarray, rmsd: float, grid: np.ndarray) -> Markup:
    """A misfitting item: its model curve and the observed proportions behind its RMSD (dots sized by answers)."""
    chart = Chart((grid[0], grid[-1]), (0.0, 1.0), "theta (linked scale)", "proportion correct",
                  f"Item {question_id}: model curve and observed proportions", width=320, height=220)
    chart.line(grid, params.probability(grid)[:, 0], COLOURS["blue"], label="model")
    chart.points(theta, observed, COLOURS["red"], radius=5, sizes=answers, label="observed",
                 titles=[f"theta {t:.2f}: {o:.3f} correct of {fmt.amount(n)} answers" for t, o, n in
                         zip(theta, observed, answers)])
    caption = (f"Item {question_id}: RMSD {fmt.number(rmsd)}; a {fmt.number(float(params.a[0]))}, "
               f"b {fmt.number(float(params.b[0]))}" + (f", c {fmt.number(float(params.c[0]))}" if params.c[0] else "")
               + f"; {fmt.count(float(np.sum(answers)))} answers")
    return figure(chart.render(), caption, small=True)


def anchor_scatter(reference: np.ndarray, linked: np.ndarray, kept: np.ndarray, ids: np.ndarray, name: str,
                   symbol: str) -> Markup:
    low, high = _padded(np.concatenate([reference, linked]))
    chart = Chart((low, high), (low, high), f"reference {name} {symbol}", f"new {symbol}, linked",
                  f"Anchors: reference against new {name}")
    chart.line([low, high], [low, high], COLOURS["grey"], width=1, dash="4,3", label="identity")
    titles = [f"item {q}: reference {r:.3f}, new {n:.3f}" for q, r, n in zip(ids, reference, linked)]
    chart.points(np.where(kept, reference, np.nan), linked, COLOURS["blue"], label="kept", titles=titles)
    if (~kept).any():
        chart.points(np.where(kept, np.nan, reference), linked, COLOURS["red"], radius=5, cross=True,
                     label="dropped (drift)", titles=titles)
    return figure(chart.render(), f"Anchors' {name}: reference against the new estimate on the old scale; "
                                  "on the dashed line they agree.")


def tcc_difference(reference: ItemParameters, new: ItemParameters, linked: ItemParameters, grid: np.ndarray) -> Markup:
    """Linked minus reference expected score on the kept anchors: the curves themselves would lie on each other."""
    before = stats.expected_score(new, grid) - stats.expected_score(reference, grid)
    after = stats.expected_score(linked, grid) - stats.expected_score(reference, grid)
    reach = max(float(np.max(np.abs(after))) * 1.15, 0.05)
    chart = Chart((grid[0], grid[-1]), (-reach, reach), "theta (old scale)", "expected score difference",
                  "Test characteristic curve of the kept anchors after linking: new minus reference")
    chart.rule(y=0.0)
    chart.line(grid, after, COLOURS["blue"], label="new, linked, minus reference")
    return figure(chart.render(), f"Expected score on the {len(reference)} kept anchors, linked new parameters minus "
                                  f"reference: at most {float(np.max(np.abs(after))):.3f} points apart (out of "
                                  f"{len(reference)}); before linking, {float(np.max(np.abs(before))):.3f}.")


def information(grid: np.ndarray, typical: np.ndarray, bank: np.ndarray, answers_per_student: float) -> Markup:
    chart = Chart((grid[0], grid[-1]), (0.0, float(np.max(typical)) * 1.08 or 1.0), "theta (linked scale)",
                  "test information", "Test information of a typical student's answers")
    chart.line(grid, typical, COLOURS["blue"], label=f"{fmt.amount(answers_per_student)} answers, drawn from the bank")
    peak = grid[int(np.argmax(bank))]
    return figure(chart.render(), f"Test information of a student answering {fmt.amount(answers_per_student)} items at "
                                  f"random from the estimated bank (the bank's total information, "
                                  f"{float(np.max(bank)):,.1f} at its peak near theta {peak:.1f}, times the share "
                                  "answered).")


def conditional_sem(grid: np.ndarray, csem: np.ndarray, theta: np.ndarray, se: np.ndarray,
                    method: str = "EAP") -> Markup:
    centres, medians = stats.binned_median(theta, se, np.arange(np.floor(grid[0]), np.ceil(grid[-1]) + 0.25, 0.25))
    top = float(np.nanmax(np.concatenate([np.where(np.isfinite(csem), csem, np.nan), medians, [0.5]])))
    chart = Chart((grid[0], grid[-1]), (0.0, min(top * 1.08, 3.0)), "theta (linked scale)",
                  "standard error", "Conditional standard error of measurement")
    chart.line(grid, csem, COLOURS["blue"], label="model: 1 / sqrt(information)")
    if centres.size:
        chart.points(centres, medians, COLOURS["orange"], radius=3.5, label=f"students' {method} SEs (median)")
    what = {"EAP": "EAP posterior SDs: pulled in by the prior at the extremes",
            "EAP-sum": "posterior SDs given the summed score: pulled in by the prior at the extremes",
            "MAP": "from the posterior's curvature: pulled in by the prior at the extremes",
            "ML": "1 / sqrt(information); infinite estimates, which have none, left out",
            "WLE": "1 / sqrt(information) at the WLE"}.get(method, method)
    return figure(chart.render(), "Conditional standard error of measurement for the typical student's answers, "
                                  f"and the median reported SE of the students in each quarter-logit band ({what}).")


def wright(theta: np.ndarray, b: np.ndarray, grid: np.ndarray, method: str = "EAP") -> Markup:
    edges = np.arange(np.floor(grid[0]), np.ceil(grid[-1]) + 0.25, 0.25)
    students = np.histogram(np.clip(theta, edges[0], edges[-1] - 1e-9), edges)[0]
    items = np.histogram(np.clip(b[np.isfinite(b)], edges[0], edges[-1] - 1e-9), edges)[0]
    svg = wright_map(edges, students, items, "Wright map: students' abilities and items' difficulties on one scale")
    return figure(svg, f"Wright map: students' {method} abilities (left) and the items' difficulties (right) in "
                       "quarter-logit bands on the linked scale; values beyond the ends are counted in the end bands.")


def histogram(values: np.ndarray, x_label: str, caption: str, colour: str = COLOURS["blue"], bins: int = 40) -> Markup:
    values = values[np.isfinite(values)]
    low, high = _padded(values, 0.0)
    edges = np.linspace(low, high if high > low else low + 1, bins + 1)
    counts = np.histogram(values, edges)[0]
    chart = Chart((edges[0], edges[-1]), (0.0, float(counts.max()) * 1.08 or 1.0), x_label, "count", caption)
    chart.bars(edges, counts, colour)
    return figure(chart.render(), caption)


def movement(z: np.ndarray, threshold: float, title: str = "Change in difficulty since the previous run, in "
             "standard errors", between: str = "in both runs", highest: float | None = None) -> Markup:
    """The z of each item's change in b against N(0, 1); ``highest`` sets the count axis (to compare two charts)."""
    z = z[np.isfinite(z)]
    edges = np.arange(-6.0, 6.25, 0.5)
    counts = np.histogram(np.clip(z, -5.999, 5.999), edges)[0]
    grid = np.linspace(-6, 6, 121)
    normal = z.size * 0.5 * np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    top = highest if highest is not None else float(max(counts.max(initial=0), normal.max(initial=0)))
    chart = Chart((-6.0, 6.0), (0.0, (top or 1.0) * 1.1), "z of the change in b", "items", title)
    chart.bars(edges, counts, COLOURS["blue"], label="items")
    chart.line(grid, normal, COLOURS["orange"], label="if nothing moved: N(0, 1)")
    chart.rule(x=-threshold).rule(x=threshold)
    return figure(chart.render(), f"Change in b of the {z.size:,} items {between}, divided by the standard error "
                                  f"of the difference; beyond the dashed lines (|z| > {threshold:g}) an item moved "
                                  "more than its estimation error explains. Values beyond 6 are counted in the end "
                                  "bars.")


def movement_pair(previous_z: np.ndarray, z: np.ndarray, threshold: float, previous_between: str) -> list[Markup]:
    """The previous run's change (since the run before it) beside this run's, each against N(0, 1), on one scale."""
    def top(values):
        values = values[np.isfinite(values)]
        counts = np.histogram(np.clip(values, -5.999, 5.999), np.arange(-6.0, 6.25, 0.5))[0]
        return max(float(counts.max(initial=0)), values.size * 0.5 / np.sqrt(2 * np.pi))
    highest = max(top(previous_z), top(z))
    return [movement(previous_z, threshold, "The previous run's change, since the run before it", previous_between,
                     highest),
            movement(z, threshold, "This run's change, since the previous run", "in both runs", highest)]


def constants_history(labels: list[str], values: np.ndarray, errors: np.ndarray, name: str) -> Markup:
    x = np.arange(len(labels), dtype=float)
    spread = np.where(np.isfinite(errors), 1.96 * errors, 0.0)
    low, high = _padded(np.concatenate([values - spread, values + spread]), 0.15)
    chart = Chart((-0.6, len(labels) - 0.4), (low, high), "run (fitted at)", name, f"Linking {name} over the last runs",
                  width=420, height=240, x_ticks=list(zip(x, labels)))
    for k in range(len(labels)):
        if spread[k]:
            chart.line([x[k], x[k]], [values[k] - spread[k], values[k] + spread[k]], COLOURS["blue"], width=1.2)
    chart.points(x, values, COLOURS["blue"], radius=4, titles=[f"{n}: {v:.4f} (SE {e:.4f})" for n, v, e in
                                                              zip(labels, values, errors)])
    return figure(chart.render(), f"Linking {name} of the last runs of this scope, with 95% intervals "
                                  "(jackknife standard errors).", small=True)


def ability_history(labels: list[str], quantiles: np.ndarray, means: np.ndarray) -> Markup:
    x = np.arange(len(labels), dtype=float)
    low, high = _padded(quantiles.ravel(), 0.1)
    chart = Chart((-0.6, len(labels) - 0.4), (low, high), "run (fitted at)", "theta (linked scale)",
                  "Ability distribution over the last runs", width=420, height=240, x_ticks=list(zip(x, labels)))
    for k, q in enumerate(quantiles):
        if np.all(np.isfinite(q)):
            chart.box(x[k], (q[0], q[4]), (q[1], q[3]), q[2],
                      title=f"{labels[k]}: 5% {q[0]:.2f}, quartiles {q[1]:.2f} / {q[3]:.2f}, median {q[2]:.2f}, "
                            f"95% {q[4]:.2f}")
    chart.points(x, means, COLOURS["orange"], radius=3.5, label="mean")
    return figure(chart.render(), "Students' abilities in each run: the box spans the quartiles, the whiskers the 5th "
                                  "to 95th percentiles, the bar is the median.", small=True)


def estimate_history(labels: list[str], values: np.ndarray, errors: np.ndarray, y_label: str, title: str,
                     caption: str, reference: np.ndarray | None = None, flagged: np.ndarray | None = None) -> Markup:
    """Estimates over the last runs joined by a line, with 95% intervals; the value they are held against dashed,
    and the runs that flagged them crossed."""
    x = np.arange(len(labels), dtype=float)
    spread = np.where(np.isfinite(errors), 1.96 * errors, 0.0)
    shown = [values - spread, values + spread] + ([reference] if reference is not None else [])
    low, high = _padded(np.concatenate(shown), 0.15)
    chart = Chart((-0.6, len(labels) - 0.4), (low, high), "run (fitted at)", y_label, title, width=380, height=220,
                  x_ticks=list(zip(x, labels)))
    if reference is not None and np.isfinite(reference).any():
        # The bank value of each run, as a level across its slot: flat unless a recalibration was accepted.
        chart.line(np.column_stack([x - 0.45, x + 0.45]).ravel(), np.repeat(reference, 2), COLOURS["grey"], width=1.2,
                   dash="4,3", label="bank value")
    for k in np.flatnonzero(spread):
        chart.line([x[k], x[k]], [values[k] - spread[k], values[k] + spread[k]], COLOURS["blue"], width=1.2)
    chart.line(x, values, COLOURS["blue"], width=1.4)
    chart.points(x, values, COLOURS["blue"], radius=3.5, label="estimate (95%)",
                 titles=[f"{n}: {v:.3f} (SE {e:.3f})" for n, v, e in zip(labels, values, errors)])
    if flagged is not None and flagged.any():
        chart.points(np.where(flagged, x, np.nan), values, COLOURS["red"], radius=5, cross=True, label="flagged")
    return figure(chart.render(), caption, small=True)


def dif_curves(question_id: int, curves: dict, reference: str, focal: str, caption: str) -> Markup:
    """A DIF-flagged item: its curve in the reference group and in the focal group, on the reference group's scale."""
    theta = np.asarray(curves["theta"], float)
    chart = Chart((theta[0], theta[-1]), (0.0, 1.0), f"theta ({reference}'s scale)", "probability correct",
                  f"Item {question_id}: curves of groups {reference} and {focal}", width=320, height=220)
    chart.line(theta, np.asarray(curves["reference"], float), COLOURS["blue"], label=f"{reference} (reference)")
    chart.line(theta, np.asarray(curves["focal"], float), COLOURS["orange"], label=f"{focal} (focal)")
    return figure(chart.render(), caption, small=True)
