"""The review page of one run: what a psychometrician checks before accepting a calibration.

``render(review)`` lays out what ``view.build`` made of what ``load`` read:
a summary of the verdicts (fit, link, bank, change, measurement), the run's
metadata, the fit and the items held back or on bounds, misfit with its
evidence, the link and the anchors' drift, for a run of a scope with a bank
its Bank section, measurement precision and the Wright map, the changes
since the previous run of the same scope, and the item table.
"""

from __future__ import annotations

import numpy as np

from ..irt.defaults import A_BOUNDS, C_BOUNDS, D_BOUND
from . import figures
from . import formats as fmt
from . import statistics as stats
from .assets import EARLY_SCRIPT, ROWS_PER_PAGE, SCRIPT, STYLE
from .load import Review
from .markup import Markup, facts, join, paragraph, section, table, tag, text
from .view import (BANK_ITEMS_DRAWN, MOVED_LISTED, MOVEMENT_Z, BankSection, PageView, Verdict, build,
                   rapid_guess_shares, setting_changes, window_overlap, with_se)

_SECTIONS = (("summary", "Summary"), ("run", "Run"), ("fit", "Fit"), ("misfit", "Item fit"), ("dif", "DIF"), ("link", "Link"),
             ("bank", "Bank"), ("measurement", "Measurement"), ("changes", "Since the previous run"),
             ("items", "Items"))


def render(review: Review) -> str:
    """The page's HTML: one self-contained document."""
    run = review.run
    view = build(review)
    body = join([
        _header(review, view),
        _summary(review, view),
        _run_section(review),
        _fit_section(review),
        _misfit_section(review, view),
        _dif_section(view),
        _link_section(review, view),
        _bank_section(review, view),
        _measurement_section(review, view),
        _changes_section(review, view),
        _items_section(review, view),
    ])
    nav = join(tag("a", title, href=f"#{anchor}") for anchor, title in _SECTIONS
               if (anchor != "bank" or view.bank is not None) and (anchor != "dif" or view.dif is not None))
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>Calibration run {text(run.run_id)}: review</title><style>{STYLE}</style>"
            f"<script>{EARLY_SCRIPT}</script></head>"
            f"<body><nav>{nav}</nav><main>{body}</main><script>{SCRIPT}</script></body></html>")


# --- what the sections share -----------------------------------------------------------------

def _reasons_table(reasons: dict, what: str = "reason") -> Markup:
    rows = sorted(((int(q), why) for q, why in reasons.items()), key=lambda r: r[0])
    return table(("item", what), rows, numeric=(0,), scroll=len(rows) > 20)


def _written_word(review: Review) -> str:
    """How the page names the run's items with parameters: a dry run estimated them and wrote none."""
    return "estimated (dry run: not written)" if review.run.dry_run else "written"


# --- sections --------------------------------------------------------------------------------

def _header(review: Review, view: PageView) -> Markup:
    run, spec = review.run, review.run.model_spec
    request = spec.get("request") or {}
    dry = " (dry run: nothing written)" if spec.get("dry_run") else ""
    line = join([Markup(f'<span class="status {text(run.status)}">{text(run.status)}</span> '),
                 f"{view.model or 'model not recorded'} \u00b7 scope: {view.scope} \u00b7 "
                 f"{'fitted' if run.fitted_at else 'ended'} {fmt.when(run.fitted_at or run.finished_at)}{dry} \u00b7 requested by "
                 f"{request.get('requested_by') or fmt.MISSING}, request {run.request_id or fmt.MISSING}"])
    error = paragraph(f"The run failed: {run.error}", "note") if run.error else ""
    return join([tag("h1", f"Calibration run {run.run_id}: review"), paragraph(line), error])


def _summary(review: Review, view: PageView) -> Markup:
    warnings = review.run.summary.get("warnings") or []
    listed = (join([tag("h3", f"Warnings the run logged ({len(warnings)})"),
                    Markup("<ul>" + "".join(f"<li>{text(w)}</li>" for w in warnings) + "</ul>")]) if warnings else "")
    return section("summary", "Summary",
                   Markup('<div class="verdicts">' + join(_verdict(v) for v in view.verdicts) + "</div>"), listed)


