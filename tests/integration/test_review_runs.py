"""The review page of each kind of run (dry, after a change of model or settings): each card agrees with its section."""

from __future__ import annotations

import html
import re

import numpy as np
import sqlalchemy as sa

from consumer.run import CalibrationRequest, calibrate
from consumer.settings import Settings

from tests.support.platform_data import AS_OF
from tests.support.review_pages import ANCHORS, fill, item_rows, page_of, rows_of, section


def card(page: str, title: str) -> str:
    """The summary card titled ``title``, as its text."""
    summary = section(page, "summary")
    start = summary.index(f"<h3>{html.escape(title)}</h3>")
    return html.unescape(re.sub(r"<[^>]+>", " ", summary[start:summary.index("</div>", start)]))


def words(markup: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", markup)))


def test_a_dry_run_shows_what_a_real_run_would_marked_as_not_written(engine):
    fill(engine)
    settings = Settings.load({}).with_overrides(model="1PL", item_fit_threshold=0.05)  # 2PL data: misfits
    week_1 = calibrate(engine, settings, CalibrationRequest(request_id="week-1", as_of=AS_OF))
    dry = calibrate(engine, settings, CalibrationRequest(request_id="dry", as_of=AS_OF, dry_run=True))
    assert week_1.status == dry.status == "succeeded" and dry.counts["misfitting_items"]

    # A dry run writes no parameters: the current ones are still all the first run's.
    current = rows_of(engine, "SELECT DISTINCT run_id::text FROM mirt_item_params UNION ALL "
                              "SELECT DISTINCT run_id::text FROM mirt_ability")
    assert {r[0] for r in current} == {week_1.run_id}
    assert dry.rows_upserted == {"items": 0, "abilities": 0}

    page = page_of(engine, dry.run_id)

    assert "dry run: nothing written" in page[:page.index("</h1>") + 400]
    since = card(page, "Since the previous run")
    assert week_1.run_id in since and "No earlier run" not in since
    assert f"<th scope=row>previous run</th><td>{week_1.run_id}</td>" in section(page, "changes")
    assert "100 items in both runs; 0 new in this run; 0 written by the previous run" in section(page, "changes")

    assert "students scored (dry run: not written)" in card(page, "Measurement")
    measurement = section(page, "measurement")
    assert "Wright map" in measurement and "estimated items (dry run: not written)" in measurement

    items = item_rows(page)
    assert len(items) == dry.counts["items"] == 100
    assert "estimated (dry run: not written)" in words(section(page, "items"))

    misfit = section(page, "misfit")
    assert "not recorded for this run" not in misfit
    assert "PISA 2015 flagged items above 0.12; this run's threshold is 0.05" in words(misfit)
    assert len(re.findall(r"<figcaption>Item (\d+): RMSD", misfit)) == min(len(dry.counts["misfitting_items"]), 50)

    # The drift table shows the z the screen decided by: shifts divided by their standard errors.
    link = section(page, "link")
    assert "shift divided by its standard error" in link and "raw shifts" not in link
    kept = re.findall(r"<td class=n>([-+\d.]+)<td class=n>([\d.]+)<td class=n>([-+\d.]+)<td>kept", link)
    assert len(kept) >= 15
    for shift, se, z in kept:
        assert abs(float(z)) <= 3 or abs(float(shift)) < 0.3, (shift, se, z)  # the screen's threshold and size


def test_after_a_change_of_model_and_settings_the_page_says_what_differs_and_that_shared_answers_shrink_z(engine):
    fill(engine)
    before = calibrate(engine, Settings.load({}), CalibrationRequest(request_id="2pl", as_of=AS_OF))
    settings = Settings.load({}).with_overrides(model="1PL", drift_threshold=4.0)
    after = calibrate(engine, settings, CalibrationRequest(request_id="1pl", as_of=AS_OF))
    assert before.status == after.status == "succeeded"

    page = page_of(engine, after.run_id)

    since = re.sub(r"\s+", " ", card(page, "Since the previous run"))
    assert "The models differ: the previous run fitted the 2PL, this one the 1PL" in since
    assert "Settings that differ: MIRT_DRIFT_THRESHOLD 3 \u2192 4." in since
    assert "MIRT_MODEL" not in since  # said once, in words
    assert re.search(r"\d+ of 100 items differ by more than 3 standard errors", since) and "moved by" not in since
    assert re.search(r"The two windows share 60\.0 of this run's 60\.0 days: these z are too small", since)
    changes = words(section(page, "changes"))
    assert "The models differ: the previous run fitted the 2PL, this one the 1PL" in changes
    assert "Settings that differ (2)" in changes
    assert re.search(r"MIRT_MODEL 2PL 1PL", changes) and re.search(r"MIRT_DRIFT_THRESHOLD 3 4", changes)
    assert re.search(r"shared \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: 60\.0 days, "
                     r"100% of this run's window", changes)
    assert "as if the runs were independent: it is too small" in changes


def test_the_page_of_a_first_run_words_counts_citations_and_the_csv_for_what_they_are(engine):
    fill(engine)
    run = calibrate(engine, Settings.load({}), CalibrationRequest(request_id="first", as_of=AS_OF))
    assert run.status == "succeeded"

    page = page_of(engine, run.run_id)

    changes = section(page, "changes")
    assert "The last run of this scope" in changes and "last 1 runs" not in changes
    # The card and the section agree: there is nothing to compare with.
    assert "No earlier run of this scope (whole bank) to compare with." in card(page, "Since the previous run")
    assert "nothing to compare with" in changes and "previous run</th>" not in changes
    measurement = words(section(page, "measurement"))
    assert "a student answering 40 items" in measurement and "40.0" not in measurement  # 40 answers each
    assert "above 0.12 (MIRT_ITEM_FIT_THRESHOLD) an item misfits, as in PISA 2015 (0.12)" in words(
        section(page, "misfit"))
    # Without JavaScript nothing can be clicked: the line that says so is shown by the script only.
    assert re.search(r'<p id="item-howto" class=quiet hidden>Click a heading', page)
    assert "Click a heading" not in re.sub(r'<p id="item-howto".*?</p>', "", page)
    # The CSV's numbers are the stored ones, at full precision.
    exact = html.unescape(re.search(r'data-exact="([^"]*)"', page).group(1))
    stored = {r[0]: r[1:] for r in rows_of(engine, "SELECT item_id, (params->>'b')::float8, "
                                                   "(params->>'n_responses')::int FROM mirt_item_params_history "
                                                   "WHERE run_id = CAST(:r AS uuid)", r=run.run_id)}
    by_id = {int(entry.split(" ")[0]): entry.split(" ")[1:] for entry in exact.split(";")}
    assert by_id.keys() == stored.keys()
    for question_id, (b, answers) in stored.items():  # columns after item and flags: a, SE a, b, SE b, answers
        assert float(by_id[question_id][2]) == b and by_id[question_id][4] == str(answers)


def test_the_page_of_a_failed_run_says_it_failed_and_why_and_no_card_reads_as_a_finished_run(engine):
    fill(engine)
    # The anchors' references scattered by up to 4 logits: they disagree as a whole, and the run refuses to link.
    with engine.begin() as conn:
        for position, shift in zip(ANCHORS, [0.0, 2.0, -2.0, 4.0, -4.0] * 5):
            conn.execute(sa.text("UPDATE question SET meta = jsonb_set(meta, '{irt,b}', "
                                 "to_jsonb((meta->'irt'->>'b')::float8 + :shift)) "
                                 "WHERE id = (SELECT id FROM question ORDER BY id OFFSET :k LIMIT 1)"),
                         {"shift": shift, "k": position})
    refused = calibrate(engine, Settings.load({}), CalibrationRequest(request_id="refused", as_of=AS_OF))
    # No item reaches the answers an estimate needs.
    unestimated = calibrate(engine, Settings.load({}).with_overrides(min_responses=100_000),
                            CalibrationRequest(request_id="thin", as_of=AS_OF))
    assert refused.status == unestimated.status == "failed"
    assert "refusing to link on noise" in refused.error
    assert unestimated.error.startswith("no item could be estimated from the answers in the window")

    for run in (refused, unestimated):
        page = page_of(engine, run.run_id)
        assert '<span class="status failed">failed</span>' in page and " fitted " not in section(page, "summary")
        assert f"The run failed: {run.error}" in re.sub(r"\s+", " ", card(page, "Run failed"))
        assert "Nothing was written" in card(page, "Run failed")
        assert "no anchors" not in card(page, "Link") and "defines the scale" not in page
        assert "slope A" not in section(page, "link")  # no constants were set: the identity is not shown as one
        assert "nothing to measure with" in section(page, "measurement")

    page = page_of(engine, refused.run_id)
    assert "Not linked: the run refused to link on its 25 anchors" in card(page, "Link")
    assert "The run refused to link on its 25 anchors: the anchors' difficulty shifts" in words(section(page, "link"))
    assert "Converged in" in card(page, "Fit")  # it fitted, then refused

    page = page_of(engine, unestimated.run_id)
    assert "Not fitted: the run ended before its fit finished." in card(page, "Fit")
    assert "converge" not in card(page, "Fit")
    assert "The run recorded no fit" in section(page, "fit")
    misfit = words(section(page, "misfit"))
    assert "Item fit was not computed" in misfit and "items misfit" not in misfit
    assert "Not linked: the run ended before it linked." in card(page, "Link")
    items = words(section(page, "items"))
    assert "0 written" in items and "100 not estimated or held back, with the reason" in items


def test_the_run_took_what_its_step_table_says_the_whole_run_took(engine):
    fill(engine)
    run = calibrate(engine, Settings.load({}), CalibrationRequest(request_id="timed", as_of=AS_OF))
    # The ledger's timestamps span more than the run's own clock (they are taken around the recording).
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE mirt_fit_meta SET finished_at = finished_at + interval '3 seconds' "
                             "WHERE run_id = CAST(:r AS uuid)"), {"r": run.run_id})

    about = words(section(page_of(engine, run.run_id), "run"))
    took = re.search(r"took ([\d.]+ s) answers from", about).group(1)
    assert re.search(rf"whole run {re.escape(took)}\b", about)
    assert took == f"{run.durations['total']:.2f} s"


