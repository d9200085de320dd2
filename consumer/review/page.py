"""The review page of one run: what a psychometrician checks before accepting a calibration.

``render(review)`` lays out, from what ``load`` read: a summary of the
verdicts (fit, link, change, measurement), the run's metadata, the fit and
the items held back or on bounds, misfit with its evidence, the link and
the anchors' drift, measurement precision and the Wright map, the changes
since the previous run of the same scope, and the item table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..irt.defaults import A_BOUNDS, C_BOUNDS, D_BOUND
from ..irt.model import ItemParameters
from . import figures
from . import formats as fmt
from . import statistics as stats
from .assets import EARLY_SCRIPT, ROWS_PER_PAGE, SCRIPT, STYLE
from .load import Review
from .markup import Markup, facts, join, paragraph, section, table, tag, text

#: |z| past which an item's change since the previous run is called a movement.
MOVEMENT_Z = 3.0
#: Most moved items listed by name.
MOVED_LISTED = 50
_SECTIONS = (("summary", "Summary"), ("run", "Run"), ("fit", "Fit"), ("misfit", "Item fit"), ("link", "Link"),
             ("measurement", "Measurement"), ("changes", "Since the previous run"), ("items", "Items"))


def render(review: Review) -> str:
    """The page's HTML: one self-contained document."""
    run = review.run
    view = _View.of(review)
    body = join([
        _header(review, view),
        _summary(review, view),
        _run_section(review),
        _fit_section(review),
        _misfit_section(review, view),
        _link_section(review, view),
        _measurement_section(review, view),
        _changes_section(review, view),
        _items_section(review, view),
    ])
    nav = join(tag("a", title, href=f"#{anchor}") for anchor, title in _SECTIONS)
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>Calibration run {text(run.run_id)}: review</title><style>{STYLE}</style>"
            f"<script>{EARLY_SCRIPT}</script></head>"
            f"<body><nav>{nav}</nav><main>{body}</main><script>{SCRIPT}</script></body></html>")


# --- what the sections share -----------------------------------------------------------------

@dataclass(frozen=True)
class _Anchors:
    ids: np.ndarray
    reference: ItemParameters
    new: ItemParameters  # on the calibration scale
    linked: ItemParameters  # on the old scale, by the screen's constants
    kept: np.ndarray
    models: list[str | None]  # the reference model of each anchor, where known
    drift: stats.AnchorDrift


@dataclass(frozen=True)
class _View:
    """What several sections need, derived once."""

    model: str
    scope: str
    grid: np.ndarray  # theta on the linked scale
    anchors: _Anchors | None
    flags: dict[int, list[str]]  # question id -> short flags
    movement: stats.Movement | None
    moved_ids: np.ndarray  # the question ids movement refers to
    curves: dict[int, dict] | None  # question id -> stored node proportions; None when not recorded

    @classmethod
    def of(cls, review: Review) -> "_View":
        spec, run = review.run.model_spec, review.run
        theta = review.theta[np.isfinite(review.theta)]
        if theta.size:
            centre, spread = float(np.median(theta)), float(np.std(theta)) or 1.0
            grid = np.linspace(np.floor(centre - 4 * spread), np.ceil(centre + 4 * spread), 161)
        else:
            grid = np.linspace(-4, 4, 161)
        anchors = _anchors(review)
        movement, moved_ids = _movement(review)
        view = cls(spec.get("model") or run.summary.get("model", ""), fmt.scope(run.scope, spec.get("scope")), grid,
                   anchors, {}, movement, moved_ids, _curves(review))
        _collect_flags(review, view)
        return view


def _anchors(review: Review) -> _Anchors | None:
    rows = review.run.model_spec.get("anchor_table") or []
    if not rows:
        return None
    ids = np.array([int(x["question_id"]) for x in rows])
    reference = ItemParameters(*(np.array([float(x["reference"].get(k) or 0.0) for x in rows]) for k in "abc"))
    new = ItemParameters(*(np.array([float(x["new"].get(k) or 0.0) for x in rows]) for k in "abc"))
    linked = ItemParameters(np.array([x["linked"]["a"] for x in rows], float),
                            np.array([x["linked"]["b"] for x in rows], float), new.c)
    kept = np.array([not x.get("dropped") for x in rows])
    known = [_reference_meta(review, x) for x in rows]
    position = {int(q): k for k, q in enumerate(review.items.question_ids)}
    rows_in_table = np.array([position.get(int(q), -1) for q in ids])

    def written(name):
        values = review.items.values[name]
        return np.where(rows_in_table >= 0, values[np.maximum(rows_in_table, 0)] if len(values) else np.nan, np.nan)

    drift = stats.anchor_drift(reference, linked, kept, written("b_se"), written("a_se"),
                               np.array([m.get("b_se", np.nan) for m in known], float),
                               np.array([m.get("a_se", np.nan) for m in known], float))
    return _Anchors(ids, reference, new, linked, kept, [m.get("model") for m in known], drift)


