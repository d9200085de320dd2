"""Week after week on one scale: how far the weekly loop lets the scale drift (issue 17).

A base week and ``--weeks`` weekly cohorts (``consumer.irt.simulate.simulate_weeks``:
the population's mean and SD move every week, each week brings new items,
drift is planted in a few operational items) are written to the platform's
``question`` and ``attempt`` tables in a fresh PostgreSQL database. Then each
week is run through the service's Python API as an operator runs it, by a
loop (``--loop``):

- ``readme``: the README's weekly loop: ``calibrate`` over the week
  (``lookback_days`` 7, ``as_of`` the week's end), then ``tag-anchors``;
- ``tag-once``: ``calibrate`` every week; anchors tagged once, after the base week;
- ``bank``: the bank mode: the base week adopted as the bank, then each week's run holds its scale.

After each week the benchmark reads back what the service says, and sets it
against the truth on the base scale (week 0's population is N(0, 1)):

- the population's mean and SD as the run reported them (for ``readme`` and
  ``tag-once``: the linking constants' intercept and slope, from the run's
  summary: theta_base = slope * theta_week + intercept, and the week's
  population is N(0, 1) on its own scale);
- bias and RMSE of the operational items' (without the planted drifting
  ones) and the week's new items' a and b, read from ``mirt_item_params``
  (bias of log a, the scale's unit; of b, its origin and unit);
- the anchors tagged by the end of the week (what the next week links on):
  how many, and the bias of their reference log a and b in ``question.meta->'irt'``;
- the bias and RMSE of the cohort's thetas, read from ``mirt_ability``;
- whether the run flagged the planted drifting items: flagged of planted
  (and how many of them the run could see: the anchors it linked on, for
  today's loops), plus any other item flagged.

Prints one table per design and loop, and a summary line: the mean error
(reported - truth) of the population's mean and SD over weeks 1..N. The
truth is the cohort's own mean and SD (its true thetas), not the population
it was drawn from, so a week's error holds no sampling error of the draw
(about 0.02 in the mean and SD at 3,000 students); ``--replications``
averages over designs, with seeds seed, seed+1, ...

    python benchmarks/weekly_scale.py                                  # the issue's design, both of today's loops
    python benchmarks/weekly_scale.py --design dense --loop tag-once
    python benchmarks/weekly_scale.py --sd-growth -0.03 --replications 3 --seed 11
    python benchmarks/weekly_scale.py --setting MIRT_ITEM_PRIORS=false

The PostgreSQL server is found as the other benchmarks find it
(``compare.server_url``: ``TEST_DATABASE_URL``, else 127.0.0.1:5432, else the
embedded server); each loop gets a database of its own, dropped afterwards.
On the issue's design a loop takes 10 s on two idle cores (the
first run after an install compiles the numerical kernels first), 25 s on
busy ones.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sqlalchemy as sa  # noqa: E402

from compare import fresh_database, say  # noqa: E402  (a database on the server the other benchmarks use)
from consumer.anchors import AnchorCriteria  # noqa: E402
from consumer.db import platform  # noqa: E402
from consumer.db.engine import create_engine  # noqa: E402
from consumer.db.migrations import migrate  # noqa: E402
from consumer.errors import ConfigError  # noqa: E402
from consumer.irt.simulate import Week, simulate_weeks  # noqa: E402
from consumer.run import SUCCEEDED, CalibrationRequest, calibrate  # noqa: E402
from consumer.scope import resolve  # noqa: E402
from consumer.settings import Settings  # noqa: E402
from consumer import bank_admin  # noqa: E402
from consumer.tagging import tag_anchors  # noqa: E402
from tests.support.platform_data import FIRST_QUESTION_ID  # noqa: E402

#: Designs by name. ``thin`` is issue 17's: about 360 answers per operational item, where
#: MIRT_ITEM_PRIORS=auto turns the priors on; ``dense``, about 920, where it leaves them off.
DESIGNS = {
    "thin": dict(students=3000, items=300, answers=40, new_items=20, new_answers=4, pretest_weeks=2),
    "dense": dict(students=6000, items=300, answers=50, new_items=20, new_answers=4, pretest_weeks=2),
}
#: The end of the base week; week w ends ``w`` weeks later.
BASE_WEEK_END = datetime(2026, 1, 4, 23, 0, tzinfo=timezone.utc)
WEEK = timedelta(days=7)


@dataclass
class WeekReport:
    """What one week's run reported: a loop returns one per week."""

    status: str
    #: Where the week's population sits on the base scale, as the run reports it (NaN when it did not).
    population_mean: float
    population_sd: float
    #: Question ids the run flagged as drifting.
    flagged: set[int] = field(default_factory=set)
    #: Question ids whose drift the run could have seen (the anchors it linked on; a bank's operational items).
    watched: set[int] = field(default_factory=set)
    #: A few words for the table (anchors linked on and dropped, an error).
    note: str = ""
    #: (a, b) by question id on the base scale, for a loop that keeps them outside mirt_item_params;
    #: None: the benchmark reads mirt_item_params.
    item_params: dict[int, tuple[float, float]] | None = None