def _verdict(verdict: Verdict) -> Markup:
    return Markup(f'<div class="verdict {verdict.level}"><h3>{text(verdict.title)}</h3>'
                  + join(paragraph(line) for line in verdict.lines) + "</div>")


def _run_section(review: Review) -> Markup:
    run, spec, summary = review.run, review.run.model_spec, review.run.summary
    request, window = spec.get("request") or {}, spec.get("window") or summary.get("window") or {}
    durations = summary.get("durations") or {}
    # One source for how long the run took, the one its step table ends with; the timestamps only where it has none.
    took = durations.get("total")
    if took is None and run.finished_at and run.started_at:
        took = (run.finished_at - run.started_at).total_seconds()
    about = facts([
        ("run id", run.run_id), ("status", run.status), ("scope", fmt.scope(run.scope, spec.get("scope"))),
        ("requested by", request.get("requested_by") or fmt.MISSING), ("request id", run.request_id or fmt.MISSING),
        ("overrides in the request", fmt.plain(request.get("overrides")) if request.get("overrides") else "none"),
        ("dry run", fmt.yes_no(bool(spec.get("dry_run")))),
        ("started", fmt.when(run.started_at)), ("finished", fmt.when(run.finished_at)),
        ("took", fmt.seconds(took)),
        ("answers from", f"{fmt.when(window.get('since'))} to {fmt.when(window.get('until'))} (look-back window)"),
        ("first and last answer used", f"{fmt.when(window.get('first_at'))}, {fmt.when(window.get('last_at'))}"),
    ])
    # jsonb keeps keys in its own order: put the steps in run order and the settings in the README's.
    order = list(fmt.STEPS)
    steps = [(fmt.STEPS.get(k, fmt.label(k)), fmt.seconds(durations[k]))
             for k in sorted(durations, key=lambda k: order.index(k) if k in order else len(order) - 1.5)]
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
                   _rapid_guesses(review.run.fit_stats.get("rapid_guess")),
                   tag("h3", "Settings"), table(("setting", "variable", "value"),
                                                [(label, env, value) for label, env, value in settings]))


def _rapid_guesses(record: dict | None) -> Markup:
    """Where the rapid guesses fell: the items with most, and how they spread over the students."""
    if not record:
        return Markup("")
    items = [(t["question_id"], fmt.count(t["rapid"]), fmt.count(t["answers"]), f"{t['share']:.1%}",
              fmt.count(t["threshold_ms"])) for t in record.get("top_items", [])]
    return join([
        tag("h3", f"Rapid guesses left out ({record['rapid']:,})"),
        paragraph(f"First answers faster than their item's threshold ({record['rule_text']}; "
                  f"MIRT_RAPID_GUESS_RULE={record['rule']}, times from attempt.{record['column']}) are left out of "
                  f"the calibration and the scores, not replaced by later answers. {record['answers_untimed']:,} "
                  "answers had no time and were kept.", "quiet"),
        table(("item", "rapid guesses", "timed answers", "share", "threshold (ms)"), items, numeric=(0, 1, 2, 3, 4))
        if items else paragraph("None."),
        tag("h3", "Students by their share of rapid guesses"),
        table(("share of their timed answers", "students"),
              [(share, fmt.count(n)) for share, n in rapid_guess_shares(record)], numeric=(1,)),
    ])


def _fit_section(review: Review) -> Markup:
    spec, fit = review.run.model_spec, review.run.fit_stats
    if "iterations" not in fit:  # at most the choice of priors: the fit did not finish
        return section("fit", "Fit", paragraph("The run recorded no fit (it ended before its fit finished)."))
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
                  f"slope {with_se(sl.get('slope'), sl.get('slope_se'))}, "
                  f"intercept {with_se(sl.get('intercept'), sl.get('intercept_se'))}")]
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


def _misfit_section(review: Review, view: PageView) -> Markup:
    spec = review.run.model_spec
    misfits = spec.get("misfitting_items") or {}
    threshold = (spec.get("settings") or {}).get("item_fit_threshold")
    if "iterations" not in review.run.fit_stats and review.run.status != "succeeded":
        return section("misfit", "Item fit", paragraph("Item fit was not computed: the run ended before its fit "
                                                       "finished."))
    intro = paragraph(f"RMSD between each item's observed and model curves on the quadrature grid, weighted by where "
                      f"its respondents are; above {fmt.plain(threshold)} (MIRT_ITEM_FIT_THRESHOLD) an item "
                      f"misfits{_pisa(threshold)}. "
                      f"{len(misfits):,} items misfit.")
    spread = _rmsd_spread(review)
    if not misfits:
        return section("misfit", "Item fit", intro, spread)
    parts = [intro, spread, _reasons_table(misfits, "flagged because")]
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