def _reference_meta(review: Review, row: dict) -> dict:
    """An anchor's reference model and SEs: as the run recorded them, else question.meta's if it has the same a, b."""
    recorded = row["reference"]
    if recorded.get("model"):
        return recorded
    meta = review.anchor_meta.get(int(row["question_id"])) or {}
    same = all(isinstance(meta.get(k), (int, float)) and abs(float(meta[k]) - float(recorded[k])) < 1e-9
               for k in ("a", "b"))
    return {k: meta[k] for k in ("model", "a_se", "b_se") if k in meta} if same else {}


def _movement(review: Review) -> tuple[stats.Movement | None, np.ndarray]:
    before = review.previous_items
    if before is None or not len(before) or not len(review.items):
        return None, np.zeros(0, np.int64)
    shared, now_at, before_at = np.intersect1d(review.items.question_ids, before.question_ids,
                                               assume_unique=True, return_indices=True)
    now_v, before_v = review.items.values, before.values
    moved = stats.item_movement(review.items.params.take(now_at), now_v["b_se"][now_at], now_v["a_se"][now_at],
                                before.params.take(before_at), before_v["b_se"][before_at], before_v["a_se"][before_at])
    return moved, shared


def _curves(review: Review) -> dict[int, dict] | None:
    """The stored node proportions by question id (a run stores each under its index among the window's items)."""
    stored = review.run.fit_stats.get("misfit_curves")
    if stored is None:
        return None
    spec = review.run.model_spec
    window = sorted(set(review.items.question_ids.tolist()) | {int(q) for q in spec.get("excluded_items") or {}})
    if stored and len(window) != (review.run.summary.get("counts") or {}).get("items"):
        return None  # the items of the window cannot be told (a dry run writes none)
    return {int(c["question_id"]) if "question_id" in c else window[int(c["item"])]: c for c in stored}


def _collect_flags(review: Review, view: _View) -> None:
    spec, fit = review.run.model_spec, review.run.fit_stats

    def add(question_id, flag):
        view.flags.setdefault(int(question_id), []).append(flag)

    held_back = spec.get("held_back_items") or {}
    for q in held_back:
        add(q, "held back")
    for q in spec.get("excluded_items") or {}:
        if q not in held_back:
            add(q, "not estimated")
    if view.anchors is not None:
        for q, kept in zip(view.anchors.ids, view.anchors.kept):
            add(q, "anchor" if kept else "anchor dropped")
    for q in spec.get("anchors_skipped") or {}:
        add(q, "anchor skipped")
    for q in spec.get("misfitting_items") or {}:
        add(q, "misfit")
    for q in fit.get("items_at_bounds") or {}:
        add(q, "on a bound")
    if view.movement is not None:
        z = np.fmax(np.abs(view.movement.b_z), np.abs(view.movement.log_a_z))
        for q in view.moved_ids[np.nan_to_num(z) > MOVEMENT_Z]:
            add(q, "moved")


def _reasons_table(reasons: dict, what: str = "reason") -> Markup:
    rows = sorted(((int(q), why) for q, why in reasons.items()), key=lambda r: r[0])
    return table(("item", what), rows, numeric=(0,), scroll=len(rows) > 20)


# --- sections --------------------------------------------------------------------------------

def _header(review: Review, view: _View) -> Markup:
    run, spec = review.run, review.run.model_spec
    request = spec.get("request") or {}
    dry = " (dry run: nothing written)" if spec.get("dry_run") else ""
    line = join([Markup(f'<span class="status {text(run.status)}">{text(run.status)}</span> '),
                 f"{view.model or 'model not recorded'} \u00b7 scope: {view.scope} \u00b7 fitted "
                 f"{fmt.when(run.fitted_at or run.finished_at)}{dry} \u00b7 requested by "
                 f"{request.get('requested_by') or fmt.MISSING}, request {run.request_id or fmt.MISSING}"])
    error = paragraph(f"The run failed: {run.error}", "note") if run.error else ""
    return join([tag("h1", f"Calibration run {run.run_id}: review"), paragraph(line), error])


