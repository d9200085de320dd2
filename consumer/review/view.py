"""What the review page shows, as plain data: derived once from what ``load`` read, before any HTML.

``build(review)`` gives a ``PageView``: the verdicts of the summary, each
item's flags, the anchors' drift, the items' movement since the previous
run, the misfit evidence, the measurement's numbers, and for a run of a
scope with a bank its Bank section (the population on the bank's scale and
its trend, the flagged and suspended items' drift over the runs, the
promotions and the gates). ``page`` lays these out as HTML and formats
nothing it has to compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..irt.model import ItemParameters
from . import formats as fmt
from . import statistics as stats
from .load import BankHistory, DriftEstimate, ItemResults, Review

#: |z| past which an item's change since the previous run is called a movement.
MOVEMENT_Z = 3.0
#: Most moved items listed by name.
MOVED_LISTED = 50
#: Flagged or suspended items drawn run by run in the Bank section (the rest are listed).
BANK_ITEMS_DRAWN = 20

#: The bank's promotion gates (fit_stats.bank.gates) as the page names them, with the setting each comes from.
GATES = {"min_answers": ("fewest answers in the run", "MIRT_PROMOTION_MIN_ANSWERS"),
         "max_b_se": ("largest standard error of b, on the bank's scale", "MIRT_PROMOTION_MAX_B_SE"),
         "max_rmsd": ("largest RMSD", "MIRT_ITEM_FIT_THRESHOLD"),
         "runs": ("runs in a row that estimated it, b steady between them", "MIRT_PROMOTION_RUNS"),
         "drift_threshold": ("z past which b moved between two runs (and by 0.3 logits or more)",
                             "MIRT_DRIFT_THRESHOLD")}


@dataclass(frozen=True)
class Verdict:
    """One card of the summary: a title, a level ('' fine, 'warn', 'bad') and its lines."""

    title: str
    level: str
    lines: list[str]


@dataclass(frozen=True)
class Anchors:
    ids: np.ndarray
    reference: ItemParameters
    new: ItemParameters  # on the calibration scale
    linked: ItemParameters  # on the old scale, by the screen's constants
    kept: np.ndarray
    models: list[str | None]  # the reference model of each anchor, where known
    drift: stats.AnchorDrift


@dataclass(frozen=True)
class Measurement:
    """The measurement section's numbers: information over the grid, reliabilities, the population."""

    bank_information: np.ndarray
    typical_information: np.ndarray
    answers_per_student: float
    csem: np.ndarray
    marginal_reliability: float
    population_mean: float
    population_sd: float
    #: How the run scored (``fit_stats.scoring``: method, estimates at the range's ends); EAP for runs before it.
    scoring: dict
    #: The population from plausible values (``fit_stats.plausible_values``), None when the run drew none.
    plausible_values: dict | None = None

    @property
    def method(self) -> str:
        return self.scoring.get("method") or "EAP"


@dataclass(frozen=True)
class Trend:
    """Values with their standard errors over runs (oldest first), labelled by when each run was fitted."""

    labels: list[str]
    values: np.ndarray
    errors: np.ndarray
    #: The bank value each run compared with (NaN where none).
    reference: np.ndarray | None = None
    flagged: np.ndarray | None = None


@dataclass(frozen=True)
class BankItem:
    """A flagged or suspended operational item: why, and its free estimates of the last runs against its bank value."""

    question_id: int
    suspended: bool
    why: str
    status_now: str  # in the bank now ('' when not known)
    runs: list[DriftEstimate]  # oldest first, this run last
    b: Trend
    a: Trend
    bank_b_se: float  # NaN when not known
    bank_a_se: float


@dataclass(frozen=True)
class BankSection:
    """The Bank section of a run of a scope with a bank."""

    mode: str  # 'weekly' or 'recalibration'
    verdict: Verdict
    population: dict[str, float] = field(default_factory=dict)  # mean, sd, mean_se, sd_se
    mean_trend: Trend | None = None  # over the last weekly runs, when there are earlier ones
    sd_trend: Trend | None = None
    population_rows: list[tuple] = field(default_factory=list)  # (fitted, run, mean, mean SE, SD, SD SE)
    fixed_items: int | None = None
    drift_watched: int | None = None
    drift_link: dict = field(default_factory=dict)
    items: list[BankItem] = field(default_factory=list)  # suspended first, then flagged by |z|
    #: (question id, answers, b, SE b, RMSD, what the run recorded) of the promoted items.
    promoted: list[tuple] = field(default_factory=list)
    gates: list[tuple[str, str, str]] = field(default_factory=list)  # (what, setting, value)
    not_promoted: int = 0
    impact: dict = field(default_factory=dict)
    accept: str = ""


