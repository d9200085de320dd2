"""The run report: one self-contained HTML file with what a psychometrician looks for."""

from __future__ import annotations

import re

import sqlalchemy as sa

from consumer.irt.simulate import simulate
from consumer.run import calibrate
from consumer.settings import Settings

from .platform_data import FIRST_QUESTION_ID, load_simulation
from .test_cli import cli
from .test_run import REQUEST, plant_drift


def test_report_of_a_linked_run_with_a_dropped_anchor(database_url, tmp_path):
    engine = sa.create_engine(database_url)
    from consumer.db.migrations import migrate
    migrate(engine)
    with engine.begin() as conn:
        load_simulation(conn, simulate(4000, 100, 40, seed=8), anchors=list(range(0, 100, 4)), old_scale=(1.1, 0.4))
        plant_drift(conn, {8: 1.6})
    summary = calibrate(engine, Settings.load({}), REQUEST)
    engine.dispose()
    assert summary.status == "succeeded" and summary.counts["anchors_dropped"]

    out = tmp_path / "report.html"
    result = cli("report", summary.run_id, "--output", str(out), env={"DATABASE_URL": database_url})

    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4  # anchors, TCCs, items, abilities
    # It stands alone: nothing to fetch (namespace URIs inside the SVGs are names, not links).
    assert "<script" not in page and "<link" not in page and not re.search(r'(src|href)="https?:', page)
    assert f"Calibration run {summary.run_id}" in page and "succeeded" in page
    slope = summary.linking_constants["slope"]
    assert re.search(rf"<td>slope</td><td>{slope:.4g}</td><td>0\.0\d+", page)
    assert "dropped (drift)" in page and "before linking" in page and "after linking" in page
    assert f"<td>{FIRST_QUESTION_ID + 8}</td><td>anchor dropped</td><td>difficulty drifted" in page
    assert "<td>lookback_days</td><td>60</td>" in page and "<td>observations</td><td>160000</td>" in page


def test_report_of_an_unknown_run_says_so(database_url):
    result = cli("report", "00000000-0000-0000-0000-00000000beef", env={"DATABASE_URL": database_url})
    assert result.returncode == 1 and "no calibration run 00000000-0000-0000-0000-00000000beef" in result.stderr
