"""The item bank's lifecycle on PostgreSQL: adopt, weekly runs that hold the scale, drift, promotion, recalibration."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from consumer import bank_admin
from consumer.anchors import AnchorCriteria
from consumer.db import platform
from consumer.run import CalibrationRequest, calibrate
from consumer.runs import format_runs, latest_runs
from consumer.scope import WHOLE_BANK
from consumer.tagging import NothingToTag, tag_anchors

from tests.support.bank_data import (DRIFTING, N_NEW, N_OPERATIONAL, SETTINGS, adopt_base_week, drifted, put_week,
                                     truth, week_request)
from tests.support.platform_data import AS_OF, question_ids


def rows(engine, sql, **params):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).all()


@pytest.fixture
def adopted(engine):
    """A base week calibrated (it defines the scale) and adopted as the bank; the truth's items."""
    _, params = adopt_base_week(engine)
    return params


def test_a_database_without_a_bank_keeps_linking_through_anchors(engine):
    with engine.begin() as conn:
        platform.create_platform_tables(conn)
        platform.insert_questions(conn, question_ids(N_OPERATIONAL), [{"tags": []}] * N_OPERATIONAL)
        put_week(conn, 0, truth(), 0.0, 1.0, n_items=N_OPERATIONAL)

    summary = calibrate(engine, SETTINGS, week_request(0))

    assert summary.status == "succeeded"
    assert summary.linking_constants["method"] == "none" and "bank" not in summary.fit
    assert rows(engine, "SELECT count(*) FROM mirt_bank_item") == [(0,)]


def test_adopting_makes_every_current_item_operational_and_records_who_did_it(engine, adopted):
    statuses = rows(engine, "SELECT status, count(*) FROM mirt_bank_item GROUP BY status")
    assert statuses == [("operational", N_OPERATIONAL)]
    history = rows(engine, "SELECT DISTINCT change, changed_by FROM mirt_bank_history")
    assert history == [("adopted", "tester")]
    with pytest.raises(bank_admin.BankRefused, match="was adopted already"):
        bank_admin.adopt(engine, WHOLE_BANK, "tester")
    with pytest.raises(NothingToTag, match="holds the scale"):
        tag_anchors(engine, AnchorCriteria(), WHOLE_BANK)


def test_weekly_runs_report_the_population_on_the_bank_scale_flag_drift_and_promote(engine, adopted):
    params = adopted
    with engine.begin() as conn:
        for week, (mean, sd) in ((1, (0.5, 1.2)), (2, (0.6, 1.25))):
            put_week(conn, week, drifted(params), mean, sd, n_items=N_OPERATIONAL + N_NEW)

    first = calibrate(engine, SETTINGS, week_request(1))

    assert first.status == "succeeded", first.error
    population = first.fit["bank"]["population"]
    assert first.linking_constants["method"] == "fipc" and first.fit["bank"]["mode"] == "weekly"
    assert population["mean"] == pytest.approx(0.5, abs=3 * population["mean_se"] + 0.05)
    assert population["sd"] == pytest.approx(1.2, abs=3 * population["sd_se"] + 0.05)
    assert str(question_ids(100)[DRIFTING]) in first.fit["bank"]["flagged"]
    assert len(first.fit["bank"]["flagged"]) <= 2
    assert first.counts["items_entered_pretest"] == N_NEW and first.counts["items_promoted"] == 0
    pretest = rows(engine, "SELECT count(*) FROM mirt_item_params WHERE params->>'status' = 'pretest'")
    assert pretest == [(N_NEW,)]

    second = calibrate(engine, SETTINGS, week_request(2))

    assert second.status == "succeeded", second.error
    drifting = str(question_ids(100)[DRIFTING])
    assert drifting in second.fit["bank"]["suspended"]
    assert rows(engine, "SELECT status FROM mirt_bank_item WHERE item_id = :i",
                i=int(question_ids(100)[DRIFTING])) == [("suspended",)]
    promoted = second.fit["bank"]["promoted"]
    assert len(promoted) >= N_NEW // 2, second.fit["bank"]["not_promoted"]
    new_ids = {str(q) for q in question_ids(N_OPERATIONAL + N_NEW)[N_OPERATIONAL:]}
    assert set(promoted) <= new_ids
    # Promoted items carry their estimates on the bank's scale: close to the truth's.
    bank_b = dict(rows(engine, "SELECT item_id, (params->>'b')::float8 FROM mirt_bank_item "
                               "WHERE status = 'operational' AND item_id = ANY(:ids)",
                       ids=[int(q) for q in promoted]))
    error = [bank_b[int(q)] - params.b[int(q) - int(question_ids(1)[0])] for q in promoted]
    assert abs(np.mean(error)) < 0.15
    changes = rows(engine, "SELECT change, count(*) FROM mirt_bank_history WHERE change <> 'adopted' "
                           "GROUP BY change ORDER BY change")
    assert dict(changes) == {"entered": N_NEW, "promoted": len(promoted), "suspended": 1}