def test_with_no_misfit_item_fit_shows_how_the_rmsds_spread(engine):
    fill(engine)
    run = calibrate(engine, Settings.load({}), CalibrationRequest(request_id="fits", as_of=AS_OF))
    assert run.status == "succeeded" and not run.counts["misfitting_items"]

    misfit = words(section(page_of(engine, run.run_id), "misfit"))
    assert "0 items misfit" in misfit
    stored = {r[0]: r[1] for r in rows_of(engine, "SELECT item_id, (params->>'rmsd')::float8 FROM "
                                                  "mirt_item_params_history WHERE run_id = CAST(:r AS uuid)",
                                          r=run.run_id)}
    values = np.array(list(stored.values()))
    worst = max(stored, key=stored.get)
    assert (f"RMSD of the {len(stored)} items with one: median {np.median(values):.3f}, 95th percentile "
            f"{np.percentile(values, 95):.3f}, maximum {stored[worst]:.3f} (item {worst})") in misfit


def test_trend_ticks_never_give_two_runs_one_label(engine):
    fill(engine)
    runs = [calibrate(engine, Settings.load({}), CalibrationRequest(request_id=f"week-{k}", as_of=AS_OF)).run_id
            for k in range(3)]
    # Three runs in one minute, the last two in one second.
    with engine.begin() as conn:
        for run_id, fitted in zip(runs, ("13:43:07", "13:43:52.1", "13:43:52.9")):
            conn.execute(sa.text("UPDATE mirt_fit_meta SET fitted_at = CAST(:t AS timestamptz) "
                                 "WHERE run_id = CAST(:r AS uuid)"), {"t": f"2026-12-03 {fitted}+00", "r": run_id})

    changes = section(page_of(engine, runs[-1]), "changes")
    charts = [chart for chart in re.findall(r"<svg.*?</svg>", changes, re.S) if "12-03 13:43" in chart]
    assert len(charts) == 3  # slope, intercept, abilities
    for chart in charts:
        ticks = [html.unescape(t) for t in re.findall(r'text-anchor="middle">([^<]*\d\d:\d\d[^<]*)</text>', chart)]
        assert ticks == ["12-03 13:43:07", f"12-03 13:43:52 {runs[1][:8]}", f"12-03 13:43:52 {runs[2][:8]}"], ticks