#: A loop: (engine, settings, week index (0 = the base week), the week's end) -> what the week reported.
Loop = Callable[[sa.Engine, Settings, int, datetime], WeekReport]


def calibrate_week(engine: sa.Engine, settings: Settings, as_of: datetime) -> WeekReport:
    """``calibrate --lookback-days 7 --as-of <the week's end>``, read as the run's summary tells it."""
    summary = calibrate(engine, settings, CalibrationRequest(as_of=as_of, overrides={"lookback_days": 7},
                                                             requested_by="weekly_scale"))
    constants = summary.linking_constants
    dropped = {int(q) for q in summary.counts.get("anchors_dropped", {})}
    if summary.status != SUCCEEDED:
        return WeekReport(summary.status, float("nan"), float("nan"), dropped,
                          note=f"{summary.status}: {(summary.error or '')[:80]}")
    with engine.connect() as conn:
        table = conn.execute(sa.text("SELECT model_spec->'anchor_table' FROM mirt_fit_meta "
                                     "WHERE run_id = CAST(:r AS uuid)"), {"r": summary.run_id}).scalar() or []
    priors = "priors" if summary.fit.get("item_priors", {}).get("used") else "no priors"
    return WeekReport(summary.status, float(constants["intercept"]), float(constants["slope"]), dropped,
                      {int(row["question_id"]) for row in table},
                      note=f"{constants['n_anchors']} anchors, {len(dropped)} dropped; {priors}")


def tag(engine: sa.Engine, settings: Settings) -> None:
    """``tag-anchors`` with its defaults (up to 50 new anchors from the latest run)."""
    tag_anchors(engine, AnchorCriteria(), resolve(settings.scope_key, None))


def readme_loop(engine: sa.Engine, settings: Settings, week: int, as_of: datetime) -> WeekReport:
    """Today's weekly loop (README): calibrate over the week, then tag-anchors."""
    report = calibrate_week(engine, settings, as_of)
    tag(engine, settings)
    return report


def tag_once_loop(engine: sa.Engine, settings: Settings, week: int, as_of: datetime) -> WeekReport:
    """Calibrate every week; anchors tagged once, after the base week, and never again."""
    report = calibrate_week(engine, settings, as_of)
    if week == 0:
        tag(engine, settings)
    return report


