"""The run review page (``python -m consumer report RUN_ID``): what it shows of real runs, read from PostgreSQL."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import sqlalchemy as sa

from consumer.run import CalibrationRequest, calibrate
from consumer.settings import Settings

from tests.support.bank_data import (DRIFTING, N_NEW, N_OPERATIONAL, SETTINGS, adopt_base_week, drifted, put_week,
                                     week_request)
from tests.support.cli import cli
from tests.support.platform_data import AS_OF, FIRST_QUESTION_ID, question_ids
from tests.support.review_pages import ANCHORS, fill, item_rows, page_of, rows_of, section
from tests.support.runs import REQUEST, plant_drift

def test_review_of_a_linked_run_with_a_dropped_anchor(database_url, tmp_path):
    engine = sa.create_engine(database_url)
    from consumer.db.migrations import migrate
    migrate(engine)
    fill(engine)
    with engine.begin() as conn:
        plant_drift(conn, {8: 1.6})
    summary = calibrate(engine, Settings.load({}), REQUEST)
    engine.dispose()
    assert summary.status == "succeeded" and summary.counts["anchors_dropped"]

    out = tmp_path / "review.html"
    result = cli("report", summary.run_id, "--output", str(out), env={"DATABASE_URL": database_url})

    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # It stands alone: nothing to fetch (namespace URIs inside the SVGs are names, not links), scripts inline.
    assert "<link" not in page and " src=" not in page and not re.search(r'(href|url)\(?=?"?https?:', page)
    assert page.count("<script") == page.count("<script>") == 2  # one line in the head, the table's at the end
    # Written for a reader: no raw JSON, no Python reprs, no scientific notation, labels in words.
    text = html.unescape(re.sub(r"<(style|script)>.*?</\1>|<[^>]+>", " ", page, flags=re.S))
    assert not re.search(r"""\{\s*["'}]|\[\s*["'\]]|["']\s*:\s""", text), "raw JSON or a Python repr"
    assert not re.search(r">(True|False|None)<", page)
    without_ids = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "", text)
    assert not re.search(r"\b\d(\.\d+)?e[+-]?\d+\b", without_ids), "scientific notation"
    assert "_" not in re.sub(r"<[^>]+>|MIRT_\w+|item-\w+", "", section(page, "run"))
    fit = summary.fit
    assert f"<td>{fit['loglik']:,.2f}</td>" in page and f"<td>{fit['aic']:,.2f}</td>" in page

    head = page[:page.index("</h1>") + 400]
    assert f"Calibration run {summary.run_id}: review" in head and "succeeded" in head
    assert "scope: whole bank" in head and "requested by tests, request req-1" in head
    run = section(page, "run")
    assert re.search(r"<th scope=row>started</th><td>2\d{3}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>", run)
    assert re.search(r"<th scope=row>finished</th><td>2\d{3}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>", run)
    for step in ("load the answers", "fit (EM)", "standard errors and item fit", "link to the anchors' scale",
                 "score the students", "write the results", "whole run"):
        assert re.search(rf"<td>{re.escape(html.escape(step))}<td class=n>\d+\.\d\d s", run), step
    assert "<td>MIRT_LOOKBACK_DAYS<td>60" in run and "<td class=n>160,000" in run

    link = section(page, "link")
    slope = summary.linking_constants["slope"]
    assert re.search(rf"<td>slope A<td class=n>{slope:.4f}<td class=n>0\.0\d{{3}}", link)
    dropped = FIRST_QUESTION_ID + 8
    drift_row = re.search(rf"<tr><td class=n>{dropped}<td>2PL(<td class=n>[^<]*){{9}}<td>dropped: difficulty drifted",
                          link)
    assert drift_row, "the dropped anchor's row in the drift table"
    z_b = float(re.findall(r"<td class=n>([^<]*)", drift_row.group(0))[-1])
    assert z_b < -3  # its reference was moved up by 1.6 logits, so the new b sits far below it
    kept_z = [float(z) for z in re.findall(r"<td class=n>([^<]*)<td>kept", link)]
    assert len(kept_z) == len(ANCHORS) - 1 and max(abs(z) for z in kept_z) < 3
    tcc = re.search(r"linked new parameters minus reference: at most ([\d.]+) points apart \(out of 24\); "
                    r"before linking, (\d+\.\d+)", link)
    assert tcc and float(tcc.group(1)) < 0.2 < float(tcc.group(2))  # linking brings the anchors' curves together
    assert "dropped (drift)" in link

    items = item_rows(page)
    assert len(items) == summary.counts["items"]
    assert items[dropped][1] == "anchor dropped" and items[FIRST_QUESTION_ID + 4][1] == "anchor"
    measurement = section(page, "measurement")
    reliability = float(re.search(r"empirical reliability of the EAP scores</th><td>([\d.]+)", measurement).group(1))
    assert 0.8 < reliability < 0.95  # 40 answers per student
    assert "Wright map" in measurement and "Conditional standard error" in measurement
    assert "No earlier succeeded run of this scope (whole bank)" in section(page, "changes")


def test_review_compares_with_the_previous_run_of_the_same_scope(engine):
    fill(engine)
    first = calibrate(engine, Settings.load({}), CalibrationRequest(request_id="week-1", as_of=AS_OF))
    moved = FIRST_QUESTION_ID + 13
    with engine.begin() as conn:  # most of the item's wrong answers turn right: it became much easier
        conn.execute(sa.text("UPDATE attempt SET correct = true WHERE question_id = :q AND NOT correct "
                             "AND mod(abs(hashtext(student_id::text)), 10) < 7"), {"q": moved})
    dry = calibrate(engine, Settings.load({}), CalibrationRequest(request_id="dry", as_of=AS_OF, dry_run=True))
    second = calibrate(engine, Settings.load({}), CalibrationRequest(request_id="week-2", as_of=AS_OF))
    assert first.status == dry.status == second.status == "succeeded"

    page = page_of(engine, second.run_id)

    changes = section(page, "changes")
    assert f"<th scope=row>previous run</th><td>{first.run_id}</td>" in changes  # not the dry run in between
    assert "100 items in both runs; 0 new in this run" in changes
    listed = re.findall(r"<tr><td class=n>(\d+)<td class=n>([^<]*)<td class=n>([^<]*)<td class=n>([^<]*)"
                        r"<td class=n>([^<]*)", changes[changes.index("Items that moved"):])
    assert listed and int(listed[0][0]) == moved, "the most moved item comes first"
    _, b_before, b_now, change, z = listed[0]
    assert float(b_now) < float(b_before) - 0.5 and float(change) < -0.5 and float(z) < -3
    assert "moved" in item_rows(page)[moved][1]
    assert "The last 2 runs of this scope" in changes and "Ability distribution" in changes

    # Scopes: a run of another item bank is not this one's previous run.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE mirt_fit_meta SET scope = 'physics' WHERE run_id = CAST(:r AS uuid)"),
                     {"r": first.run_id})
        conn.execute(sa.text("UPDATE mirt_fit_meta SET scope = 'math', "
                             "model_spec = model_spec || CAST(:scope AS jsonb) WHERE run_id = CAST(:r AS uuid)"),
                     {"r": second.run_id, "scope": json.dumps({"scope": {"key": "subject", "value": "math"}})})
    page = page_of(engine, second.run_id)
    assert "scope: math (question.meta key subject)" in page[:page.index("</h1>") + 400]
    assert "No earlier succeeded run of this scope (math (question.meta key subject))" in section(page, "changes")


def test_review_of_a_1pl_run_against_2pl_anchors_says_so_and_shows_the_misfit_evidence(engine):
    fill(engine)
    settings = Settings.load({}).with_overrides(model="1PL", item_fit_threshold=0.05)
    summary = calibrate(engine, settings, REQUEST)  # the data are 2PL: a 1PL misfits items with steep or flat slopes
    misfits = summary.counts["misfitting_items"]
    assert summary.status == "succeeded" and len(misfits) >= 5

    page = page_of(engine, summary.run_id)

    note = html.escape("The anchors' reference parameters come from a 2PL calibration; this run fitted the 1PL.")
    assert note in section(page, "summary") and note in section(page, "link")
    assert "Every item shares one discrimination" in section(page, "measurement")
    misfit = section(page, "misfit")
    captions = re.findall(r"<figcaption>Item (\d+): RMSD ([\d.]+);", misfit)
    assert len(captions) == min(len(misfits), 50)
    assert [float(r) for _, r in captions] == sorted((float(r) for _, r in captions), reverse=True)
    items = item_rows(page)
    rmsd_column = 7
    for question_id, rmsd in captions:  # each plot is of the item it names
        assert question_id in misfits and items[int(question_id)][rmsd_column] == rmsd
    assert misfit.count('fill="#c0392b" fill-opacity="0.75"') > 10 * len(captions)  # observed proportions drawn

    # A run from before the curves were stored, with an item held back and one on a bound, still reads.
    held, why = FIRST_QUESTION_ID + 500, "not identified: its slope falls to the lower bound (answers do not rise)"
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE mirt_fit_meta SET fit_stats = (fit_stats - 'misfit_curves') || CAST(:bounds AS jsonb), "
            "model_spec = model_spec || CAST(:held AS jsonb) WHERE run_id = CAST(:r AS uuid)"),
            {"r": summary.run_id,
             "bounds": json.dumps({"items_at_bounds": {str(FIRST_QUESTION_ID + 98): "a at its lower bound 0.02"}}),
             "held": json.dumps({"held_back_items": {str(held): why}, "excluded_items": {str(held): why}})})
    page = page_of(engine, summary.run_id)
    assert "The observed proportions behind these RMSDs were not recorded for this run." in section(page, "misfit")
    fit = section(page, "fit")
    assert "Items held back (1)" in fit and f"<td class=n>{held}<td>not identified: its slope falls" in fit
    assert f"<td class=n>{FIRST_QUESTION_ID + 98}<td>a at its lower bound 0.02" in fit
    assert item_rows(page)[held][1].startswith("held back: not identified")


def test_review_of_a_skipped_run_says_what_there_is_not(engine):
    fill(engine)
    summary = calibrate(engine, Settings.load({}), CalibrationRequest(as_of=AS_OF - timedelta(days=400)))
    assert summary.status == "skipped"

    page = page_of(engine, summary.run_id)

    assert "skipped" in page[:page.index("</h1>") + 400]
    assert "The run recorded no fit" in section(page, "fit")
    assert "No item parameters were written by this run" in section(page, "measurement")
    assert item_rows(page) == {}
    # It never got to the anchors: no card or section reads its identity constants as a scale of its own.
    assert "defines the scale" not in page and "the run was skipped before it linked" in section(page, "link").lower()


def test_the_page_of_a_skipped_run_after_a_real_one_names_the_previous_run_and_compares_nothing(engine):
    fill(engine)
    real = calibrate(engine, Settings.load({}), CalibrationRequest(request_id="real", as_of=AS_OF))
    skipped = calibrate(engine, Settings.load({}), CalibrationRequest(as_of=AS_OF - timedelta(days=400)))
    assert (real.status, skipped.status) == ("succeeded", "skipped")

    page = page_of(engine, skipped.run_id)

    summary = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", section(page, "summary"))))
    assert f"The previous run is {real.run_id}" in summary and "no item parameters on record" in summary
    assert "Not linked: the run was skipped before it linked" in summary and "defines the scale" not in page
    changes = section(page, "changes")
    assert real.run_id in changes and "0 items in both runs" in changes
    assert "include the change of scale" not in changes  # nothing is compared, so no caveat about comparing


def test_report_of_an_unknown_run_says_so(database_url):
    result = cli("report", "00000000-0000-0000-0000-00000000beef", env={"DATABASE_URL": database_url})
    assert result.returncode == 1 and "no calibration run 00000000-0000-0000-0000-00000000beef" in result.stderr


def test_review_of_weekly_bank_runs_shows_the_population_the_drifting_item_and_the_promotions(engine):
    base, params = adopt_base_week(engine)
    with engine.begin() as conn:
        for week, (mean, sd) in ((1, (0.5, 1.2)), (2, (0.6, 1.25))):
            put_week(conn, week, drifted(params), mean, sd, n_items=N_OPERATIONAL + N_NEW)
    first = calibrate(engine, SETTINGS, week_request(1))
    second = calibrate(engine, SETTINGS, week_request(2))
    assert first.status == second.status == "succeeded", (first.error, second.error)
    drifting = int(question_ids(N_OPERATIONAL)[DRIFTING])
    bank = second.fit["bank"]
    assert str(drifting) in bank["suspended"] and bank["promoted"]

    page = page_of(engine, second.run_id)

    assert '<a href="#bank">Bank</a>' in page
    shown = section(page, "bank")
    verdict = (f"Scale held: {bank['fixed_items']} operational items fixed at their bank values; "
               f"{len(bank['flagged'])} flagged for drift, {len(bank['suspended'])} suspended, "
               f"{len(bank['promoted'])} promoted.")
    assert verdict in shown and verdict in section(page, "summary")
    population = bank["population"]
    assert (f"<th scope=row>mean</th><td>{population['mean']:.3f} (SE {population['mean_se']:.3f})</td>" in shown)
    assert (f"<th scope=row>standard deviation</th><td>{population['sd']:.3f} (SE {population['sd_se']:.3f})</td>"
            in shown)
    # The trend: both weekly runs, oldest first (the base run, before the bank, is not one of them).
    assert "Over the last 2 weekly runs of this bank" in shown
    table = shown[shown.index("Over the last 2 weekly runs"):shown.index("<figure")]
    trend = re.findall(r"<td>[^<]+<td>([0-9a-f]{8})<td class=n>([^<]+)<td class=n>([^<]+)<td class=n>([^<]+)", table)
    week_1 = first.fit["bank"]["population"]
    assert trend == [(first.run_id[:8], f"{week_1['mean']:.3f}", f"{week_1['mean_se']:.3f}", f"{week_1['sd']:.3f}"),
                     (second.run_id[:8], f"{population['mean']:.3f}", f"{population['mean_se']:.3f}",
                      f"{population['sd']:.3f}")]
    assert "Population mean over the last runs" in shown and "Population SD over the last runs" in shown
    # The suspended item, run by run: its free b on the bank's scale, with its SE, against the bank value.
    item = shown[shown.index(f"<h4>Item {drifting}: suspended</h4>"):]
    item = item[:item.index("</div>")]
    watched = rows_of(engine, "SELECT run_id::text, b, b_se, b_bank, flagged FROM mirt_bank_drift WHERE item_id = :i "
                              "ORDER BY fitted_at", i=drifting)
    assert [r[0] for r in watched] == [first.run_id, second.run_id] and all(r[4] for r in watched)
    for run_id, b, b_se, b_bank, _ in watched:
        assert re.search(rf"<td>{run_id[:8]}<td class=n>{b:.3f} \(SE {b_se:.3f}\)<td class=n>{b_bank:.3f}<", item)
        assert b > b_bank + 0.5  # it became a logit harder
    assert f"Item {drifting}: free b against its bank value" in item and "drift flagged in 2 of its last 3 runs" in item
    assert "suspended" in item_rows(page)[drifting][1]
    # Promotions with what they showed, and the gates.
    promoted = re.findall(r"<tr><td class=n>(\d+)<td class=n>[\d,]+<td class=n>[-\d.]+<td class=n>[\d.]+"
                          r"<td class=n>[\d.]+<td>\d+ answers, SE of b", shown)
    assert sorted(promoted) == sorted(bank["promoted"])
    assert "<td>MIRT_PROMOTION_MIN_ANSWERS<td class=n>200" in shown and "<td>MIRT_PROMOTION_RUNS<td class=n>2" in shown

    first_page = page_of(engine, first.run_id)
    assert "No earlier weekly run of this bank: the trend starts here." in section(first_page, "bank")
    base_page = page_of(engine, base.run_id)  # the run the bank was adopted from was not a bank run
    assert '<section id="bank">' not in base_page and 'href="#bank"' not in base_page


def test_review_of_a_recalibration_shows_its_impact_and_the_command_that_accepts_it(engine):
    _, params = adopt_base_week(engine)
    with engine.begin() as conn:
        put_week(conn, 1, params, 0.4, 1.1, n_items=N_OPERATIONAL)
    summary = calibrate(engine, SETTINGS, week_request(1, mode="recalibration"))
    assert summary.status == "succeeded", summary.error
    impact = summary.fit["bank"]["impact"]

    shown = section(page_of(engine, summary.run_id), "bank")

    assert (f"{impact['moved_more_than_se']:,} of {impact['students_scored']:,} students would move by more than "
            "their standard error") in shown
    assert f"python -m consumer bank accept {summary.run_id}" in shown


def test_report_finds_a_run_by_the_start_of_its_id_or_as_the_latest_and_prints_where_it_wrote(engine, database_url,
                                                                                               tmp_path):
    fill(engine)
    first = calibrate(engine, SETTINGS, REQUEST)
    second = calibrate(engine, SETTINGS, CalibrationRequest(request_id="second", as_of=REQUEST.as_of))
    env = {"DATABASE_URL": database_url}

    by_start = cli("report", first.run_id[:8], env=env, cwd=tmp_path)
    latest = cli("report", "--latest", "-o", "latest.html", env=env, cwd=tmp_path)
    neither = cli("report", env=env, cwd=tmp_path)

    assert by_start.returncode == 0, by_start.stderr
    assert by_start.stdout.strip() == str(tmp_path / f"calibration-report-{first.run_id}.html")
    assert latest.returncode == 0 and latest.stdout.strip() == str(tmp_path / "latest.html")
    assert second.run_id in (tmp_path / "latest.html").read_text()
    assert neither.returncode == 2 and "RUN_ID or --latest" in neither.stderr
    unknown = cli("report", "ffffffff", env=env, cwd=tmp_path)
    assert unknown.returncode == 1 and "python -m consumer runs" in unknown.stderr