def _rmsd_spread(review: Review) -> Markup | str:
    """How the items' RMSDs spread: median, 95th percentile and the largest, with its item (also with no misfit)."""
    rmsd = review.items.values["rmsd"]
    known = np.flatnonzero(np.isfinite(rmsd))
    if not known.size:
        return ""
    worst = known[np.argmax(rmsd[known])]
    return paragraph(f"RMSD of the {known.size:,} items with one: median {fmt.number(float(np.median(rmsd[known])), 3)}, "
                     f"95th percentile {fmt.number(float(np.percentile(rmsd[known], 95)), 3)}, maximum "
                     f"{fmt.number(float(rmsd[worst]), 3)} (item {int(review.items.question_ids[worst])}).")


#: The RMSD past which PISA 2015 flagged an item (OECD, PISA 2015 Technical Report, ch. 9).
PISA_2015_RMSD = 0.12


def _pisa(threshold) -> str:
    """The citation that fits the threshold actually used."""
    if not fmt.is_number(threshold):
        return ""
    if abs(threshold - PISA_2015_RMSD) < 1e-9:
        return f", as in PISA 2015 ({PISA_2015_RMSD:g})"
    return f" (PISA 2015 flagged items above {PISA_2015_RMSD:g}; this run's threshold is {fmt.plain(threshold)})"


def _dif_section(view: PageView) -> Markup | str:
    """The DIF screen by group, when the run had a group column (MIRT_DIF_GROUP_COLUMN): nothing otherwise."""
    dif = view.dif
    if dif is None:
        return ""
    if "" in dif.skipped:
        return section("dif", "DIF", paragraph(f"Groups from column {dif.group_column} of attempt: the screen was "
                                               f"skipped: {dif.skipped['']}."))
    sizes = ", ".join(f"{label} {fmt.count(n)}" for label, n in dif.group_sizes.items())
    parts = [paragraph(
        f"Differential item functioning between the groups of column {dif.group_column} of attempt (a student's "
        f"group: the label of their earliest answer in the window that has one). Reference group: {dif.reference}; "
        f"students per group: {sizes}; {fmt.count(dif.unassigned)} without a group, left out. Each item is screened "
        "by Mantel-Haenszel on matched EAP ability (ETS A/B/C) and by a Wald test of a and b after linking the "
        "groups on purified anchors; it is flagged at ETS B or C, or when the Wald test rejects (Benjamini-Hochberg, "
        "0.05) with an RMSD_DIF of 0.05 or more. Differences are focal minus reference: negative means harder for "
        "the focal group.")]
    if dif.skipped:
        parts.append(table(("group", "not compared because"), sorted(dif.skipped.items())))
    for group in dif.groups:
        parts.append(tag("h3", f"{group.focal} against {dif.reference}"))
        parts.append(facts([
            ("students", fmt.count(group.n_focal)),
            ("items tested", fmt.count(group.items_tested)),
            ("anchors linked on", f"{fmt.count(group.anchors)}" + ("" if group.purified else
                                                                   " (all tested items: too few left unflagged)")),
            ("focal group on the reference scale", f"mean {fmt.signed(group.focal_mean)}, SD "
                                                   f"{fmt.number(group.focal_sd, 2)}"),
            ("ETS classes", ", ".join(f"{k} {fmt.count(group.ets.get(k, 0))}" for k in ("A", "B", "C"))),
            ("flagged", fmt.count(len(group.flagged))),
        ]))
        if not group.flagged:
            continue
        parts.append(table(("item", "ETS", "delta MH", "Wald chi2", "Wald p (BH)", "RMSD_DIF", "signed", "why"),
                           [(f["question_id"], f["ets"], fmt.signed(f["mh_delta"]), fmt.number(f["wald_chi2"], 1),
                             _p_value(f["wald_p_adjusted"]), fmt.number(f["rmsd_dif"]),
                             fmt.signed(f["signed_difference"], 3), f["why"]) for f in group.flagged],
                           numeric=(0, 2, 3, 4, 5, 6), scroll=len(group.flagged) > 20))
        plots = [figures.dif_curves(f["question_id"], f["curves"], dif.reference, group.focal,
                                    f"Item {f['question_id']}: {f['why']}")
                 for f in group.flagged if f.get("curves")]
        if plots:
            parts.append(join(plots))
    return section("dif", "DIF", *parts)