def bank_loop(engine: sa.Engine, settings: Settings, week: int, as_of: datetime) -> WeekReport:
    """The bank mode's weekly loop (README): the base week calibrated and adopted as the bank, then each
    week's run holds the bank's scale, calibrates the new items onto it and watches drift."""
    scope = resolve(settings.scope_key, None)
    if week == 0:
        report = calibrate_week(engine, settings, as_of)
        bank_admin.adopt(engine, scope, "weekly_scale")
        return report
    summary = calibrate(engine, settings, CalibrationRequest(as_of=as_of, overrides={"lookback_days": 7},
                                                             requested_by="weekly_scale"))
    if summary.status != SUCCEEDED:
        return WeekReport(summary.status, float("nan"), float("nan"),
                          note=f"{summary.status}: {(summary.error or '')[:80]}")
    bank = summary.fit["bank"]
    with engine.connect() as conn:
        watched = {int(r[0]) for r in conn.execute(sa.text(
            "SELECT item_id FROM mirt_bank_drift WHERE run_id = CAST(:r AS uuid)"), {"r": summary.run_id})}
    return WeekReport(summary.status, float(bank["population"]["mean"]), float(bank["population"]["sd"]),
                      {int(q) for q in bank["flagged"]}, watched,
                      note=f"{bank['fixed_items']} fixed, {len(bank['promoted'])} promoted, "
                           f"{len(bank['suspended'])} suspended")


LOOPS: dict[str, Loop] = {"readme": readme_loop, "tag-once": tag_once_loop, "bank": bank_loop}


# --- the data -----------------------------------------------------------------------------------

def week_end(index: int) -> datetime:
    return BASE_WEEK_END + index * WEEK


def student_ids(week: Week) -> np.ndarray:
    """Each cohort is new students: week w's are ``w<w>-s<i>``."""
    return np.array([f"w{week.index}-s{i:05d}" for i in range(week.theta.size)])


def fill(engine: sa.Engine, weeks: list[Week]) -> int:
    """The platform's tables: every item a question (no anchors yet), each week's answers completed
    evenly over the 7 days before its end; returns the attempts written."""
    n_items = weeks[0].responses.n_items
    written = 0
    with engine.begin() as conn:
        platform.create_platform_tables(conn)
        platform.insert_questions(conn, FIRST_QUESTION_ID + np.arange(n_items), [{"tags": []}] * n_items)
        for week in weeks:
            r = week.responses
            start = platform.as_datetime64(week_end(week.index) - WEEK)
            step = WEEK / timedelta(microseconds=1) / (r.n_obs + 1)
            stamps = start + ((np.arange(r.n_obs) + 1) * step).astype("timedelta64[us]")
            written += platform.insert_attempts(conn, student_ids(week)[r.person_index()],
                                                FIRST_QUESTION_ID + r.item.astype(np.int64),
                                                r.correct.astype(bool), stamps)
    return written


# --- what the service says, against the truth ---------------------------------------------------

def read_items(engine: sa.Engine) -> dict[int, tuple[float, float]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT item_id, (params->>'a')::float8, (params->>'b')::float8 "
                                    "FROM mirt_item_params").all()
    return {int(q): (a, b) for q, a, b in rows}


def read_anchors(engine: sa.Engine) -> dict[int, tuple[float, float]]:
    """The tagged anchors' reference (a, b) from question.meta->'irt', by question id."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT id, (meta->'irt'->>'a')::float8, (meta->'irt'->>'b')::float8 "
                                    "FROM question WHERE meta->'tags' ? 'anchor'").all()
    return {int(q): (a, b) for q, a, b in rows if a is not None and b is not None}


def read_thetas(engine: sa.Engine, week: Week) -> np.ndarray:
    """The cohort's thetas from mirt_ability, NaN for a student the run did not score."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT user_id, theta FROM mirt_ability WHERE user_id LIKE :prefix"),
                            {"prefix": f"w{week.index}-s%"}).all()
    theta = np.full(week.theta.size, np.nan)
    for user, value in rows:
        theta[int(user.split("-s")[1])] = value
    return theta