@dataclass(frozen=True)
class DifGroup:
    """One focal group against the reference group: its size, the screen's counts, and the flagged items."""

    focal: str
    n_focal: int
    items_tested: int
    anchors: int
    purified: bool
    focal_mean: float | None
    focal_sd: float | None
    ets: dict[str, int]
    #: As the run stored them: question_id, ets, mh_delta, wald_chi2, wald_p_adjusted, rmsd_dif,
    #: signed_difference, why, and (for the worst) curves.
    flagged: list[dict]


@dataclass(frozen=True)
class DifSection:
    """The DIF section of a run with MIRT_DIF_GROUP_COLUMN set (fit_stats.dif)."""

    group_column: str
    reference: str
    group_sizes: dict[str, int]
    unassigned: int
    groups: list[DifGroup]
    #: Groups not compared (or the whole screen skipped: key ""), with why.
    skipped: dict[str, str]


@dataclass(frozen=True)
class PageView:
    """What several sections need, derived once."""

    model: str
    scope: str
    grid: np.ndarray  # theta on the linked scale
    anchors: Anchors | None
    flags: dict[int, list[str]]  # question id -> short flags
    movement: stats.Movement | None
    moved_ids: np.ndarray  # the question ids movement refers to
    #: The previous run's change since the run before it (the same z, one run earlier), to show beside this one's.
    previous_movement: stats.Movement | None
    moved: int  # items that moved by more than MOVEMENT_Z standard errors
    curves: dict[int, dict] | None  # question id -> stored node proportions; None when not recorded
    reference_model_note: str
    verdicts: list[Verdict]
    measurement: Measurement | None
    bank: BankSection | None
    dif: DifSection | None = None


def build(review: Review) -> PageView:
    """The page's data, from what ``load`` read."""
    spec, run = review.run.model_spec, review.run
    model = spec.get("model") or run.summary.get("model", "")
    scope = fmt.scope(run.scope, spec.get("scope"))
    theta = review.theta[np.isfinite(review.theta)]
    if theta.size:
        centre, spread = float(np.median(theta)), float(np.std(theta)) or 1.0
        grid = np.linspace(np.floor(centre - 4 * spread), np.ceil(centre + 4 * spread), 161)
    else:
        grid = np.linspace(-4, 4, 161)
    anchors = _anchors(review)
    movement, moved_ids = _movement(review.items, review.previous_items)
    previous_movement = _movement(review.previous_items, review.before_previous_items)[0] if movement else None
    moved = 0
    if movement is not None:
        moved = int(np.sum(np.nan_to_num(np.fmax(np.abs(movement.b_z), np.abs(movement.log_a_z))) > MOVEMENT_Z))
    note = _reference_model_note(anchors, model)
    bank = _bank(review, run.fit_stats.get("bank"))
    dif = _dif(run.fit_stats.get("dif"))
    return PageView(model, scope, grid, anchors, _flags(review, anchors, movement, moved_ids, bank, dif), movement,
                    moved_ids, previous_movement, moved, _curves(review), note,
                    _verdicts(review, scope, note, movement, moved_ids, moved, bank, dif),
                    _measurement(review, grid), bank, dif)


def _dif(stored: dict | None) -> DifSection | None:
    """The DIF screen the run recorded; None when it ran none (no group column)."""
    if not stored:
        return None
    skipped = dict(stored.get("skipped") or {}) if isinstance(stored.get("skipped"), dict) else \
        {"": str(stored["skipped"])}
    groups = [DifGroup(c["focal"], int(c["n_focal"]), int(c["items_tested"]), int(c["anchors"]), bool(c["purified"]),
                       c.get("focal_mean"), c.get("focal_sd"), dict(c.get("ets") or {}), list(c.get("flagged") or []))
              for c in stored.get("comparisons") or []]
    return DifSection(stored.get("group_column", ""), stored.get("reference", ""), dict(stored.get("group_sizes") or {}),
                      int(stored.get("unassigned") or 0), groups, skipped)