def _p_value(p) -> str:
    """A p-value as a reader compares it with 0.05: three decimals, or two significant figures below 0.001."""
    if not fmt.is_number(p):
        return fmt.MISSING
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _link_section(review: Review, view: PageView) -> Markup:
    spec, constants = review.run.model_spec, review.run.constants
    method = constants.get("method")
    # A run refused at the link set no constants: the identity it carries would read as a scale of its own.
    if review.run.status in ("failed", "abandoned", "skipped") and method in (None, "none"):
        tagged = len(spec.get("anchor_table") or [])
        parts = [paragraph("The run was skipped before it linked: it set no linking constants."
                           if review.run.status == "skipped" else
                           f"The run refused to link on its {tagged:,} anchors: {review.run.error}. It set no linking "
                           "constants." if tagged else "The run ended before it linked: it set no linking constants.",
                           "note")]
        if view.anchors is None:
            return section("link", "Link", *parts)
    else:
        parts = [table(("constant", "value", "standard error (jackknife)"), [
            ("method", method or fmt.MISSING, ""),
            ("slope A", fmt.number(constants.get("slope"), 4), fmt.number(constants.get("slope_se"), 4)),
            ("intercept B", fmt.number(constants.get("intercept"), 4), fmt.number(constants.get("intercept_se"), 4)),
            ("anchors linked on", fmt.count(constants.get("n_anchors")), "")], numeric=(1, 2)),
            paragraph("theta_old = A \u00d7 theta_new + B; b_old = A \u00d7 b_new + B; a_old = a_new / A.", "quiet")]
    note = view.reference_model_note
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
    if not drift.standardized:
        parts.append(paragraph("This run did not record the standard errors its drift screen divided by, so these z "
                               "are of raw shifts and can differ from the ones it decided by (those are in the "
                               "reasons an anchor was dropped).", "note"))
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


def _bank_section(review: Review, view: PageView) -> Markup:
    bank = view.bank
    if bank is None:
        return Markup("")
    parts = [_verdict(bank.verdict)]
    if bank.mode == "recalibration":
        impact = bank.impact
        parts += [paragraph("A free calibration of the window, linked onto the bank through its operational items "
                            "(the Link section). It wrote its parameters to the history only: the bank, and the "
                            "students' current scores, stay as they are until it is accepted."),
                  facts([("students scored both ways", fmt.count(impact.get("students_scored"))),
                         ("moved by more than their standard error", fmt.count(impact.get("moved_more_than_se"))),
                         ("mean shift of theta", fmt.signed(impact.get("mean_shift"), 3)),
                         ("largest shift", fmt.number(impact.get("max_abs_shift"))),
                         ("to accept it", bank.accept)])]
        return section("bank", "Bank: recalibration", *parts)
    population = bank.population
    parts += [tag("h3", "The population on the bank's scale"),
              facts([("mean", with_se(population.get("mean"), population.get("mean_se"), 3)),
                     ("standard deviation", with_se(population.get("sd"), population.get("sd_se"), 3)),
                     ("operational items held at their bank values", fmt.count(bank.fixed_items)),
                     ("operational items watched for drift", fmt.count(bank.drift_watched)),
                     ("their free estimates' link onto the bank",
                      f"{bank.drift_link.get('method') or fmt.MISSING}: slope "
                      f"{fmt.number(bank.drift_link.get('slope'), 4)}, intercept "
                      f"{fmt.number(bank.drift_link.get('intercept'), 4)}")]),
              paragraph("Fixed-parameter calibration: with the operational items held at their bank values, the "
                        "window's students are N(mean, SD\u00b2) on the bank's scale (the run's linking constants, "
                        "method fipc: slope = SD, intercept = mean).", "quiet")]
    if bank.mean_trend is not None:
        runs = len(bank.population_rows)
        parts += [tag("h3", f"Over the last {runs} weekly runs of this bank"),
                  table(("fitted", "run", "mean", "SE", "SD", "SE"), bank.population_rows, numeric=range(2, 6)),
                  figures.estimate_history(bank.mean_trend.labels, bank.mean_trend.values, bank.mean_trend.errors,
                                           "mean theta (bank's scale)", "Population mean over the last runs",
                                           "The window's mean ability on the bank's scale, run by run, with 95% "
                                           "intervals."),
                  figures.estimate_history(bank.sd_trend.labels, bank.sd_trend.values, bank.sd_trend.errors,
                                           "SD of theta (bank's scale)", "Population SD over the last runs",
                                           "The window's ability SD on the bank's scale, run by run, with 95% "
                                           "intervals.")]
    else:
        parts.append(paragraph("No earlier weekly run of this bank: the trend starts here."))
    parts += _bank_items_parts(bank)
    parts += [tag("h3", f"Promoted from pretest ({len(bank.promoted):,})"),
              table(("item", "answers", "b", "SE b", "RMSD", "passed"), bank.promoted, numeric=range(0, 5))
              if bank.promoted else paragraph("None."),
              paragraph(f"{bank.not_promoted:,} pretest items calibrated onto the bank's scale did not pass every "
                        "gate yet (listed in the run's record).", "quiet") if bank.not_promoted else "",
              tag("h3", "The promotion gates"),
              table(("a pretest item becomes operational with", "setting", "value"), bank.gates, numeric=(2,))]
    return section("bank", "Bank", *parts)


