"""The run review page (``python -m consumer report RUN_ID``): what it shows of real runs, read from PostgreSQL."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

import sqlalchemy as sa

from consumer.irt.simulate import simulate
from consumer.review import load_review, render
from consumer.run import CalibrationRequest, calibrate
from consumer.settings import Settings

from tests.support.cli import cli
from tests.support.platform_data import AS_OF, FIRST_QUESTION_ID, load_simulation
from tests.support.runs import REQUEST, plant_drift

ANCHORS = list(range(0, 100, 4))


def fill(engine, seed: int = 8) -> None:
    with engine.begin() as conn:
        load_simulation(conn, simulate(4000, 100, 40, seed=seed), anchors=ANCHORS, old_scale=(1.1, 0.4))


def page_of(engine, run_id: str) -> str:
    return render(load_review(engine, run_id))


def section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start:page.index("</section>", start)]


def item_rows(page: str) -> dict[int, list[str]]:
    """The item table's rows by item id, each as its cells' text."""
    table = page[page.index('id="item-table"'):]
    table = table[table.index("<tbody>"):table.index("</tbody>")]
    rows = {}
    for row in table.split("<tr>")[1:]:
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.split(r"<td[^>]*>", row)[1:]]
        rows[int(cells[0])] = cells
    return rows


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


def test_report_of_an_unknown_run_says_so(database_url):
    result = cli("report", "00000000-0000-0000-0000-00000000beef", env={"DATABASE_URL": database_url})
    assert result.returncode == 1 and "no calibration run 00000000-0000-0000-0000-00000000beef" in result.stderr