def test_a_students_theta_does_not_move_because_other_students_answered(engine, adopted):
    params = adopted
    with engine.begin() as conn:
        put_week(conn, 1, params, 0.3, 1.0, n_items=N_OPERATIONAL)
    first = calibrate(engine, SETTINGS, week_request(1))
    before = dict(rows(engine, "SELECT user_id, theta FROM mirt_ability WHERE user_id LIKE 'w1-%'"))
    # Another week of other students, with a different population; week 1's students are in the window again.
    with engine.begin() as conn:
        put_week(conn, 2, params, 1.0, 0.7, n_items=N_OPERATIONAL)

    second = calibrate(engine, SETTINGS, CalibrationRequest(
        request_id="two-weeks", as_of=AS_OF - timedelta(days=7), overrides={"lookback_days": 14}))

    assert first.status == second.status == "succeeded"
    assert second.fit["bank"]["population"]["mean"] > first.fit["bank"]["population"]["mean"] + 0.2
    after = dict(rows(engine, "SELECT user_id, theta FROM mirt_ability WHERE user_id LIKE 'w1-%'"))
    shifts = np.array([after[u] - before[u] for u in before])
    assert np.abs(shifts).max() < 0.01


def test_a_recalibration_changes_the_bank_only_when_accepted(engine, adopted):
    params = adopted
    with engine.begin() as conn:
        put_week(conn, 1, params, 0.4, 1.1, n_items=N_OPERATIONAL)
    bank_before = dict(rows(engine, "SELECT item_id, params FROM mirt_bank_item"))
    abilities_before = rows(engine, "SELECT count(*) FROM mirt_ability")

    summary = calibrate(engine, SETTINGS, week_request(1, mode="recalibration"))

    assert summary.status == "succeeded", summary.error
    assert summary.linking_constants["method"] == "stocking-lord"
    assert summary.linking_constants["slope"] == pytest.approx(1.1, abs=0.1)
    assert summary.linking_constants["intercept"] == pytest.approx(0.4, abs=0.1)
    impact = summary.fit["bank"]["impact"]
    assert impact["students_scored"] == 3000 and 0 <= impact["moved_more_than_se"] <= 3000
    assert dict(rows(engine, "SELECT item_id, params FROM mirt_bank_item")) == bank_before
    assert rows(engine, "SELECT count(*) FROM mirt_ability") == abilities_before
    with pytest.raises(bank_admin.BankRefused, match="not a recalibration"):
        bank_admin.accept(engine, WHOLE_BANK, rows(engine, "SELECT run_id::text FROM mirt_fit_meta "
                                                           "WHERE request_id = 'week-0'")[0][0], "lead")

    change = bank_admin.accept(engine, WHOLE_BANK, summary.run_id, "lead")

    assert change.items == N_OPERATIONAL
    bank_after = dict(rows(engine, "SELECT item_id, params FROM mirt_bank_item"))
    assert bank_after != bank_before
    recorded = rows(engine, "SELECT DISTINCT change, changed_by, run_id::text FROM mirt_bank_history "
                            "WHERE change = 'recalibrated'")
    assert recorded == [("recalibrated", "lead", summary.run_id)]
    with pytest.raises(bank_admin.BankRefused, match="already accepted"):
        bank_admin.accept(engine, WHOLE_BANK, summary.run_id, "lead")


def test_runs_lists_the_latest_runs_with_their_mode_so_that_one_finds_the_one_to_accept(engine, adopted):
    params = adopted
    with engine.begin() as conn:
        put_week(conn, 1, params, 0.4, 1.1, n_items=N_OPERATIONAL)
    weekly = calibrate(engine, SETTINGS, week_request(1))
    recalibration = calibrate(engine, SETTINGS, CalibrationRequest(
        request_id="recalibrate", as_of=AS_OF - timedelta(days=14), overrides={"lookback_days": 7},
        mode="recalibration"))

    listed = latest_runs(engine, WHOLE_BANK)

    assert [r["run_id"] for r in listed] == [recalibration.run_id, weekly.run_id, rows(
        engine, "SELECT run_id::text FROM mirt_fit_meta WHERE request_id = 'week-0'")[0][0]]
    assert [r["mode"] for r in listed] == ["recalibration", "bank", "linked"]
    assert listed[1]["linking_constants"]["intercept"] == pytest.approx(
        weekly.fit["bank"]["population"]["mean"])
    table = format_runs(listed)
    assert recalibration.run_id in table and "population N(" in table
    assert [r["run_id"] for r in latest_runs(engine, WHOLE_BANK, limit=1)] == [recalibration.run_id]
    since = rows(engine, "SELECT started_at FROM mirt_fit_meta WHERE run_id = CAST(:r AS uuid)", r=weekly.run_id)[0][0]
    assert {r["run_id"] for r in latest_runs(engine, WHOLE_BANK, since=since)} == {weekly.run_id,
                                                                                 recalibration.run_id}