def _bank_items_parts(bank: BankSection) -> list:
    suspended = sum(item.suspended for item in bank.items)  # a run suspends only items it flags
    parts = [tag("h3", f"Flagged for drift ({len(bank.items):,}; {suspended:,} of them suspended)")]
    if not bank.items:
        return parts + [paragraph("No operational item drifted from its bank value in this run.")]
    parts.append(paragraph("Each item's free estimate of every run, placed on the bank's scale, against its bank "
                           "value: an item flagged in MIRT_DRIFT_RUNS of its last MIRT_DRIFT_RUNS + 1 runs is suspended (out of the fixed "
                           "set, unscored) until a recalibration is accepted.", "quiet"))
    for n, item in enumerate(bank.items):
        title = f"Item {item.question_id}: {'suspended' if item.suspended else 'flagged'}"
        rows = [(fmt.when(r.fitted_at), r.run_id[:8], with_se(r.b, r.b_se, 3), fmt.number(r.b_bank),
                 fmt.signed(r.z_b, 1), with_se(r.a, r.a_se, 3), fmt.number(r.a_bank), fmt.signed(r.z_a, 1),
                 fmt.yes_no(r.flagged)) for r in item.runs]
        bank_now = ""
        if fmt.is_number(item.bank_b_se):
            bank_now = (f" Bank value's standard errors: {fmt.number(item.bank_b_se)} on b, "
                        f"{fmt.number(item.bank_a_se)} on a.")
        part = [tag("h4", title), paragraph(item.why + "." + bank_now),
                table(("fitted", "run", "free b (SE)", "bank b", "z b", "free a (SE)", "bank a", "z log a",
                       "flagged"), rows, numeric=range(2, 8))]
        if n < BANK_ITEMS_DRAWN and item.runs:
            part += [figures.estimate_history(item.b.labels, item.b.values, item.b.errors, "b (bank's scale)",
                                              f"Item {item.question_id}: free b against its bank value",
                                              f"Item {item.question_id}'s free difficulty run by run, with 95% "
                                              "intervals, against its bank value (dashed).", item.b.reference,
                                              item.b.flagged),
                     figures.estimate_history(item.a.labels, item.a.values, item.a.errors, "a (bank's scale)",
                                              f"Item {item.question_id}: free a against its bank value",
                                              f"Item {item.question_id}'s free discrimination run by run, with 95% "
                                              "intervals, against its bank value (dashed).", item.a.reference,
                                              item.a.flagged)]
        parts.append(join([Markup('<div class="bank-item">'), *part, Markup("</div>")]))
    return parts


