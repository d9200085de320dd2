"""A run with MIRT_DIF_GROUP_COLUMN set on a real PostgreSQL: the groups come from attempt, the screen lands."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from consumer.db import queries
from consumer.irt.simulate import SimulatedData
from consumer.run import calibrate
from consumer.scope import WHOLE_BANK
from consumer.settings import Settings

from tests.support.database import rows
from tests.support.dif_data import planted_dif
from tests.support.platform_data import AS_OF, FIRST_QUESTION_ID, load_simulation
from tests.support.review_pages import page_of, section
from tests.support.runs import REQUEST

N_PER_GROUP = 1500


@pytest.fixture
def grouped(engine):
    """Answers of two groups (desktop: u00000-u01499, phone: the rest), items 0-2 with planted DIF."""
    data = planted_dif(N_PER_GROUP, seed=11)
    with engine.begin() as conn:
        load_simulation(conn, SimulatedData(data.responses, data.params, np.zeros(data.responses.n_persons)))
        conn.exec_driver_sql("ALTER TABLE attempt ADD COLUMN device text")
        conn.execute(sa.text("UPDATE attempt SET device = CASE WHEN student_id < :first_phone THEN 'desktop' "
                             "ELSE 'phone' END"), {"first_phone": f"u{N_PER_GROUP:05d}"})
    return data


def test_a_run_with_a_group_column_records_the_dif_screen_and_flags_the_planted_items(engine, grouped):
    settings = Settings.load({"MIRT_DIF_GROUP_COLUMN": "device", "MIRT_DIF_REFERENCE_GROUP": "desktop"})
    summary = calibrate(engine, settings, REQUEST)

    assert summary.status == "succeeded", summary.error
    record = summary.fit["dif"]
    assert record["reference"] == "desktop" and record["group_sizes"] == {"desktop": N_PER_GROUP, "phone": N_PER_GROUP}
    (comparison,) = record["comparisons"]
    planted = {FIRST_QUESTION_ID + j for j in np.flatnonzero(grouped.planted)}
    flagged = {item["question_id"] for item in comparison["flagged"]}
    assert planted <= flagged and len(flagged - planted) <= 2
    assert all(len(item["curves"]["focal"]) == len(item["curves"]["theta"]) for item in comparison["flagged"])

    table = rows(engine, "SELECT item_id, focal_group, ets_class, flagged, run_id::text FROM mirt_dif ORDER BY item_id")
    assert len(table) == 30 and {r[1] for r in table} == {"phone"} and {r[4] for r in table} == {summary.run_id}
    assert {r[0] for r in table if r[3]} == flagged
    assert summary.rows_upserted["dif"] == 30
    (stored,) = rows(engine, "SELECT fit_stats->'dif'->>'reference', model_spec->'settings'->>'dif_group_column', "
                             "model_spec->'dif_flagged_items'->'phone' FROM mirt_fit_meta")
    assert stored[:2] == ("desktop", "device") and {int(q) for q in stored[2]} == flagged

    page = page_of(engine, summary.run_id)
    shown = section(page, "dif")
    assert 'href="#dif"' in page and "phone against desktop" in shown
    for question_id in planted:
        assert f"Item {question_id}: curves of groups desktop and phone" in shown
    assert shown.count("<figure") == len(flagged)
    # The summary's card counts them, and each flagged item carries its flag (and only those) in the items' table.
    card = section(page, "summary")
    assert "<h3>DIF</h3>" in card and f"phone: {len(flagged)} of 30 items flagged" in card
    items = section(page, "items")
    for item in comparison["flagged"]:
        assert f"DIF {item['ets']} (phone)" in items
    assert items.count("DIF ") == len(flagged)


def test_a_students_group_is_the_label_of_their_earliest_answer(engine, grouped):
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE attempt SET device = 'phone' WHERE student_id = 'u00000' AND completed_at > "
                             "(SELECT min(completed_at) FROM attempt WHERE student_id = 'u00000')"))
        conn.execute(sa.text("UPDATE attempt SET device = NULL WHERE student_id = 'u00001'"))
        observations = queries.load_observations(conn, AS_OF - np.timedelta64(30, "D").item(), AS_OF, 10**7,
                                                 WHOLE_BANK, group_column="device")
    group = dict(zip(observations.student_ids, observations.groups))
    assert group["u00000"] == "desktop" and group["u00001"] is None and group[f"u{N_PER_GROUP:05d}"] == "phone"


def test_without_a_group_column_nothing_is_screened(engine, grouped):
    summary = calibrate(engine, Settings.load({}), REQUEST)
    assert summary.status == "succeeded" and "dif" not in summary.fit and "dif" not in summary.rows_upserted
    assert rows(engine, "SELECT count(*) FROM mirt_dif") == [(0,)]
    (spec,) = rows(engine, "SELECT model_spec FROM mirt_fit_meta")[0]
    assert "dif_group_column" not in spec["settings"] and "dif_flagged_items" not in spec
    page = page_of(engine, summary.run_id)
    assert '<section id="dif">' not in page and 'href="#dif"' not in page


def test_a_group_column_attempt_does_not_have_fails_the_run_naming_the_setting(engine, grouped):
    summary = calibrate(engine, Settings.load({"MIRT_DIF_GROUP_COLUMN": "locale"}), REQUEST)
    assert summary.status == "failed"
    assert "MIRT_DIF_GROUP_COLUMN" in summary.error and "'locale'" in summary.error and "device" in summary.error


def test_the_capped_load_carries_each_students_group_too(engine, grouped):
    with engine.begin() as conn:
        observations = queries.load_observations(conn, AS_OF - np.timedelta64(30, "D").item(), AS_OF, 5000,
                                                 WHOLE_BANK, group_column="device")
    assert observations.capped and len(observations.groups) == len(observations.student_ids) > 0
    expected = ["desktop" if s < f"u{N_PER_GROUP:05d}" else "phone" for s in observations.student_ids]
    assert observations.groups == expected


def test_a_screen_that_fails_is_a_warning_and_the_calibration_is_written(engine, grouped, monkeypatch):
    from consumer.irt import dif

    def singular(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(dif, "screen", singular)
    summary = calibrate(engine, Settings.load({"MIRT_DIF_GROUP_COLUMN": "device"}), REQUEST)
    assert summary.status == "succeeded" and summary.rows_upserted["items"] == 30
    assert "Singular matrix" in summary.fit["dif"]["skipped"]
    assert any(w.startswith("DIF screen skipped") for w in summary.warnings)
    assert rows(engine, "SELECT count(*) FROM mirt_dif") == [(0,)]