def item_errors(items: dict[int, tuple[float, float]], week: Week, positions: np.ndarray) -> dict:
    """Bias of log a and b, RMSE of a and b, over the items at ``positions`` the service has parameters of."""
    have = np.array([FIRST_QUESTION_ID + int(j) in items for j in positions], dtype=bool)
    j = positions[have]
    if not j.size:
        return {"n": 0, "log_a_bias": np.nan, "b_bias": np.nan, "a_rmse": np.nan, "b_rmse": np.nan}
    a = np.array([items[FIRST_QUESTION_ID + int(x)][0] for x in j])
    b = np.array([items[FIRST_QUESTION_ID + int(x)][1] for x in j])
    true_a, true_b = week.params.a[j], week.params.b[j]
    return {"n": int(j.size), "log_a_bias": float(np.mean(np.log(a) - np.log(true_a))),
            "b_bias": float(np.mean(b - true_b)), "a_rmse": float(np.sqrt(np.mean((a - true_a) ** 2))),
            "b_rmse": float(np.sqrt(np.mean((b - true_b) ** 2)))}


def measure(engine: sa.Engine, week: Week, report: WeekReport, operational: np.ndarray, planted: np.ndarray) -> dict:
    items = report.item_params if report.item_params is not None else read_items(engine)
    anchors = read_anchors(engine)
    theta = read_thetas(engine, week)
    scored = np.isfinite(theta)
    planted_ids = {FIRST_QUESTION_ID + int(j) for j in planted}
    drifting_now = {FIRST_QUESTION_ID + int(j) for j in week.drifting}
    return {
        "week": week.index, "status": report.status, "note": report.note,
        # The cohort's own mean and SD: what a run could recover, without the draw's sampling error.
        "true_mean": float(week.theta.mean()), "true_sd": float(week.theta.std()),
        "mean": report.population_mean, "sd": report.population_sd,
        "operational": item_errors(items, week, np.setdiff1d(operational, planted)),
        "new": item_errors(items, week, week.new_items),
        # What the next week links on: the reference parameters of the anchors tagged by now.
        "anchors": item_errors(anchors, week, np.array(sorted(anchors), dtype=np.int64) - FIRST_QUESTION_ID),
        "theta_bias": float(np.mean(theta[scored] - week.theta[scored])) if scored.any() else np.nan,
        "theta_rmse": float(np.sqrt(np.mean((theta[scored] - week.theta[scored]) ** 2))) if scored.any() else np.nan,
        "drifting": len(drifting_now), "drift_flagged": len(report.flagged & drifting_now),
        "drift_watched": len(report.watched & drifting_now) if report.watched else None,
        "other_flags": len(report.flagged - planted_ids),
    }


def run_loop(loop: str, weeks: list[Week], settings_env: dict[str, str], n_operational: int,
             label: str) -> list[dict]:
    """One loop over every week, in a database of its own; a row of measurements per week."""
    planted = weeks[-1].drifting if len(weeks) > 1 else np.arange(0)
    operational = np.arange(n_operational)
    rows = []
    with fresh_database("weekly_bench") as (url, admin):
        started = time.perf_counter()
        attempts = fill(admin, weeks)
        settings = Settings.load({**settings_env, "DATABASE_URL": url.render_as_string(hide_password=False)})
        engine = create_engine(settings)
        try:
            migrate(engine)
            say(f"{label}: {attempts:,} attempts written in {time.perf_counter() - started:.0f} s; loop {loop}")
            for week in weeks:
                started = time.perf_counter()
                report = LOOPS[loop](engine, settings, week.index, week_end(week.index))
                rows.append(measure(engine, week, report, operational, planted))
                say(f"{label}: week {week.index} {report.status} in {time.perf_counter() - started:.1f} s: "
                    f"population N({report.population_mean:.3f}, {report.population_sd:.3f}^2), truth "
                    f"N({week.mean:.2f}, {week.sd:.2f}^2); {report.note}")
        finally:
            engine.dispose()
    return rows


# --- the table ----------------------------------------------------------------------------------