def _measurement_section(review: Review, view: PageView) -> Markup:
    items, theta, se, measured = review.items, review.theta, review.theta_se, view.measurement
    if measured is None:
        if review.run.dry_run and review.run.status == "succeeded":
            return section("measurement", "Measurement", paragraph(
                "This dry run was recorded before dry runs kept their estimates in the history: there is nothing "
                "to measure with."))
        return section("measurement", "Measurement",
                       paragraph("No item parameters were written by this run, so there is nothing to measure with."))
    written = "estimated items (dry run: not written)" if review.run.dry_run else "written items"
    grid = view.grid
    mean, sd = measured.population_mean, measured.population_sd
    method = measured.method
    rows = [("scoring method", _scoring_method(measured)),
            ("marginal reliability (model, typical student's answers)", fmt.number(measured.marginal_reliability)),
            ("population on the linked scale", f"N({mean:.3f}, {sd:.3f}\u00b2): the calibration's N(0, 1) carried "
                                               "by the linking constants")]
    if measured.plausible_values:
        rows.append(_plausible_values(measured.plausible_values))
    has_se = np.isfinite(se)
    if theta.size:
        rows = [(f"empirical reliability of the {method} scores", fmt.number(stats.empirical_reliability(theta, se))),
                *rows, ("students scored", fmt.count(theta.size)),
                ("mean and SD of theta", f"{fmt.number(float(np.mean(theta)))}, {fmt.number(float(np.std(theta)))}"),
                ("median SE of theta", fmt.number(float(np.median(se[has_se])) if has_se.any() else None))]
    parts = [facts(rows),
             paragraph(f"Empirical reliability: var({method}) / (var({method}) + mean SE\u00b2) over the scored "
                       "students (those with a standard error). "
                       "Marginal reliability: \u03c3\u00b2 / (\u03c3\u00b2 + E[1 / I(\u03b8)]) over the population, "
                       "with I the information of a typical student's answers (as many as the average student gave, "
                       "drawn from the estimated bank)."
                       + (" Plausible values: draws from each student's posterior under the population's own "
                          "distribution (Mislevy 1991); their mean and SD estimate the population's without the "
                          "shrinkage of EAP or MAP scores or the noise of ML or WLE scores; the spread between draws "
                          "is what the students' measurement error adds (for group statistics only, never a "
                          "student's score)." if measured.plausible_values else ""), "quiet"),
             figures.information(grid, measured.typical_information, measured.bank_information,
                                 measured.answers_per_student),
             figures.conditional_sem(grid, measured.csem, theta[has_se], se[has_se], method)]
    if theta.size:
        parts.append(figures.wright(theta, items.values["b"], grid, method))
    parts.append(tag("h3", "Distributions"))
    a = items.values["a"][np.isfinite(items.values["a"])]
    if view.model == "1PL" or (a.size and np.ptp(a) < 1e-9):
        common = fmt.number(float(a[0]) if a.size else None)
        parts.append(paragraph(f"Every item shares one discrimination, a = {common}"
                               f" ({view.model}): no distribution to show."))
    elif a.size:
        parts.append(figures.histogram(a, "discrimination a", f"Discriminations of the {a.size:,} {written}"))
    parts.append(figures.histogram(items.values["b"], "difficulty b (linked scale)",
                                   f"Difficulties of the {len(items):,} {written}", colour="#d1772a"))
    if theta.size:
        parts.append(figures.histogram(theta, f"theta ({method}, linked scale)",
                                       f"Abilities of the {theta.size:,} scored students"
                                       + (" (dry run: not written)" if review.run.dry_run else "")))
    return section("measurement", "Measurement", *parts)


#: What each scoring method is, in a line (docs/psychometrics.md, Scoring).
_SCORING = {"EAP": "EAP: posterior mean under N(0, 1), SE the posterior SD",
            "MAP": "MAP: posterior mode under N(0, 1), SE from the posterior's curvature",
            "ML": "ML: likelihood maximum, SE 1 / sqrt(information)",
            "WLE": "WLE: Warm's weighted likelihood, SE 1 / sqrt(information)",
            "EAP-sum": "EAP-sum: posterior mean given the summed score on the student's form"}