def with_se(value, se, decimals: int = 4) -> str:
    """``value`` and, where known, its standard error: "1.1000 (SE 0.0200)"."""
    return fmt.number(value, decimals) + (f" (SE {fmt.number(se, decimals)})" if fmt.is_number(se) else "")


# --- the anchors, movement, misfit evidence ---------------------------------------------------

def _anchors(review: Review) -> Anchors | None:
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

    # The SEs the drift screen divided by, as the run recorded them (calibration scale, placed on the old scale by
    # the screen's slope, new a / linked a); a run from before they were recorded: the written items' SEs.
    recorded_b_se = np.array([_or_nan(x["new"].get("b_se")) for x in rows])
    recorded_a_se = np.array([_or_nan(x["new"].get("a_se")) for x in rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = new.a / linked.a
    b_se = np.where(np.isfinite(recorded_b_se), recorded_b_se * slope, written("b_se"))
    a_se = np.where(np.isfinite(recorded_a_se), recorded_a_se / slope, written("a_se"))
    drift = stats.anchor_drift(reference, linked, kept, b_se, a_se,
                               np.array([m.get("b_se", np.nan) for m in known], float),
                               np.array([m.get("a_se", np.nan) for m in known], float))
    return Anchors(ids, reference, new, linked, kept, [m.get("model") for m in known], drift)


def _or_nan(value) -> float:
    return float(value) if fmt.is_number(value) else float("nan")


def _reference_meta(review: Review, row: dict) -> dict:
    """An anchor's reference model and SEs: as the run recorded them, else question.meta's if it has the same a, b."""
    recorded = row["reference"]
    if recorded.get("model"):
        return recorded
    meta = review.anchor_meta.get(int(row["question_id"])) or {}
    same = all(isinstance(meta.get(k), (int, float)) and abs(float(meta[k]) - float(recorded[k])) < 1e-9
               for k in ("a", "b"))
    return {k: meta[k] for k in ("model", "a_se", "b_se") if k in meta} if same else {}


def _movement(now: ItemResults | None, before: ItemResults | None) -> tuple[stats.Movement | None, np.ndarray]:
    """The change of the items two runs share, from ``before`` to ``now``, and their question ids."""
    if now is None or before is None or not len(before) or not len(now):
        return None, np.zeros(0, np.int64)
    shared, now_at, before_at = np.intersect1d(now.question_ids, before.question_ids,
                                               assume_unique=True, return_indices=True)
    now_v, before_v = now.values, before.values
    moved = stats.item_movement(now.params.take(now_at), now_v["b_se"][now_at], now_v["a_se"][now_at],
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


def _flags(review: Review, anchors: Anchors | None, movement: stats.Movement | None, moved_ids: np.ndarray,
           bank: BankSection | None, dif: DifSection | None) -> dict[int, list[str]]:
    spec, fit = review.run.model_spec, review.run.fit_stats
    flags: dict[int, list[str]] = {}

    def add(question_id, flag):
        flags.setdefault(int(question_id), []).append(flag)

    held_back = spec.get("held_back_items") or {}
    for q in held_back:
        add(q, "held back")
    for q in spec.get("excluded_items") or {}:
        if q not in held_back:
            add(q, "not estimated")
    if anchors is not None:
        for q, kept in zip(anchors.ids, anchors.kept):
            add(q, "anchor" if kept else "anchor dropped")
    for q in spec.get("anchors_skipped") or {}:
        add(q, "anchor skipped")
    for q in spec.get("misfitting_items") or {}:
        add(q, "misfit")
    for q in fit.get("items_at_bounds") or {}:
        add(q, "on a bound")
    if movement is not None:
        z = np.fmax(np.abs(movement.b_z), np.abs(movement.log_a_z))
        for q in moved_ids[np.nan_to_num(z) > MOVEMENT_Z]:
            add(q, "moved")
    if bank is not None:
        for item in bank.items:
            add(item.question_id, "suspended" if item.suspended else "drift flagged")
        for row in bank.promoted:
            add(row[0], "promoted")
    for group in dif.groups if dif is not None else ():
        for item in group.flagged:
            add(item["question_id"], f"DIF {item['ets']} ({group.focal})")
    return flags


def _reference_model_note(anchors: Anchors | None, model: str) -> str:
    if anchors is None:
        return ""
    named = sorted({m for m in anchors.models if m})
    if named and named != [model]:
        return (f"The anchors' reference parameters come from a {' and '.join(named)} calibration; this run fitted "
                f"the {model}." + _model_consequence(model))
    varied = np.ptp(np.log(anchors.reference.a)) > 0.05
    if not named and model == "1PL" and varied:
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


# --- what differs from the previous run ------------------------------------------------------

@dataclass(frozen=True)
class SettingChange:
    """A setting whose value differs between the previous run and this one."""

    key: str  # as stored in model_spec.settings
    name: str  # what it means
    variable: str
    before: str
    now: str


@dataclass(frozen=True)
class WindowOverlap:
    """How much the look-back windows of the previous run and this one share."""

    days: float
    this_window_days: float
    since: str  # the shared stretch, as the page writes times
    until: str


def setting_changes(previous, run) -> list[SettingChange]:
    """The settings recorded by both runs whose values differ, in the settings' own order."""
    before, now = previous.model_spec.get("settings") or {}, run.model_spec.get("settings") or {}
    changed = [k for k in set(before) | set(now) if before.get(k) != now.get(k)]
    return [SettingChange(k, *fmt.setting(k), fmt.plain(before.get(k)), fmt.plain(now.get(k)))
            for k in sorted(changed, key=lambda k: (fmt.setting_order(k), k))]


def window_overlap(previous, run) -> WindowOverlap | None:
    """The stretch of time both runs' look-back windows cover (None when either window was not recorded)."""
    def window(record):
        stored = record.model_spec.get("window") or record.summary.get("window") or {}
        try:
            return tuple(datetime.fromisoformat(stored[k]) if isinstance(stored.get(k), str) else stored[k]
                         for k in ("since", "until"))
        except (KeyError, TypeError, ValueError):
            return None
    this, that = window(run), window(previous)
    if this is None or that is None or None in this or None in that:
        return None
    since, until = max(this[0], that[0]), min(this[1], that[1])
    days = max((until - since).total_seconds(), 0.0) / 86400
    return WindowOverlap(days, (this[1] - this[0]).total_seconds() / 86400, fmt.when(since) if days else "",
                         fmt.when(until) if days else "")


def model_of(record) -> str:
    return record.model_spec.get("model") or record.summary.get("model") or ""


# --- the summary's verdicts, the measurement ---------------------------------------------------

def _verdicts(review: Review, scope: str, note: str, movement, moved_ids: np.ndarray, moved: int,
              bank: BankSection | None, dif: DifSection | None) -> list[Verdict]:
    spec, fit, summary = review.run.model_spec, review.run.fit_stats, review.run.summary
    counts = summary.get("counts") or {}
    held_back, at_bounds = spec.get("held_back_items") or {}, fit.get("items_at_bounds") or {}
    misfits = spec.get("misfitting_items") or {}
    verdicts = []
    failed = review.run.status in ("failed", "abandoned")
    if failed:  # first: every card below is read as what the run got to before it ended
        verdicts.append(Verdict(f"Run {review.run.status}", "bad", [
            f"The run {'failed' if review.run.status == 'failed' else 'was abandoned'}: "
            f"{review.run.error or 'no reason was recorded'}.",
            "Nothing was written: the current parameters and abilities are those of the runs before it."]))
    fitted = "iterations" in fit  # a run that ended before its fit finished records at most the priors' choice
    if fit and not fitted:
        verdicts.append(Verdict("Fit", "bad", ["Not fitted: the run ended before its fit finished."]))
    elif fit:
        converged = fit.get("converged")
        problems = bool(held_back or at_bounds or misfits) or converged is False
        verdicts.append(Verdict("Fit", "bad" if converged is False else "warn" if problems else "", [
            f"{'Converged' if converged else 'Did not converge'} in {fmt.count(fit.get('iterations'))} EM passes; "
            f"{fmt.count(counts.get('items_estimated'))} of {fmt.count(counts.get('items'))} items estimated.",
            f"{len(held_back):,} held back, {len(at_bounds):,} on a bound, {len(misfits):,} misfitting "
            f"(RMSD above {fmt.plain((spec.get('settings') or {}).get('item_fit_threshold'))})."]))
    constants = review.run.constants
    if constants:
        dropped = spec.get("anchors_dropped") or {}
        skipped = spec.get("anchors_skipped") or {}
        if failed and constants.get("method") in (None, "none"):
            lines = [f"Not linked: the run refused to link on its {len(spec['anchor_table']):,} anchors (see the Link "
                     "section)." if spec.get("anchor_table") else "Not linked: the run ended before it linked."]
        elif review.run.status == "skipped":  # its identity constants are no scale of its own
            lines = ["Not linked: the run was skipped before it linked (see its warnings)."]
        elif constants.get("method") in (None, "none"):
            lines = ["Not linked: no anchors, so this run defines the scale (slope 1, intercept 0)."]
        else:
            lines = [f"{constants.get('method')} on {fmt.count(constants.get('n_anchors'))} anchors; "
                     f"{len(dropped):,} dropped for drift, {len(skipped):,} skipped as malformed.",
                     f"Slope {with_se(constants.get('slope'), constants.get('slope_se'))}, intercept "
                     f"{with_se(constants.get('intercept'), constants.get('intercept_se'))}."]
        if note:
            lines.append(note)
        level = "bad" if failed and constants.get("method") in (None, "none") else "warn" if (
            dropped or skipped or note) else ""
        verdicts.append(Verdict("Link", level, lines))
    if bank is not None:
        verdicts.append(bank.verdict)
    rapid = rapid_guess_verdict(fit.get("rapid_guess"))
    if rapid is not None:
        verdicts.append(rapid)
    if dif is not None:
        verdicts.append(dif_verdict(dif))
    if movement is not None:
        previous = review.previous
        lines = []
        model_before, model_now = model_of(previous), model_of(review.run)
        models_differ = bool(model_before and model_now and model_before != model_now)
        if models_differ:
            lines.append(f"The models differ: the previous run fitted the {model_before}, this one the {model_now}; "
                         "the changes below compare parameters of different models, not items that moved.")
        changes = [c for c in setting_changes(previous, review.run) if c.key != "model"]  # the model: line above
        if changes:
            lines.append("Settings that differ: " + "; ".join(f"{c.variable or c.name} {c.before} \u2192 {c.now}"
                                                              for c in changes) + ".")
        verb = "differ" if models_differ else "moved"  # across models a difference is not a movement
        lines.append(f"{moved:,} of {moved_ids.size:,} items {verb} by more than {MOVEMENT_Z:g} standard errors in b "
                     f"or log a since run {previous.run_id} ({fmt.when(previous.fitted_at)}).")
        overlap = window_overlap(previous, review.run)
        if overlap is not None and overlap.days > 0:
            lines.append(f"The two windows share {overlap.days:,.1f} of this run's {overlap.this_window_days:,.1f} "
                         "days: these z are too small (see the section).")
        verdicts.append(Verdict("Since the previous run", "warn" if moved or len(lines) > 1 else "", lines))
    elif review.previous is not None:  # the section names it: so does the card
        verdicts.append(Verdict("Since the previous run", "", [
            f"The previous run is {review.previous.run_id} ({fmt.when(review.previous.fitted_at)}); this run has no "
            "item parameters on record to compare with it."]))
    elif review.run.status == "succeeded":
        verdicts.append(Verdict("Since the previous run", "", [f"No earlier run of this scope ({scope}) to "
                                                              "compare with."]))
    if review.theta.size:
        verdicts.append(Verdict("Measurement", "", [
            f"{review.theta.size:,} students scored{' (dry run: not written)' if review.run.dry_run else ''}; "
            "empirical reliability "
            f"{fmt.number(stats.empirical_reliability(review.theta, review.theta_se))}; median SE "
            f"{fmt.number(_median(review.theta_se))}."]))
    return verdicts


#: Past this share of the timed answers left out as rapid guesses, the summary's card asks for a look.
RAPID_GUESS_WARN_SHARE = 0.10


def rapid_guess_verdict(record: dict | None) -> Verdict | None:
    """The summary's line on rapid guesses (MIRT_RESPONSE_TIME_COLUMN): how many were left out, and where."""
    if not record:
        return None
    top = ", ".join(f"{t['question_id']} ({t['rapid']:,} of {t['answers']:,})" for t in record.get("top_items", [])[:3])
    lines = [f"{record['rapid']:,} of {record['answers_timed']:,} timed answers ({record['share']:.1%}) left out: "
             f"{record['rule_text']} (MIRT_RAPID_GUESS_RULE={record['rule']}, attempt.{record['column']}).",
             f"On {record['items_with_rapid']:,} items" + (f", most on {top}" if top else "") + "; "
             f"{record['students_with_rapid']:,} students guessed rapidly at least once, "
             f"{record['students_low_effort']:,} with response-time effort below {record['low_effort_rte']:.2f}, "
             f"{record.get('students_left_out', 0):,} left with no answer (not scored)."]
    return Verdict("Rapid guesses", "warn" if record["share"] > RAPID_GUESS_WARN_SHARE else "", lines)


def dif_verdict(dif: DifSection) -> Verdict:
    """The summary's line on the DIF screen: how many items each focal group flagged, the worst first."""
    lines = [f"Screened between the groups of attempt.{dif.group_column} (reference {dif.reference})."]
    lines += [f"{why}" + (f" ({group})" if group else "") for group, why in dif.skipped.items()]
    for group in dif.groups:
        worst = ", ".join(f"{f['question_id']} (ETS {f['ets']})" for f in group.flagged[:5])
        lines.append(f"{group.focal}: {len(group.flagged)} of {group.items_tested:,} items flagged"
                     + (f": {worst}" + (" and more" if len(group.flagged) > 5 else "") if worst else "") + ".")
    return Verdict("DIF", "warn" if any(g.flagged for g in dif.groups) or dif.skipped else "", lines)


def rapid_guess_shares(record: dict) -> list[tuple[str, int]]:
    """The students by their share of rapid guesses among their timed answers: (bin, students), none first."""
    edges, students = record["student_share"]["edges"], record["student_share"]["students"]
    bins = ["none"] + [f"more than {low:.0%}, at most {high:.0%}" for low, high in zip(edges[:-1], edges[1:])]
    return list(zip(bins, students))


def _measurement(review: Review, grid: np.ndarray) -> Measurement | None:
    items = review.items
    if not len(items):
        return None
    counts = review.run.summary.get("counts") or {}
    bank = stats.test_information(items.params, grid)
    per_student = (counts.get("observations") or 0) / max(counts.get("users") or 1, 1)
    share = min(per_student / len(items), 1.0) if per_student else 1.0
    typical = bank * share
    constants = review.run.constants
    mean, sd = float(constants.get("intercept", 0.0)), float(constants.get("slope", 1.0))
    scoring = review.run.fit_stats.get("scoring")
    plausible = review.run.fit_stats.get("plausible_values")
    return Measurement(bank, typical, per_student or float(len(items)), stats.conditional_sem(typical),
                       stats.marginal_reliability(grid, typical, mean, sd), mean, sd,
                       scoring if isinstance(scoring, dict) else {}, plausible if isinstance(plausible, dict) else None)


def _median(values: np.ndarray) -> float | None:
    """The median of the finite values (an infinite ML estimate's standard error is NaN), None without any."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


# --- the bank ---------------------------------------------------------------------------------

def _bank(review: Review, stored) -> BankSection | None:
    """The Bank section of a run whose fit_stats hold ``bank`` (a weekly run or a recalibration of a scope's bank)."""
    if not isinstance(stored, dict):
        return None
    history = review.bank or BankHistory()
    if stored.get("mode") == "recalibration":
        impact = stored.get("impact") or {}
        accept = stored.get("accept") or f"python -m consumer bank accept {review.run.run_id}"
        if review.run.scope and "--scope" not in accept:
            accept += f" --scope {review.run.scope}"
        verdict = Verdict("Bank", "warn" if impact.get("moved_more_than_se") else "", [
            f"Recalibration, linked onto the bank: {fmt.count(impact.get('moved_more_than_se'))} of "
            f"{fmt.count(impact.get('students_scored'))} students would move by more than their standard error "
            f"(mean shift {fmt.signed(impact.get('mean_shift'), 3)}, largest {fmt.number(impact.get('max_abs_shift'))}"
            ").", f"The bank is unchanged until someone accepts it: {accept}"])
        return BankSection("recalibration", verdict, impact=impact, accept=accept)
    flagged, suspended = stored.get("flagged") or {}, stored.get("suspended") or {}
    promoted = stored.get("promoted") or {}
    population = dict(stored.get("population") or {})
    mean = with_se(population.get("mean"), population.get("mean_se"), 3)
    sd = with_se(population.get("sd"), population.get("sd_se"), 3)
    verdict = Verdict("Bank", "warn" if flagged or suspended else "", [
        f"Scale held: {fmt.count(stored.get('fixed_items'))} operational items fixed at their bank values; "
        f"{len(flagged):,} flagged for drift, {len(suspended):,} suspended, {len(promoted):,} promoted.",
        f"This window's students on the bank's scale: mean {mean}, SD {sd}."])
    populations = history.populations
    labels = fmt.run_labels([p.fitted_at for p in populations], [p.run_id for p in populations])
    mean_trend = sd_trend = None
    if len(populations) > 1:
        mean_trend = Trend(labels, np.array([p.mean for p in populations]), np.array([p.mean_se for p in populations]))
        sd_trend = Trend(labels, np.array([p.sd for p in populations]), np.array([p.sd_se for p in populations]))
    rows = [(fmt.when(p.fitted_at), p.run_id[:8], fmt.number(p.mean), fmt.number(p.mean_se), fmt.number(p.sd),
             fmt.number(p.sd_se)) for p in populations]
    items = [_bank_item(int(q), q in suspended, suspended.get(q) or flagged.get(q) or "", history)
             for q in {**flagged, **suspended}]
    items.sort(key=lambda item: (not item.suspended, -_largest_z(item), item.question_id))
    gates = stored.get("gates") or {}
    return BankSection(
        "weekly", verdict, population, mean_trend, sd_trend, rows,
        stored.get("fixed_items"), stored.get("drift_watched"), stored.get("drift_link") or {}, items,
        _promoted(review, promoted),
        [(*GATES.get(k, (fmt.label(k), "")), fmt.plain(gates[k])) for k in sorted(gates, key=_gate_order)],
        len(stored.get("not_promoted") or {}))


def _gate_order(key: str) -> int:
    return list(GATES).index(key) if key in GATES else len(GATES)


def _bank_item(question_id: int, suspended: bool, why: str, history: BankHistory) -> BankItem:
    runs = history.drift.get(question_id, [])
    labels = fmt.run_labels([r.fitted_at for r in runs], [r.run_id for r in runs])
    column = lambda name: np.array([getattr(r, name) for r in runs], float)  # noqa: E731
    flagged = np.array([r.flagged for r in runs], bool)
    status, params = history.items.get(question_id, ("", {}))
    last = runs[-1] if runs else None

    def bank_se(name: str) -> float:  # the bank value's SE, where the bank still holds the value the run compared with
        same = last is not None and fmt.is_number(params.get(name)) and abs(params[name] - getattr(last,
                                                                                               f"{name}_bank")) < 1e-9
        return float(params[f"{name}_se"]) if same and fmt.is_number(params.get(f"{name}_se")) else float("nan")

    return BankItem(question_id, suspended, why, status, runs,
                    Trend(labels, column("b"), column("b_se"), column("b_bank"), flagged),
                    Trend(labels, column("a"), column("a_se"), column("a_bank"), flagged),
                    bank_se("b"), bank_se("a"))


def _largest_z(item: BankItem) -> float:
    if not item.runs:
        return 0.0
    last = item.runs[-1]
    return float(np.nanmax([abs(last.z_b), abs(last.z_a), 0.0]))


def _promoted(review: Review, promoted: dict) -> list[tuple]:
    """The promoted items with what they showed against the gates: this run's answers, b, its SE and RMSD."""
    position = {int(q): k for k, q in enumerate(review.items.question_ids)}
    values = review.items.values
    rows = []
    for q in sorted(promoted, key=int):
        k = position.get(int(q))
        get = (lambda name: float(values[name][k])) if k is not None else (lambda name: float("nan"))
        rows.append((int(q), fmt.count(get("n_responses")), fmt.number(get("b")), fmt.number(get("b_se")),
                     fmt.number(get("rmsd")), promoted[q]))
    return rows