def mean_over(replications: list[list[dict]], week: int, *path: str) -> float:
    values = []
    for rows in replications:
        value = rows[week]
        for key in path:
            value = value[key]
        values.append(np.nan if value is None else value)
    values = np.array(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def table(replications: list[list[dict]]) -> str:
    """One line per week: means over the replications (flags summed)."""
    head = ("| week | mean: truth, reported | SD: truth, reported | operational log a bias, b bias, RMSE a, b "
            "| new items log a bias, b bias, RMSE a, b | anchors tagged after the week: n, reference log a bias, b bias "
            "| theta bias, RMSE | drift flagged (watched) / planted "
            "| other items flagged | run |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for w in range(len(replications[0])):
        m = lambda *path: mean_over(replications, w, *path)  # noqa: E731
        cells = [str(w), f"{m('true_mean'):.2f}, {m('mean'):.3f}", f"{m('true_sd'):.2f}, {m('sd'):.3f}"]
        for group in ("operational", "new"):
            if m(group, "n") > 0:
                cells.append(f"{m(group, 'log_a_bias'):+.3f}, {m(group, 'b_bias'):+.3f}, "
                             f"{m(group, 'a_rmse'):.3f}, {m(group, 'b_rmse'):.3f}")
            else:
                cells.append("-")
        cells.append(f"{m('anchors', 'n'):.0f}: {m('anchors', 'log_a_bias'):+.3f}, {m('anchors', 'b_bias'):+.3f}"
                     if m("anchors", "n") > 0 else "-")
        cells.append(f"{m('theta_bias'):+.3f}, {m('theta_rmse'):.3f}")
        planted = sum(rows[w]["drifting"] for rows in replications)
        flagged = sum(rows[w]["drift_flagged"] for rows in replications)
        watched = [rows[w]["drift_watched"] for rows in replications]
        seen = "" if any(v is None for v in watched) else f" ({sum(watched)})"
        cells.append(f"{flagged}{seen} / {planted}" if planted else "-")
        cells.append(str(sum(rows[w]["other_flags"] for rows in replications)))
        notes = {rows[w]["note"] for rows in replications}
        cells.append(replications[0][w]["note"] + ("" if len(notes) == 1 else " (the first replication)"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_line(replications: list[list[dict]]) -> str:
    """Mean error (reported - truth) of the population's mean and SD over weeks 1..N, and the last week's."""
    err_mean = np.array([[r["mean"] - r["true_mean"] for r in rows[1:]] for rows in replications])
    err_sd = np.array([[r["sd"] - r["true_sd"] for r in rows[1:]] for rows in replications])
    last = len(replications[0]) - 1
    planted = sum(rows[w]["drifting"] for rows in replications for w in range(last + 1))
    flagged = sum(rows[w]["drift_flagged"] for rows in replications for w in range(last + 1))
    return (f"weeks 1-{last}: mean error of the reported mean {np.nanmean(err_mean):+.3f} "
            f"(mean |error| {np.nanmean(np.abs(err_mean)):.3f}), of the reported SD {np.nanmean(err_sd):+.3f} "
            f"(mean |error| {np.nanmean(np.abs(err_sd)):.3f}); week {last}: mean "
            f"{mean_over(replications, last, 'mean'):.3f} (truth {replications[0][last]['true_mean']:.2f}), SD "
            f"{mean_over(replications, last, 'sd'):.3f} (truth {replications[0][last]['true_sd']:.2f}), "
            f"operational log a bias {mean_over(replications, last, 'operational', 'log_a_bias'):+.3f}; "
            f"planted drift flagged in {flagged} of {planted} item-weeks")


# --- the command line ---------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--loop", nargs="+", choices=list(LOOPS), default=["readme", "tag-once"],
                        help="the weekly loops to run, each on its own database")
    parser.add_argument("--design", nargs="+", choices=list(DESIGNS), default=["thin"],
                        help="design presets (thin: issue 17's, ~360 answers per item, priors on; dense: ~920)")
    parser.add_argument("--students", type=int, help="students per week (overrides the preset)")
    parser.add_argument("--items", type=int, help="operational items in the bank (overrides the preset)")
    parser.add_argument("--answers", type=int, help="answers per student, new items included (overrides the preset)")
    parser.add_argument("--new-items", type=int, help="new items a week (overrides the preset)")
    parser.add_argument("--new-answers", type=int, help="of a student's answers, on the week's new items")
    parser.add_argument("--pretest-weeks", type=int, help="weeks each batch of new items is answered in")
    parser.add_argument("--weeks", type=int, default=6, help="weekly cohorts after the base week")
    parser.add_argument("--mean-growth", type=float, default=0.08, help="the population mean's change a week")
    parser.add_argument("--sd-growth", type=float, default=0.03, help="the population SD's change a week "
                                                                       "(negative: it shrinks)")
    parser.add_argument("--drifting", type=int, default=3, help="operational items given b drift")
    parser.add_argument("--drift-b", type=float, default=0.5, help="their b shift")
    parser.add_argument("--drift-from", type=int, default=3, help="the first week of the drift")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--replications", type=int, default=1, help="simulations per design (seed, seed+1, ...)")
    parser.add_argument("--setting", action="append", default=[], metavar="MIRT_X=VALUE",
                        help="a service setting for every run (the environment's MIRT_* are not read)")
    parser.add_argument("--log-level", default="error", choices=["debug", "info", "warning", "error"],
                        help="the service's log lines shown on stderr")
    args = parser.parse_args(argv)
    for name in ("students", "items", "answers", "new_items", "weeks", "replications"):
        value = getattr(args, name)
        least = 0 if name == "new_items" else 1
        if value is not None and value < least:
            parser.error(f"--{name.replace('_', '-')} must be at least {least}")
    if any("=" not in s for s in args.setting):
        parser.error("--setting takes NAME=VALUE, e.g. MIRT_ITEM_PRIORS=false")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(message)s")
    settings_env = dict(s.split("=", 1) for s in args.setting)
    try:  # a bad setting is said before any database is filled
        Settings.load(settings_env)
    except ConfigError as problem:
        raise SystemExit(f"weekly_scale.py: --setting: {problem}")
    overrides = {k: getattr(args, k) for k in ("students", "items", "answers", "new_items", "new_answers",
                                               "pretest_weeks")
                 if getattr(args, k) is not None}
    for name in args.design:
        design = {**DESIGNS[name], **overrides}
        results = {loop: [] for loop in args.loop}
        for replication in range(args.replications):
            try:
                weeks = simulate_weeks(**design, weeks=args.weeks, mean_growth=args.mean_growth,
                                       sd_growth=args.sd_growth, drifting=args.drifting, drift_b=args.drift_b,
                                       drift_from=args.drift_from, seed=args.seed + replication)
            except ValueError as problem:
                raise SystemExit(f"weekly_scale.py: {problem}")
            for loop in [loop for loop, done in results.items() if isinstance(done, list)]:
                try:
                    results[loop].append(run_loop(loop, weeks, settings_env, design["items"],
                                                  f"{name} #{replication + 1} {loop}"))
                except NotImplementedError as missing:
                    say(str(missing))
                    results[loop] = str(missing)
        per_item = design["students"] * (design["answers"] - design["new_answers"]) / design["items"]
        per_new = design["students"] * design["new_answers"] / max(design["new_items"] * design["pretest_weeks"], 1)
        print(f"\n### design {name}: {design['students']} students a week x {design['answers']} answers "
              f"({design['new_answers']} on the new items, each answered {design['pretest_weeks']} weeks), "
              f"{design['items']} "
              f"operational items: about {per_item:.0f} answers per operational item and {per_new:.0f} per new "
              f"item a week; the population's mean {args.mean_growth:+g} and SD {args.sd_growth:+g} a week; "
              f"{args.drifting} items' b {args.drift_b:+g} from week {args.drift_from}; seed {args.seed}"
              f"{f', {args.replications} replications (means)' if args.replications > 1 else ''}"
              f"{'; settings ' + ' '.join(args.setting) if args.setting else ''}\n")
        for loop, replications in results.items():
            print(f"loop `{loop}`\n")
            if isinstance(replications, str):  # a loop not built yet
                print(f"not run: {replications}\n")
                continue
            print(table(replications))
            print(f"\n{summary_line(replications)}\n", flush=True)


if __name__ == "__main__":
    main()