def _summary(review: Review, view: _View) -> Markup:
    spec, fit, summary = review.run.model_spec, review.run.fit_stats, review.run.summary
    counts = summary.get("counts") or {}
    held_back, at_bounds = spec.get("held_back_items") or {}, fit.get("items_at_bounds") or {}
    misfits = spec.get("misfitting_items") or {}
    verdicts = []
    if fit:
        converged = fit.get("converged")
        problems = bool(held_back or at_bounds or misfits) or converged is False
        verdicts.append(_verdict("Fit", "bad" if converged is False else "warn" if problems else "", [
            f"{'Converged' if converged else 'Did not converge'} in {fmt.count(fit.get('iterations'))} EM passes; "
            f"{fmt.count(counts.get('items_estimated'))} of {fmt.count(counts.get('items'))} items estimated.",
            f"{len(held_back):,} held back, {len(at_bounds):,} on a bound, {len(misfits):,} misfitting "
            f"(RMSD above {fmt.plain((spec.get('settings') or {}).get('item_fit_threshold'))})."]))
    constants = review.run.constants
    if constants:
        dropped = spec.get("anchors_dropped") or {}
        skipped = spec.get("anchors_skipped") or {}
        if constants.get("method") in (None, "none"):
            lines = ["Not linked: no anchors, so this run defines the scale (slope 1, intercept 0)."]
        else:
            lines = [f"{constants.get('method')} on {fmt.count(constants.get('n_anchors'))} anchors; "
                     f"{len(dropped):,} dropped for drift, {len(skipped):,} skipped as malformed.",
                     f"Slope {_with_se(constants.get('slope'), constants.get('slope_se'))}, intercept "
                     f"{_with_se(constants.get('intercept'), constants.get('intercept_se'))}."]
        note = _reference_model_note(view)
        if note:
            lines.append(note)
        verdicts.append(_verdict("Link", "warn" if dropped or skipped or note else "", lines))
    if view.movement is not None:
        z = np.fmax(np.abs(view.movement.b_z), np.abs(view.movement.log_a_z))
        moved = int(np.sum(np.nan_to_num(z) > MOVEMENT_Z))
        verdicts.append(_verdict("Since the previous run", "warn" if moved else "", [
            f"{moved:,} of {view.moved_ids.size:,} items moved by more than {MOVEMENT_Z:g} standard errors in b or "
            f"log a since run {review.previous.run_id} ({fmt.when(review.previous.fitted_at)})."]))
    elif review.run.status == "succeeded":
        verdicts.append(_verdict("Since the previous run", "", [f"No earlier run of this scope ({view.scope}) to "
                                                               "compare with."]))
    if review.theta.size:
        verdicts.append(_verdict("Measurement", "", [
            f"{review.theta.size:,} students scored; empirical reliability "
            f"{fmt.number(stats.empirical_reliability(review.theta, review.theta_se))}; median SE "
            f"{fmt.number(float(np.median(review.theta_se)))}."]))
    warnings = summary.get("warnings") or []
    listed = (join([tag("h3", f"Warnings the run logged ({len(warnings)})"),
                    Markup("<ul>" + "".join(f"<li>{text(w)}</li>" for w in warnings) + "</ul>")]) if warnings else "")
    return section("summary", "Summary", Markup('<div class="verdicts">' + join(verdicts) + "</div>"), listed)


def _verdict(title: str, level: str, lines: list[str]) -> Markup:
    return Markup(f'<div class="verdict {level}"><h3>{text(title)}</h3>'
                  + join(paragraph(line) for line in lines) + "</div>")


def _with_se(value, se, decimals: int = 4) -> str:
    return fmt.number(value, decimals) + (f" (SE {fmt.number(se, decimals)})" if fmt.is_number(se) else "")