def _scoring_method(measured) -> str:
    """The method in words, with the estimates at the ends of the range (ML's are infinite: written there)."""
    text = _SCORING.get(measured.method, measured.method)
    ends = measured.scoring.get("at_bound") or {}
    n = int(ends.get("upper") or 0) + int(ends.get("lower") or 0)
    if n:
        what = "infinite, written at" if measured.method == "ML" else "at"
        text += (f"; {fmt.count(n)} estimates {what} the end of the range ({fmt.count(ends.get('upper') or 0)} "
                 f"upper, {fmt.count(ends.get('lower') or 0)} lower{', no SE' if measured.method == 'ML' else ''})")
    return text


def _plausible_values(pv: dict) -> tuple[str, str]:
    """The population from plausible values: mean and SD, each with its standard error and between-draw spread."""
    return (f"population from plausible values ({pv.get('draws')} per student, {fmt.count(pv.get('n'))} students, "
            "Rubin's rules)",
            f"mean {fmt.number(pv.get('mean'))} (SE {fmt.number(pv.get('mean_se'))}, between draws "
            f"\u00b1{fmt.number(pv.get('mean_between'))}), SD {fmt.number(pv.get('sd'))} (SE "
            f"{fmt.number(pv.get('sd_se'))}, between draws \u00b1{fmt.number(pv.get('sd_between'))})")


def _changes_section(review: Review, view: PageView) -> Markup:
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
        if "none" in methods and len(methods) > 1 and view.movement is not None:  # (else nothing is compared)
            parts.append(paragraph("One of the two runs was not linked: the differences below include the change "
                                   "of scale, not only the items'.", "note"))
        if (previous.model_spec.get("model") or view.model) != view.model:
            parts.append(paragraph(f"The models differ: the previous run fitted the "
                                   f"{previous.model_spec.get('model')}, this one the {view.model}; parameters of "
                                   "different models are compared, so a change below is not an item that moved.",
                                   "note"))
        changes = setting_changes(previous, review.run)
        parts += [tag("h3", f"Settings that differ ({len(changes):,})"),
                  table(("setting", "variable", "previous run", "this run"),
                        [(c.name, c.variable, c.before, c.now) for c in changes]) if changes else
                  paragraph("None: both runs used the same settings.")]
        parts += _overlap_parts(review)
        parts += _movement_parts(review, view)
    parts += _history_parts(review)
    return section("changes", "Since the previous run", *parts)


def _overlap_parts(review: Review) -> list:
    """The two runs' windows and what they share: shared answers make the change's z too small."""
    overlap = window_overlap(review.previous, review.run)
    if overlap is None:
        return []

    def window(record):
        stored = record.model_spec.get("window") or record.summary.get("window") or {}
        return f"{fmt.when(stored.get('since'))} to {fmt.when(stored.get('until'))}"

    rows = [("this run's answers", window(review.run)), ("the previous run's answers", window(review.previous))]
    if overlap.days <= 0:
        return [facts(rows + [("shared", "nothing: the windows do not overlap")])]
    share = overlap.days / overlap.this_window_days if overlap.this_window_days > 0 else float("nan")
    rows.append(("shared", f"{overlap.since} to {overlap.until}: {overlap.days:,.1f} days, "
                           f"{fmt.number(100 * share, 0)}% of this run's window"))
    return [facts(rows), paragraph(
        "The windows overlap, so the two runs share answers and their estimates' errors correlate. The z of each "
        "change below divides by \u221a(SE now\u00b2 + SE before\u00b2), as if the runs were independent: it is too "
        "small, and its spread narrower than the N(0, 1) drawn beside it. An item past the threshold moved; one "
        "below it may have moved all the same.", "note")]