def _z_counts(engine, now: str, before: str) -> np.ndarray:
    """By hand, from the stored history: each shared item's change in b over the standard error of the difference,
    counted in the page's bins (half a unit wide from -6 to 6, the outermost catching what lies beyond)."""
    sql = ("SELECT n.item_id, (n.params->>'b')::float8 - (p.params->>'b')::float8, "
           "sqrt(((n.params->>'b_se')::float8)^2 + ((p.params->>'b_se')::float8)^2) "
           "FROM mirt_item_params_history n JOIN mirt_item_params_history p USING (item_id) "
           "WHERE n.run_id = CAST(:now AS uuid) AND p.run_id = CAST(:before AS uuid)")
    rows = rows_of(engine, sql, now=now, before=before)
    z = np.array([change / se for _, change, se in rows])
    return np.histogram(np.clip(z, -5.999, 5.999), np.arange(-6.0, 6.25, 0.5))[0]


def _bar_heights(chart: str) -> np.ndarray:
    """The heights of a histogram's bars (the filled rectangles; the plot's frame is not filled)."""
    return np.array([float(h) for h in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)" '
                                                  r'fill="#', chart)])


def test_the_change_since_the_previous_run_is_shown_beside_the_previous_runs_own_change(engine):
    fill(engine)
    runs = [calibrate(engine, Settings.load({}).with_overrides(max_obs=obs),
                      CalibrationRequest(request_id=f"week-{k}", as_of=AS_OF)).run_id
            for k, obs in enumerate((160_000, 120_000, 160_000))]  # the middle run on the latest answers only

    # Two runs: this run's change alone.
    two = section(page_of(engine, runs[1]), "changes")
    assert "The previous run&#x27;s change" not in two and len(re.findall("<figcaption>Change in b of the", two)) == 1

    changes = section(page_of(engine, runs[2]), "changes")
    assert f"the previous run against the one before it ({runs[0]})" in words(changes)
    charts = [c for c in re.findall(r"<svg.*?</svg>", changes, re.S) if "change, since" in c]
    assert [html.unescape(re.search(r"<title>([^<]*)</title>", c).group(1)) for c in charts] == [
        "The previous run's change, since the run before it", "This run's change, since the previous run"]
    assert changes.count("if nothing moved: N(0, 1)") == 2
    # Each chart's bars are the z of its pair of runs, computed here from the stored history, on one count axis.
    heights = [_bar_heights(c) for c in charts]
    counts = [_z_counts(engine, runs[1], runs[0]), _z_counts(engine, runs[2], runs[1])]
    assert [c.sum() for c in counts] == [100, 100]
    assert all(h.size == (c > 0).sum() for h, c in zip(heights, counts))
    drawn, counted = np.concatenate(heights), np.concatenate([c[c > 0] for c in counts])
    pixels_per_item = drawn.sum() / counted.sum()
    assert np.all(np.abs(drawn - pixels_per_item * counted) <= 0.1)  # one scale for both, up to the 0.1 px rounding
    # (the third run is the first again, so its change is the previous one's, mirrored)
    assert counts[1].tolist() == counts[0][::-1].tolist()
    assert "Change in b of the 100 items in the previous run and the one before it" in words(changes)