def _run_section(review: Review) -> Markup:
    run, spec, summary = review.run, review.run.model_spec, review.run.summary
    request, window = spec.get("request") or {}, spec.get("window") or summary.get("window") or {}
    durations = summary.get("durations") or {}
    took = (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
    about = facts([
        ("run id", run.run_id), ("status", run.status), ("scope", fmt.scope(run.scope, spec.get("scope"))),
        ("requested by", request.get("requested_by") or fmt.MISSING), ("request id", run.request_id or fmt.MISSING),
        ("overrides in the request", fmt.plain(request.get("overrides")) if request.get("overrides") else "none"),
        ("dry run", fmt.yes_no(bool(spec.get("dry_run")))),
        ("started", fmt.when(run.started_at)), ("finished", fmt.when(run.finished_at)),
        ("took", fmt.seconds(took if took is not None else durations.get("total"))),
        ("answers from", f"{fmt.when(window.get('since'))} to {fmt.when(window.get('until'))} (look-back window)"),
        ("first and last answer used", f"{fmt.when(window.get('first_at'))}, {fmt.when(window.get('last_at'))}"),
    ])
    # jsonb keeps keys in its own order: put the steps in run order and the settings in the README's.
    order = list(fmt.STEPS)
    steps = [(fmt.STEPS.get(k, fmt.label(k)), fmt.seconds(durations[k]))
             for k in sorted(durations, key=lambda k: order.index(k) if k in order else len(order) - 1)]
    stored = spec.get("settings") or {}
    settings = [(*fmt.setting(name), fmt.plain(stored[name])) for name in sorted(stored, key=fmt.setting_order)]
    counts = summary.get("counts") or {}
    count_rows = [(name, fmt.count(counts[key])) for key, name in fmt.COUNTS.items() if key in counts]
    written = summary.get("rows_upserted") or {}
    if written:
        count_rows.append(("rows written", f"{fmt.count(written.get('items'))} items, "
                                           f"{fmt.count(written.get('abilities'))} abilities"))
    return section("run", "Run", about,
                   tag("h3", "Time per step"), table(("step", "took"), steps, numeric=(1,)),
                   tag("h3", "Counts"), table(("what", "how many"), count_rows, numeric=(1,)),
                   tag("h3", "Settings"), table(("setting", "variable", "value"),
                                                [(label, env, value) for label, env, value in settings]))


def _fit_section(review: Review) -> Markup:
    spec, fit = review.run.model_spec, review.run.fit_stats
    if not fit:
        return section("fit", "Fit", paragraph("The run recorded no fit (it ended before fitting)."))
    priors = fit.get("item_priors") or {}
    rows = [("model", spec.get("model") or fmt.MISSING),
            ("converged", fmt.yes_no(fit.get("converged"))), ("EM passes", fmt.count(fit.get("iterations"))),
            ("largest change in the last pass", fmt.small(fit.get("max_change"))),
            ("log-likelihood", fmt.number(fit.get("loglik"), 2))]
    if priors.get("used"):
        rows.append(("log posterior (with the priors)", fmt.number(fit.get("log_posterior"), 2)))
    rows += [("free parameters", fmt.count(fit.get("n_parameters"))), ("AIC", fmt.number(fit.get("aic"), 2)),
             ("BIC", fmt.number(fit.get("bic"), 2)), ("standard errors", fit.get("standard_errors") or fmt.MISSING),
             ("priors on a and b", ("used" if priors.get("used") else "not used") + (
                 f" ({priors['why']})" if priors.get("why") else ""))]
    fipc = fit.get("fipc")
    if fipc:
        sl = fipc.get("stocking_lord") or {}
        rows += [("fixed-parameter calibration", f"{fmt.count(fipc.get('iterations'))} EM cycles, converged "
                                                 f"{fmt.yes_no(fipc.get('converged'))}"),
                 ("Stocking-Lord on the same anchors",
                  f"slope {_with_se(sl.get('slope'), sl.get('slope_se'))}, "
                  f"intercept {_with_se(sl.get('intercept'), sl.get('intercept_se'))}")]
    held_back = spec.get("held_back_items") or {}
    excluded = {q: why for q, why in (spec.get("excluded_items") or {}).items() if q not in held_back}
    at_bounds = fit.get("items_at_bounds") or {}
    return section(
        "fit", "Fit", facts(rows),
        tag("h3", f"Items held back ({len(held_back):,})"),
        paragraph("Estimated but not written, not scored on, not linked on: their answers do not pin their parameters "
                  "down. Their earlier parameters, if any, stay current.", "quiet"),
        _reasons_table(held_back) if held_back else paragraph("None."),
        tag("h3", f"Items not estimated ({len(excluded):,})"),
        _reasons_table(excluded) if excluded else paragraph("None."),
        tag("h3", f"Items whose estimates ended on a bound ({len(at_bounds):,})"),
        paragraph(f"Bounds: a in [{A_BOUNDS[0]:g}, {A_BOUNDS[1]:g}], d in [{-D_BOUND:g}, {D_BOUND:g}], c in "
                  f"[{C_BOUNDS[0]:.4f}, {C_BOUNDS[1]:g}]. Written, but read their values with care.", "quiet"),
        _reasons_table(at_bounds, "bound") if at_bounds else paragraph("None."))


def _misfit_section(review: Review, view: _View) -> Markup:
    spec = review.run.model_spec
    misfits = spec.get("misfitting_items") or {}
    threshold = (spec.get("settings") or {}).get("item_fit_threshold")
    intro = paragraph(f"RMSD between each item's observed and model curves on the quadrature grid, weighted by where "
                      f"its respondents are; above {fmt.plain(threshold)} an item misfits (PISA 2015). "
                      f"{len(misfits):,} items misfit.")
    if not misfits:
        return section("misfit", "Item fit", intro)
    parts = [intro, _reasons_table(misfits, "flagged because")]
    if view.curves is None:
        parts.append(paragraph("The observed proportions behind these RMSDs were not recorded for this run.", "note"))
        return section("misfit", "Item fit", *parts)
    position = {int(q): k for k, q in enumerate(review.items.question_ids)}
    constants = review.run.constants
    slope, intercept = float(constants.get("slope", 1.0)), float(constants.get("intercept", 0.0))
    plots = []
    for question_id, curve in sorted(view.curves.items(), key=lambda kv: -kv[1]["rmsd"]):
        k = position.get(question_id)
        if k is None:
            continue
        params = review.items.params.take(np.array([k]))
        plots.append(figures.item_curve(question_id, params, slope * np.array(curve["theta"]) + intercept,
                                        np.array(curve["observed"]), np.array(curve["answers"]),
                                        float(review.items.values["rmsd"][k]), view.grid))
    shown = (f"The {len(plots)} worst, as recorded by the run: the model's curve, and the observed proportion "
             "correct at each quadrature node (a dot's area follows the answers there).")
    return section("misfit", "Item fit", *parts, tag("h3", "Evidence"), paragraph(shown), join(plots))


def _reference_model_note(view: _View) -> str:
    anchors = view.anchors
    if anchors is None:
        return ""
    named = sorted({m for m in anchors.models if m})
    if named and named != [view.model]:
        return (f"The anchors' reference parameters come from a {' and '.join(named)} calibration; this run fitted "
                f"the {view.model}." + _model_consequence(view.model))
    varied = np.ptp(np.log(anchors.reference.a)) > 0.05
    if not named and view.model == "1PL" and varied:
        return ("The anchors' reference discriminations vary (from "
                f"{anchors.reference.a.min():.2f} to {anchors.reference.a.max():.2f}), as a 2PL's do; this run "
                "fitted the 1PL." + _model_consequence("1PL"))
    return ""


def _model_consequence(model: str) -> str:
    if model == "1PL":
        return (" The 1PL gives every item one common slope, so the anchors' discriminations cannot agree with "
                "their references: the a scatter is flat and drift on log a means little; the link rests on the "
                "difficulties.")
    return " Reference and new parameters are of different models: read the anchors' drift with that in mind."


def _link_section(review: Review, view: _View) -> Markup:
    spec, constants = review.run.model_spec, review.run.constants
    method = constants.get("method")
    parts = [table(("constant", "value", "standard error (jackknife)"), [
        ("method", method or fmt.MISSING, ""),
        ("slope A", fmt.number(constants.get("slope"), 4), fmt.number(constants.get("slope_se"), 4)),
        ("intercept B", fmt.number(constants.get("intercept"), 4), fmt.number(constants.get("intercept_se"), 4)),
        ("anchors linked on", fmt.count(constants.get("n_anchors")), "")], numeric=(1, 2)),
        paragraph("theta_old = A \u00d7 theta_new + B; b_old = A \u00d7 b_new + B; a_old = a_new / A.", "quiet")]
    note = _reference_model_note(view)
    if note:
        parts.append(paragraph(note, "note"))
    skipped = spec.get("anchors_skipped") or {}
    if skipped:
        parts += [tag("h3", f"Anchors skipped as malformed ({len(skipped):,})"), _reasons_table(skipped)]
    anchors = view.anchors
    if anchors is None:
        if method in (None, "none"):
            parts.append(paragraph("No anchors were linked on: this run's scale is its own (the first calibration "
                                   "defines the scale)."))
        return section("link", "Link", *parts)
    threshold = (spec.get("settings") or {}).get("drift_threshold")
    dropped = spec.get("anchors_dropped") or {}
    drift = anchors.drift
    kind = ("shift divided by its standard error" if drift.standardized else
            "raw shift (standard errors not known for every anchor)")
    parts += [tag("h3", f"Anchors' drift ({int(anchors.kept.sum()):,} kept, {len(dropped):,} dropped)"),
              paragraph(f"Each anchor's new estimate placed on the old scale against its reference: the shift in b "
                        f"and in log a, and their robust z ({kind}, centred on the median and scaled by 1.4826 "
                        f"\u00d7 the median absolute deviation of the kept anchors, at least 1 standard error). "
                        f"An anchor is dropped when |z| exceeds {fmt.plain(threshold)} and the shift matters in size "
                        "(0.3 logits in b, a factor 1.5 in a).", "quiet")]
    order = np.lexsort((anchors.ids, -np.fmax(np.abs(np.nan_to_num(drift.b_z)), np.abs(np.nan_to_num(drift.log_a_z)))))
    rows = []
    for i in order:
        status = "kept" if anchors.kept[i] else "dropped: " + dropped.get(str(anchors.ids[i]), "drift")
        rows.append((int(anchors.ids[i]), anchors.models[i] or fmt.MISSING,
                     fmt.number(anchors.reference.a[i]), fmt.number(anchors.linked.a[i]),
                     fmt.number(np.exp(drift.log_a_shift[i]), 2), fmt.signed(drift.log_a_z[i], 1),
                     fmt.number(anchors.reference.b[i]), fmt.number(anchors.linked.b[i]),
                     fmt.signed(drift.b_shift[i], 3), fmt.number(drift.b_shift_se[i]), fmt.signed(drift.b_z[i], 1),
                     status))
    parts.append(table(("anchor", "reference model", "a reference", "a new", "a ratio", "z log a", "b reference",
                        "b new", "b shift", "SE of shift", "z b", "status"), rows, numeric=(0, *range(2, 11)),
                       scroll=len(rows) > 25))
    kept = anchors.kept
    parts += [figures.anchor_scatter(anchors.reference.b, anchors.linked.b, kept, anchors.ids, "difficulty", "b"),
              figures.anchor_scatter(anchors.reference.a, anchors.linked.a, kept, anchors.ids, "discrimination", "a")]
    if kept.any():
        grid = np.linspace(-4.0, 4.0, 161) * float(constants.get("slope", 1.0)) + float(constants.get("intercept", 0.0))
        parts.append(figures.tcc_difference(anchors.reference.take(kept), anchors.new.take(kept),
                                            anchors.linked.take(kept), grid))
    return section("link", "Link", *parts)


def _measurement_section(review: Review, view: _View) -> Markup:
    items, theta, se = review.items, review.theta, review.theta_se
    if not len(items):
        return section("measurement", "Measurement",
                       paragraph("No item parameters were written by this run, so there is nothing to measure with."))
    counts = review.run.summary.get("counts") or {}
    grid = view.grid
    bank = stats.test_information(items.params, grid)
    per_student = (counts.get("observations") or 0) / max(counts.get("users") or 1, 1)
    share = min(per_student / len(items), 1.0) if per_student else 1.0
    typical = bank * share
    csem = stats.conditional_sem(typical)
    constants = review.run.constants
    mean, sd = float(constants.get("intercept", 0.0)), float(constants.get("slope", 1.0))
    marginal = stats.marginal_reliability(grid, typical, mean, sd)
    rows = [("marginal reliability (model, typical student's answers)", fmt.number(marginal)),
            ("population on the linked scale", f"N({mean:.3f}, {sd:.3f}\u00b2): the calibration's N(0, 1) carried "
                                               "by the linking constants")]
    if theta.size:
        rows = [("empirical reliability of the EAP scores", fmt.number(stats.empirical_reliability(theta, se))),
                *rows, ("students scored", fmt.count(theta.size)),
                ("mean and SD of theta", f"{fmt.number(float(np.mean(theta)))}, {fmt.number(float(np.std(theta)))}"),
                ("median SE of theta", fmt.number(float(np.median(se))))]
    parts = [facts(rows),
             paragraph("Empirical reliability: var(EAP) / (var(EAP) + mean SE\u00b2) over the scored students. "
                       "Marginal reliability: \u03c3\u00b2 / (\u03c3\u00b2 + E[1 / I(\u03b8)]) over the population, "
                       "with I the information of a typical student's answers (as many as the average student gave, "
                       "drawn from the estimated bank).", "quiet"),
             figures.information(grid, typical, bank, per_student or float(len(items))),
             figures.conditional_sem(grid, csem, theta, se)]
    if theta.size:
        parts.append(figures.wright(theta, items.values["b"], grid))
    parts.append(tag("h3", "Distributions"))
    a = items.values["a"][np.isfinite(items.values["a"])]
    if view.model == "1PL" or (a.size and np.ptp(a) < 1e-9):
        common = fmt.number(float(a[0]) if a.size else None)
        parts.append(paragraph(f"Every item shares one discrimination, a = {common}"
                               f" ({view.model}): no distribution to show."))
    elif a.size:
        parts.append(figures.histogram(a, "discrimination a", f"Discriminations of the {a.size:,} written items"))
    parts.append(figures.histogram(items.values["b"], "difficulty b (linked scale)",
                                   f"Difficulties of the {len(items):,} written items", colour="#d1772a"))
    if theta.size:
        parts.append(figures.histogram(theta, "theta (EAP, linked scale)",
                                       f"Abilities of the {theta.size:,} scored students"))
    return section("measurement", "Measurement", *parts)


def _changes_section(review: Review, view: _View) -> Markup:
    previous = review.previous
    parts = []
    if previous is None:
        parts.append(paragraph(f"No earlier succeeded run of this scope ({view.scope}) wrote results before this one: "
                               "nothing to compare with."))
    else:
        before = previous.constants
        parts.append(facts([
            ("previous run", previous.run_id), ("fitted", fmt.when(previous.fitted_at)),
            ("model", previous.model_spec.get("model") or fmt.MISSING),
            ("linking", f"{before.get('method') or fmt.MISSING}: slope {fmt.number(before.get('slope'), 4)}, "
                        f"intercept {fmt.number(before.get('intercept'), 4)}")]))
        methods = {before.get("method"), review.run.constants.get("method")}
        if "none" in methods and len(methods) > 1:
            parts.append(paragraph("One of the two runs was not linked: the differences below include the change "
                                   "of scale, not only the items'.", "note"))
        if (previous.model_spec.get("model") or view.model) != view.model:
            parts.append(paragraph(f"The previous run fitted the {previous.model_spec.get('model')}, this one the "
                                   f"{view.model}: parameters of different models are compared.", "note"))
        parts += _movement_parts(review, view)
    parts += _history_parts(review)
    return section("changes", "Since the previous run", *parts)


def _movement_parts(review: Review, view: _View) -> list:
    moved, ids = view.movement, view.moved_ids
    now_ids, before_ids = set(review.items.question_ids.tolist()), set(review.previous_items.question_ids.tolist())
    parts = [paragraph(f"{len(ids):,} items in both runs; {len(now_ids - before_ids):,} new in this run; "
                       f"{len(before_ids - now_ids):,} written by the previous run and not by this one.")]
    if moved is None or not ids.size:
        return parts
    z = np.fmax(np.abs(moved.b_z), np.abs(moved.log_a_z))
    flagged = np.flatnonzero(np.nan_to_num(z) > MOVEMENT_Z)
    order = flagged[np.lexsort((ids[flagged], -z[flagged]))][:MOVED_LISTED]
    parts.append(figures.movement(moved.b_z, MOVEMENT_Z))
    if not order.size:
        parts.append(paragraph(f"No item moved by more than {MOVEMENT_Z:g} standard errors in b or in log a."))
        return parts
    now_at = np.searchsorted(review.items.question_ids, ids[order])
    before_at = np.searchsorted(review.previous_items.question_ids, ids[order])
    b_now, b_before = review.items.values["b"][now_at], review.previous_items.values["b"][before_at]
    a_now, a_before = review.items.values["a"][now_at], review.previous_items.values["a"][before_at]
    rows = [(int(ids[k]), fmt.number(b_before[n]), fmt.number(b_now[n]), fmt.signed(moved.b_change[k], 3),
             fmt.signed(moved.b_z[k], 1), fmt.number(a_before[n]), fmt.number(a_now[n]),
             fmt.signed(moved.log_a_z[k], 1))
            for n, k in enumerate(order)]
    parts += [tag("h3", f"Items that moved ({flagged.size:,}; the {len(order)} largest)"),
              paragraph(f"z = change / \u221a(SE now\u00b2 + SE before\u00b2), for b and for log a; listed when either "
                        f"exceeds {MOVEMENT_Z:g} in size.", "quiet"),
              table(("item", "b before", "b now", "change in b", "z b", "a before", "a now", "z log a"), rows,
                    numeric=range(0, 8), scroll=len(rows) > 20)]
    return parts


def _history_parts(review: Review) -> list:
    history = review.history
    if not history:
        return []
    labels = [fmt.when(h.fitted_at)[5:16] for h in history]
    rows = [(fmt.when(h.fitted_at), h.run_id[:8], h.model or fmt.MISSING, h.constants.get("method") or fmt.MISSING,
             _with_se(h.constants.get("slope"), h.constants.get("slope_se")),
             _with_se(h.constants.get("intercept"), h.constants.get("intercept_se")),
             fmt.count(h.constants.get("n_anchors")), fmt.count(h.students), fmt.number(h.mean), fmt.number(h.sd),
             fmt.number(h.quantiles[2]))
            for h in history]
    parts = [tag("h3", f"The last {len(history)} runs of this scope"),
             table(("fitted", "run", "model", "linking", "slope", "intercept", "anchors", "students", "mean theta",
                    "SD theta", "median theta"), rows, numeric=range(4, 11))]
    if len(history) > 1:
        get = lambda key: np.array([fmt.is_number(h.constants.get(key)) and h.constants[key] or np.nan  # noqa: E731
                                    for h in history], float)
        parts += [figures.constants_history(labels, get("slope"), get("slope_se"), "slope"),
                  figures.constants_history(labels, get("intercept"), get("intercept_se"), "intercept"),
                  figures.ability_history(labels, np.array([h.quantiles for h in history], float),
                                          np.array([h.mean for h in history]))]
    return parts


def _items_section(review: Review, view: _View) -> Markup:
    items, v = review.items, review.items.values
    header = ["item", "flags", "a", "SE a", "b", "SE b"]
    columns = [fmt.numbers(v[name]) for name in ("a", "a_se", "b", "b_se")]
    if view.model == "3PL":
        header += ["c", "SE c"]
        columns += [fmt.numbers(v["c"]), fmt.numbers(v["c_se"])]
    header += ["answers", "RMSD"]
    columns += [fmt.numbers(v["n_responses"], 0), fmt.numbers(v["rmsd"])]
    if view.movement is not None:  # this run's items in the previous run, by position
        header += ["b before", "change in b", "z b"]
        in_both = np.isin(items.question_ids, view.moved_ids)
        before = np.full(len(items), np.nan)
        change, z = before.copy(), before.copy()
        before_at = np.searchsorted(review.previous_items.question_ids, view.moved_ids)
        before[in_both] = review.previous_items.values["b"][before_at]
        change[in_both], z[in_both] = view.movement.b_change, view.movement.b_z
        columns += [fmt.numbers(before), fmt.numbers(change, 3, signed=True), fmt.numbers(z, 1, signed=True)]
    flags = [Markup(text(", ".join(view.flags[q]))) if q in view.flags else "" for q in items.question_ids.tolist()]
    rows = [list(row) for row in zip(items.question_ids.tolist(), flags, *columns)]
    written = set(items.question_ids.tolist())
    reasons = {int(q): why for q, why in (review.run.model_spec.get("excluded_items") or {}).items()}
    for q, why in sorted(reasons.items()):
        if q not in written:
            rows.append([q, f"{', '.join(view.flags.get(q, ()))}: {why}", *[""] * (len(header) - 2)])
    numeric = [k for k in range(len(header)) if k != 1]
    controls = Markup(
        '<div id="item-controls" hidden><label>Find <input type="search" id="item-filter" '
        'placeholder="item id, or a flag: misfit, anchor, moved, held back"></label>'
        '<label><input type="checkbox" id="item-flagged"> flagged items only</label>'
        '<button type="button" id="item-csv">Download CSV of the matching rows</button>'
        '<span id="item-shown" class="quiet"></span></div>')
    more = Markup(f'<p><button type="button" id="item-more" hidden>Show {ROWS_PER_PAGE} more</button></p>')
    note = Markup("<noscript><p class=quiet>Sorting, finding and the CSV download need JavaScript; the table below "
                  "holds every item all the same (sorted by item id).</p></noscript>")
    explain = paragraph(f"Every item of the run: {len(items):,} written (parameters on the linked scale, with their "
                        f"standard errors, answers and RMSD) and {len(rows) - len(items):,} not written, with the "
                        f"reason. Click a heading to sort (blanks sort last); the first {ROWS_PER_PAGE} matching rows "
                        "are shown at a time.",
                        "quiet")
    return section("items", f"Items ({len(rows):,})", explain, controls, note,
                   table(header, rows, numeric=numeric, table_id="item-table", scroll=True,
                         widths=[5.5, 13, *[5.6] * (len(header) - 2)],
                         data_csv_name=f"items-{review.run.run_id}.csv"), more)