def _movement_parts(review: Review, view: PageView) -> list:
    moved, ids = view.movement, view.moved_ids
    now_ids, before_ids = set(review.items.question_ids.tolist()), set(review.previous_items.question_ids.tolist())
    parts = [paragraph(f"{len(ids):,} items in both runs; {len(now_ids - before_ids):,} new in this run; "
                       f"{len(before_ids - now_ids):,} written by the previous run and not by this one.")]
    if moved is None or not ids.size:
        return parts
    z = np.fmax(np.abs(moved.b_z), np.abs(moved.log_a_z))
    flagged = np.flatnonzero(np.nan_to_num(z) > MOVEMENT_Z)
    order = flagged[np.lexsort((ids[flagged], -z[flagged]))][:MOVED_LISTED]
    if view.previous_movement is not None:
        parts.append(paragraph(
            "The same z one run earlier, beside this run's: the previous run against the one before it "
            f"({review.before_previous}). Both are drawn against N(0, 1), the spread of z if nothing moved and the "
            "runs shared no answers; a spread that differs between the two charts is a change in how much items "
            "move, or in how much the windows overlap.", "quiet"))
        parts += figures.movement_pair(view.previous_movement.b_z, moved.b_z, MOVEMENT_Z,
                                       "in the previous run and the one before it")
    else:
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
    labels = fmt.run_labels([h.fitted_at for h in history], [h.run_id for h in history])
    rows = [(fmt.when(h.fitted_at), h.run_id[:8], h.model or fmt.MISSING, h.constants.get("method") or fmt.MISSING,
             with_se(h.constants.get("slope"), h.constants.get("slope_se")),
             with_se(h.constants.get("intercept"), h.constants.get("intercept_se")),
             fmt.count(h.constants.get("n_anchors")), fmt.count(h.students), fmt.number(h.mean), fmt.number(h.sd),
             fmt.number(h.quantiles[2]))
            for h in history]
    parts = [tag("h3", "The last run of this scope" if len(history) == 1 else
                 f"The last {len(history):,} runs of this scope"),
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


def _items_section(review: Review, view: PageView) -> Markup:
    items, v = review.items, review.items.values
    header = ["item", "flags", "a", "SE a", "b", "SE b"]
    columns = [fmt.numbers(v[name]) for name in ("a", "a_se", "b", "b_se")]
    exact = [v[name] for name in ("a", "a_se", "b", "b_se")]  # what the CSV holds, at full precision
    if view.model == "3PL":
        header += ["c", "SE c"]
        columns += [fmt.numbers(v["c"]), fmt.numbers(v["c_se"])]
        exact += [v["c"], v["c_se"]]
    header += ["answers", "RMSD"]
    columns += [fmt.numbers(v["n_responses"], 0), fmt.numbers(v["rmsd"])]
    exact += [v["n_responses"], v["rmsd"]]
    if view.movement is not None:  # this run's items in the previous run, by position
        header += ["b before", "change in b", "z b"]
        in_both = np.isin(items.question_ids, view.moved_ids)
        before = np.full(len(items), np.nan)
        change, z = before.copy(), before.copy()
        before_at = np.searchsorted(review.previous_items.question_ids, view.moved_ids)
        before[in_both] = review.previous_items.values["b"][before_at]
        change[in_both], z[in_both] = view.movement.b_change, view.movement.b_z
        columns += [fmt.numbers(before), fmt.numbers(change, 3, signed=True), fmt.numbers(z, 1, signed=True)]
        exact += [before, change, z]
    flags = [Markup(text(", ".join(view.flags[q]))) if q in view.flags else "" for q in items.question_ids.tolist()]
    rows = [list(row) for row in zip(items.question_ids.tolist(), flags, *columns)]
    # One attribute of the table, not one per row: the rows stay as plain as the page's other tables.
    full = ";".join(f"{q} " + " ".join(values)
                    for q, *values in zip(items.question_ids.tolist(), *(fmt.full(column) for column in exact)))
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
    explain = paragraph(f"Every item of the run: {len(items):,} {_written_word(review)}, with their parameters on "
                        "the linked scale, their standard errors, answers and RMSD; and "
                        f"{len(rows) - len(items):,} not estimated or held back, with the reason.", "quiet")
    # Said only where the script runs (it unhides this line): without JavaScript no heading can be clicked.
    howto = Markup(f'<p id="item-howto" class=quiet hidden>Click a heading to sort (blanks sort last); the first '
                   f'{ROWS_PER_PAGE} matching rows are shown at a time.</p>')
    return section("items", f"Items ({len(rows):,})", explain, howto, controls, note,
                   table(header, rows, numeric=numeric, table_id="item-table", scroll=True,
                         data_exact=full,
                         widths=[5.5, 13, *[5.6] * (len(header) - 2)],
                         data_csv_name=f"items-{review.run.run_id}.csv"), more)
