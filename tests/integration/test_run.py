"""A calibration run against a real PostgreSQL: SPEC's steps, what lands and what must not."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from consumer.db import platform, queries
from consumer.errors import RunLockBusy, RunLockLost
from consumer.irt.simulate import simulate
from consumer.run import CalibrationRequest, calibrate
from consumer.scope import WHOLE_BANK
from consumer.settings import Settings

from tests.support import lsat6, lsat7
from tests.support.database import rows
from tests.support.platform_data import AS_OF, FIRST_QUESTION_ID, load_simulation, question_ids
from tests.support.responses import dense_to_responses
from tests.support.runs import REQUEST, plant_drift, wait_until_gone

SETTINGS = Settings.load({})


@pytest.fixture
def simulated():
    return simulate(3000, 120, 30, seed=7)


def test_a_run_writes_linked_parameters_abilities_and_its_record(engine, simulated):
    anchors = list(range(0, 120, 6))
    with engine.begin() as conn:
        load_simulation(conn, simulated, anchors=anchors, old_scale=(1.3, -0.5))

    summary = calibrate(engine, SETTINGS, REQUEST)

    assert summary.status == "succeeded", summary.error
    assert summary.counts["observations"] == simulated.responses.n_obs
    assert summary.counts["users"] == 3000 and summary.counts["items"] == 120
    constants = summary.linking_constants
    assert constants["method"] == "stocking-lord" and constants["n_anchors"] == len(anchors)
    assert constants["slope"] == pytest.approx(1.3, abs=0.1)
    assert constants["intercept"] == pytest.approx(-0.5, abs=0.1)

    items = rows(engine, "SELECT item_id, model, params, run_id::text FROM mirt_item_params ORDER BY item_id")
    assert len(items) == 120 and {r[1] for r in items} == {"2PL"} and {r[3] for r in items} == {summary.run_id}
    b = np.array([r[2]["b"] for r in items])
    truth_b = simulated.params.on_scale(1.3, -0.5).b
    assert np.sqrt(np.mean((b - truth_b) ** 2)) < 0.3
    assert all(r[2]["n_responses"] > 0 for r in items)

    abilities = rows(engine, "SELECT user_id, theta, theta_se FROM mirt_ability ORDER BY user_id")
    assert len(abilities) == 3000
    theta = np.array([r[1] for r in abilities])
    assert np.corrcoef(theta, 1.3 * simulated.theta - 0.5)[0, 1] > 0.85
    assert all(r[2] > 0 for r in abilities)

    (record,) = rows(engine, "SELECT status, request_id, model_spec, fit_stats, fitted_at FROM mirt_fit_meta")
    status, request_id, spec, stats, fitted_at = record
    assert (status, request_id) == ("succeeded", "req-1") and fitted_at is not None
    assert spec["model"] == "2PL" and spec["n_items"] == 120 and spec["n_users"] == 3000
    assert spec["n_obs"] == simulated.responses.n_obs and spec["n_anchors"] == len(anchors)
    assert spec["linking_constants"]["slope"] == pytest.approx(constants["slope"])
    assert spec["request"]["requested_by"] == "tests" and spec["settings"]["lookback_days"] == 60
    assert stats["converged"] is True and stats["loglik"] < 0


def test_first_attempt_inside_the_window_counts_and_stale_answers_are_ignored(engine):
    with engine.begin() as conn:
        platform.create_platform_tables(conn)
        platform.insert_questions(conn, [1, 2], [{}, {}])
        t = lambda days: platform.as_datetime64(AS_OF - timedelta(days=days))
        # s1 got q1 wrong first, then right; the answer from 90 days ago is outside the window.
        platform.insert_attempts(
            conn, np.array(["s1", "s1", "s1", "s2"]), np.array([1, 1, 1, 2]),
            np.array([True, False, True, True]), np.array([t(90), t(5), t(2), t(1)]))
        observations = queries.load_observations(conn, AS_OF - timedelta(days=60), AS_OF, 100, WHOLE_BANK)

    assert observations.n_obs == 2
    assert observations.student_ids == ["s1", "s2"]
    r = observations.responses
    s1 = slice(r.person_ptr[0], r.person_ptr[1])
    assert observations.question_ids[r.item[s1]].tolist() == [1] and r.correct[s1].tolist() == [0]
    assert observations.first_at.date() == (AS_OF - timedelta(days=5)).date()


def test_the_cap_keeps_the_most_recent_observations(engine):
    with engine.begin() as conn:
        platform.create_platform_tables(conn)
        platform.insert_questions(conn, range(1, 11), [{}] * 10)
        when = np.array([platform.as_datetime64(AS_OF - timedelta(hours=h)) for h in range(10)])
        platform.insert_attempts(conn, np.array(["s"] * 10), np.arange(1, 11), np.ones(10, bool), when)
        observations = queries.load_observations(conn, AS_OF - timedelta(days=1), AS_OF, 4, WHOLE_BANK)
    # Hours 0..3 before AS_OF are the four most recent: questions 1..4.
    assert sorted(observations.question_ids.tolist()) == [1, 2, 3, 4]


def test_student_ids_may_be_bigint(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated, student_type="bigint")
    summary = calibrate(engine, SETTINGS, REQUEST)
    assert summary.status == "succeeded"
    assert rows(engine, "SELECT count(*) FROM mirt_ability WHERE user_id ~ '^[0-9]+$'")[0][0] == 3000


def test_an_empty_window_is_a_recorded_skip_that_touches_no_parameters(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated)
    first = calibrate(engine, SETTINGS, REQUEST)
    before = rows(engine, "SELECT item_id, params FROM mirt_item_params ORDER BY item_id")

    later = CalibrationRequest(request_id="req-2", as_of=AS_OF + timedelta(days=365))
    skipped = calibrate(engine, SETTINGS, later)

    assert first.status == "succeeded" and skipped.status == "skipped" and skipped.ok
    assert any("no observations" in w for w in skipped.warnings)
    assert rows(engine, "SELECT item_id, params FROM mirt_item_params ORDER BY item_id") == before
    statuses = rows(engine, "SELECT request_id, status FROM mirt_fit_meta ORDER BY started_at")
    assert statuses == [("req-1", "succeeded"), ("req-2", "skipped")]


def test_history_keeps_every_runs_parameters_by_run_id(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated)
    first = calibrate(engine, SETTINGS, REQUEST)
    second = calibrate(engine, SETTINGS.with_overrides(model="1PL"), REQUEST)

    current = rows(engine, "SELECT DISTINCT run_id::text, model FROM mirt_item_params")
    assert current == [(second.run_id, "1PL")]
    history = dict(rows(engine, "SELECT run_id::text, count(*) FROM mirt_item_params_history GROUP BY run_id"))
    assert history == {first.run_id: 120, second.run_id: 120}
    abilities = dict(rows(engine, "SELECT run_id::text, count(*) FROM mirt_ability_history GROUP BY run_id"))
    assert abilities == {first.run_id: 3000, second.run_id: 3000}


def test_malformed_anchors_are_skipped_by_name_and_no_anchors_means_unlinked(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated)
        conn.execute(sa.text("UPDATE question SET meta = CAST(:m AS jsonb) WHERE id = :id"),
                     {"m": json.dumps({"tags": ["anchor"], "irt": {"a": "x", "b": 0}}), "id": FIRST_QUESTION_ID})
        conn.execute(sa.text("UPDATE question SET meta = CAST(:m AS jsonb) WHERE id = :id"),
                     {"m": json.dumps({"tags": ["anchor"]}), "id": FIRST_QUESTION_ID + 1})

    summary = calibrate(engine, SETTINGS, REQUEST)

    assert summary.status == "succeeded"
    assert summary.counts["anchors_skipped"] == {
        str(FIRST_QUESTION_ID): "meta.irt.a is 'x', not a finite number",
        str(FIRST_QUESTION_ID + 1): "meta.irt is missing",
    }
    assert any(f"anchor question {FIRST_QUESTION_ID} skipped" in w for w in summary.warnings)
    assert any("no anchors found" in w and "unlinked" in w for w in summary.warnings)
    assert summary.linking_constants == {"method": "none", "slope": 1.0, "intercept": 0.0, "n_anchors": 0,
                                         "slope_se": None, "intercept_se": None}


def test_a_failure_while_writing_leaves_nothing_half_written(engine, simulated, monkeypatch):
    with engine.begin() as conn:
        load_simulation(conn, simulated)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(queries, "write_abilities", broken)

    summary = calibrate(engine, SETTINGS, REQUEST)

    assert summary.status == "failed" and "disk full" in summary.error
    for table in ("mirt_item_params", "mirt_item_params_history", "mirt_ability", "mirt_ability_history"):
        assert rows(engine, f"SELECT count(*) FROM {table}")[0][0] == 0, table
    assert rows(engine, "SELECT status, error FROM mirt_fit_meta") == [("failed", "RuntimeError: disk full")]


def test_abilities_are_never_written_without_their_runs_record(engine, simulated):
    # The ability tables have no foreign key to mirt_fit_meta (migration 0009); the write checks the record
    # once and holds it as the key's check did for each row.
    with engine.begin() as conn:
        load_simulation(conn, simulated)
    summary = calibrate(engine, SETTINGS, REQUEST)
    assert summary.status == "succeeded"
    for table in ("mirt_ability", "mirt_ability_history"):
        orphans = rows(engine, f"SELECT count(*) FROM {table} a WHERE NOT EXISTS "
                               "(SELECT 1 FROM mirt_fit_meta m WHERE m.run_id = a.run_id)")[0][0]
        assert orphans == 0 and rows(engine, f"SELECT count(*) FROM {table}")[0][0] == 3000, table

    unrecorded = uuid.uuid4()
    with pytest.raises(LookupError, match="no record"), engine.begin() as conn:
        queries.write_abilities(conn, unrecorded, AS_OF, WHOLE_BANK, ["u1"], np.zeros(1), np.ones(1))
    assert rows(engine, "SELECT count(*) FROM mirt_ability_history WHERE run_id = :r", r=unrecorded)[0][0] == 0

    # While a write is open, its run's record cannot be deleted from under it.
    run_id = uuid.uuid4()
    with engine.begin() as conn:
        queries.insert_run(conn, run_id, "r", WHOLE_BANK, {})
    with engine.connect() as writer, writer.begin():
        queries.write_abilities(writer, run_id, AS_OF, WHOLE_BANK, ["u1"], np.zeros(1), np.ones(1))
        with engine.connect() as other:  # rolled back when closed
            other.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
            with pytest.raises(sa.exc.DBAPIError, match="lock timeout"):
                other.execute(sa.text("DELETE FROM mirt_fit_meta WHERE run_id = :r"), {"r": run_id})


def test_items_without_enough_answers_are_reported_and_not_written(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated)
        conn.execute(sa.text("DELETE FROM attempt WHERE question_id = :q AND student_id > 'u00010'"),
                     {"q": FIRST_QUESTION_ID + 5})
    summary = calibrate(engine, SETTINGS, REQUEST)
    assert summary.status == "succeeded"
    assert list(summary.counts["excluded_items"]) == [str(FIRST_QUESTION_ID + 5)]
    assert "responses (minimum 20)" in summary.counts["excluded_items"][str(FIRST_QUESTION_ID + 5)]
    written = {r[0] for r in rows(engine, "SELECT item_id FROM mirt_item_params")}
    assert written == set(question_ids(120).tolist()) - {FIRST_QUESTION_ID + 5}


def test_a_second_run_waits_for_the_lock(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated)
    with engine.connect() as holder:
        assert queries.try_run_lock(holder, WHOLE_BANK)
        with pytest.raises(RunLockBusy):
            calibrate(engine, SETTINGS, REQUEST)
        queries.release_run_lock(holder, WHOLE_BANK)
    assert rows(engine, "SELECT count(*) FROM mirt_fit_meta")[0][0] == 0


def test_a_run_that_loses_the_lock_mid_run_never_writes_over_the_run_that_took_it(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated)
    second: list = []

    def cut_the_lock_and_let_another_replica_run(iteration, loglik, change):
        if second:
            return
        # The server ends the lock's connection (a network blip, an administrator), releasing the lock...
        with engine.begin() as conn:
            (pid,) = conn.execute(sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "  # this test's database only
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).one()
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        wait_until_gone(engine, pid)  # the server ends the backend, and frees its lock, a moment later
        # ... and another replica, waiting for it, takes it and runs a whole calibration meanwhile.
        second.append(calibrate(engine, SETTINGS, CalibrationRequest(request_id="req-2", as_of=AS_OF)))

    # The first run finds out when it comes to write: it writes nothing and says so, to be retried.
    with pytest.raises(RunLockLost, match="the run lock was lost"):
        calibrate(engine, SETTINGS, REQUEST, progress=cut_the_lock_and_let_another_replica_run)

    assert second[0].status == "succeeded"
    (first_run_id, error), = rows(engine, "SELECT run_id::text, error FROM mirt_fit_meta WHERE request_id = 'req-1'")
    assert "run lock was lost" in error
    # Only the run that held the lock wrote: one set of parameters, one history, and the first run is retried.
    assert {r[0] for r in rows(engine, "SELECT DISTINCT run_id::text FROM mirt_item_params_history")} == {
        second[0].run_id}
    retried = calibrate(engine, SETTINGS, REQUEST, once_per_request=True)
    assert retried.status == "succeeded" and not retried.duplicate
    statuses = dict(rows(engine, "SELECT run_id::text, status FROM mirt_fit_meta"))
    assert statuses == {first_run_id: "abandoned", second[0].run_id: "succeeded", retried.run_id: "succeeded"}


def test_a_run_left_running_by_a_dead_process_is_marked_abandoned(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated)
        conn.execute(sa.text("INSERT INTO mirt_fit_meta (run_id, status) VALUES "
                             "('00000000-0000-0000-0000-000000000001', 'running')"))
    summary = calibrate(engine, SETTINGS, REQUEST)
    assert summary.status == "succeeded"
    (stale,) = rows(engine, "SELECT status, error FROM mirt_fit_meta WHERE request_id IS NULL")
    assert stale[0] == "abandoned" and stale[1] == queries.STALE_RUN


def test_dry_run_records_the_run_but_writes_no_parameters(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated)
    summary = calibrate(engine, SETTINGS, CalibrationRequest(as_of=AS_OF, dry_run=True))
    assert summary.status == "succeeded" and summary.rows_upserted == {"items": 0, "abilities": 0}
    assert rows(engine, "SELECT count(*) FROM mirt_item_params")[0][0] == 0
    assert rows(engine, "SELECT model_spec->>'dry_run' FROM mirt_fit_meta")[0][0] == "true"


def test_a_request_already_answered_is_not_run_again(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated)
    first = calibrate(engine, SETTINGS, REQUEST, once_per_request=True)
    again = calibrate(engine, SETTINGS, REQUEST, once_per_request=True)
    assert not first.duplicate and again.duplicate
    assert again.run_id == first.run_id and again.linking_constants == first.linking_constants
    assert again.durations == first.durations and "total" in again.durations
    assert rows(engine, "SELECT count(*) FROM mirt_fit_meta")[0][0] == 1


def test_a_run_asked_to_stop_is_abandoned_before_writing(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated)
    asked = []

    def stop_after_a_few_checks():
        asked.append(1)
        return len(asked) > 4  # past load and anchors, inside the fit

    summary = calibrate(engine, SETTINGS, REQUEST, should_stop=stop_after_a_few_checks, once_per_request=True)

    assert summary.status == "abandoned" and not summary.ok and "shutting down" in summary.error
    assert rows(engine, "SELECT count(*) FROM mirt_item_params_history")[0][0] == 0
    assert rows(engine, "SELECT status FROM mirt_fit_meta")[0][0] == "abandoned"
    # An abandoned run does not answer its request: the retry runs it.
    retried = calibrate(engine, SETTINGS, REQUEST, once_per_request=True)
    assert retried.status == "succeeded" and not retried.duplicate


def test_drifting_anchors_are_dropped_and_reported_and_the_rest_link(engine):
    truth = simulate(5000, 120, 40, seed=8)
    anchors = list(range(0, 120, 4))
    with engine.begin() as conn:
        load_simulation(conn, truth, anchors=anchors, old_scale=(1.1, 0.4))
        plant_drift(conn, {8: 1.5, 40: -1.5})

    summary = calibrate(engine, SETTINGS, REQUEST)

    assert summary.status == "succeeded"
    assert set(summary.counts["anchors_dropped"]) == {str(FIRST_QUESTION_ID + 8), str(FIRST_QUESTION_ID + 40)}
    assert "difficulty drifted" in summary.counts["anchors_dropped"][str(FIRST_QUESTION_ID + 8)]
    constants = summary.linking_constants
    assert constants["n_anchors"] == len(anchors) - 2
    assert constants["slope"] == pytest.approx(1.1, abs=0.08) and constants["intercept"] == pytest.approx(0.4, abs=0.08)
    assert 0 < constants["slope_se"] < 0.1 and 0 < constants["intercept_se"] < 0.1
    (spec,) = rows(engine, "SELECT model_spec FROM mirt_fit_meta")[0]
    assert set(spec["anchors_dropped"]) == set(summary.counts["anchors_dropped"])
    params = rows(engine, "SELECT params FROM mirt_item_params")
    assert all(p[0]["a_se"] > 0 and p[0]["b_se"] > 0 for p in params)


def test_a_run_whose_anchors_mostly_drift_fails_loudly(engine):
    truth = simulate(3000, 60, 30, seed=9)
    anchors = list(range(0, 60, 6))
    with engine.begin() as conn:
        load_simulation(conn, truth, anchors=anchors)
        plant_drift(conn, {p: (2.0 if i % 2 else -2.0) * (1 + i / 10) for i, p in enumerate(anchors[:7])})

    summary = calibrate(engine, SETTINGS, REQUEST)

    assert summary.status == "failed" and "refusing to link on noise" in summary.error
    assert rows(engine, "SELECT count(*) FROM mirt_item_params")[0][0] == 0


def test_too_few_usable_anchors_fail_the_run(engine, simulated):
    with engine.begin() as conn:
        load_simulation(conn, simulated, anchors=[0, 1, 2])
    summary = calibrate(engine, SETTINGS, REQUEST)
    assert summary.status == "failed"
    assert "only 3 of 3 anchors" in summary.error and "MIRT_MIN_ANCHORS=5" in summary.error
    assert calibrate(engine, SETTINGS.with_overrides(min_anchors=3), REQUEST).status == "succeeded"


def test_the_cap_is_reported_only_when_it_dropped_answers(engine):
    with engine.begin() as conn:
        platform.create_platform_tables(conn)
        platform.insert_questions(conn, range(1, 6), [{}] * 5)
        when = np.array([platform.as_datetime64(AS_OF - timedelta(hours=h)) for h in range(6)])
        # Five first answers and one retake: six attempts.
        platform.insert_attempts(conn, np.array(["s"] * 6), np.array([1, 2, 3, 4, 5, 1]), np.ones(6, bool), when)
    window = (AS_OF - timedelta(days=1), AS_OF)
    with engine.begin() as conn:
        exact = queries.load_observations(conn, *window, 5, WHOLE_BANK)
        above = queries.load_observations(conn, *window, 6, WHOLE_BANK)
        below = queries.load_observations(conn, *window, 4, WHOLE_BANK)
    assert (exact.n_obs, exact.capped, exact.attempts_in_window) == (5, False, 6)
    assert (above.n_obs, above.capped) == (5, False)
    assert (below.n_obs, below.capped) == (4, True)


def test_a_3pl_run_writes_lower_asymptotes_with_standard_errors(engine):
    truth = simulate(6000, 60, 40, seed=33, guessing=0.2)
    with engine.begin() as conn:
        load_simulation(conn, truth, anchors=range(0, 60, 6))
    summary = calibrate(engine, SETTINGS.with_overrides(model="3PL"), REQUEST)
    assert summary.status == "succeeded" and summary.model == "3PL"
    params = [p[0] for p in rows(engine, "SELECT params FROM mirt_item_params")]
    assert len(params) == 60 and all(0 < p["c"] < 0.5 and p["c_se"] > 0 for p in params)
    assert abs(np.mean([p["c"] for p in params]) - 0.2) < 0.04
    assert summary.fit["n_parameters"] == 180 and "items_at_bounds" in summary.fit


def test_fipc_and_stocking_lord_agree_within_sampling_error_on_data_without_drift(engine):
    truth = simulate(6000, 150, 40, seed=41)
    with engine.begin() as conn:
        load_simulation(conn, truth, anchors=range(0, 150, 6), old_scale=(1.2, 0.35))
    sl = calibrate(engine, SETTINGS, REQUEST)
    fixed = calibrate(engine, SETTINGS.with_overrides(linking_method="fipc"), REQUEST)
    assert sl.status == fixed.status == "succeeded"
    a, b = sl.linking_constants, fixed.linking_constants
    assert b["method"] == "fipc" and b["n_anchors"] == a["n_anchors"] == 25
    assert abs(a["slope"] - b["slope"]) < 3 * a["slope_se"] and abs(a["intercept"] - b["intercept"]) < 3 * a["intercept_se"]
    assert (b["slope"], b["intercept"]) == pytest.approx((1.2, 0.35), abs=0.06)
    by_run = {}
    for run_id, item_id, params in rows(engine, "SELECT run_id::text, item_id, params FROM mirt_item_params_history"):
        by_run.setdefault(run_id, {})[item_id] = params
    free = [q for q in by_run[sl.run_id] if (q - FIRST_QUESTION_ID) % 6]
    gap = np.array([by_run[sl.run_id][q]["b"] - by_run[fixed.run_id][q]["b"] for q in free])
    se = np.array([by_run[sl.run_id][q]["b_se"] for q in free])
    assert np.mean(np.abs(gap) < 2 * se) > 0.95  # the two put the new items within sampling error of each other
    # FIPC holds the anchors at their reference values.
    anchor = FIRST_QUESTION_ID
    on_old = truth.params.on_scale(1.2, 0.35)
    assert by_run[fixed.run_id][anchor]["b"] == pytest.approx(on_old.b[0], abs=1e-9)
    # Its standard errors are those of the FIPC model: none for the fixed anchors; the new items' close
    # to the free calibration's (the anchors' information is lost to them, the population's gained);
    # the constants' from the population's mean and SD.
    anchors = [q for q in by_run[fixed.run_id] if (q - FIRST_QUESTION_ID) % 6 == 0]
    assert all(by_run[fixed.run_id][q]["b_se"] is None and by_run[fixed.run_id][q]["a_se"] is None for q in anchors)
    ratio = np.array([by_run[fixed.run_id][q]["b_se"] for q in free]) / se
    assert 0.8 < np.median(ratio) < 1.25
    assert 0 < b["slope_se"] < 0.1 and 0 < b["intercept_se"] < 0.1
    assert "fixed-parameter calibration" in fixed.fit["standard_errors"]



def test_mirt_standard_errors_approximate_is_chosen_recorded_and_close_to_the_exact(engine):
    truth = simulate(4000, 200, 30, seed=52)
    with engine.begin() as conn:
        load_simulation(conn, truth, anchors=range(0, 200, 10))
    exact = calibrate(engine, SETTINGS, REQUEST)
    approximate = calibrate(engine, SETTINGS.with_overrides(standard_errors="approximate"), REQUEST)
    assert exact.status == approximate.status == "succeeded"
    assert exact.fit["standard_errors"] == "observed information (Louis), full"
    assert approximate.fit["standard_errors"].startswith("observed information (Louis), item blocks")
    shown = dict(rows(engine, "SELECT run_id::text, model_spec->'settings' FROM mirt_fit_meta"))
    assert shown[approximate.run_id]["standard_errors"] == "approximate"
    assert "standard_errors" not in shown[exact.run_id]  # the default is not shown, as before the setting
    by_run = {}
    for run_id, item_id, params in rows(engine, "SELECT run_id::text, item_id, params FROM mirt_item_params_history"):
        by_run.setdefault(run_id, {})[item_id] = params
    same = sorted(by_run[exact.run_id])
    assert len(same) == 200
    for key in ("a_se", "b_se"):
        ratio = np.array([by_run[approximate.run_id][q][key] / by_run[exact.run_id][q][key] for q in same])
        assert np.all(np.abs(ratio - 1) < 0.03), (key, np.abs(ratio - 1).max())
        assert np.abs(ratio - 1).max() > 0  # two methods, not one run's numbers twice
    # The estimates themselves do not depend on the method.
    assert all(by_run[approximate.run_id][q]["b"] == pytest.approx(by_run[exact.run_id][q]["b"], abs=1e-9) for q in same)


def load_answers(conn, responses, days: int, seed: int = 0) -> None:
    """Platform tables holding ``responses``, completed at random times over the ``days`` before AS_OF."""
    platform.create_platform_tables(conn)
    platform.insert_questions(conn, question_ids(responses.n_items), [{"tags": []}] * responses.n_items)
    seconds = np.random.default_rng(seed).integers(60, days * 86400, responses.n_obs).astype("timedelta64[s]")
    platform.insert_attempts(conn, np.array([f"u{i:05d}" for i in range(responses.n_persons)])[responses.person_index()],
                             question_ids(responses.n_items)[responses.item], responses.correct.astype(bool),
                             platform.as_datetime64(AS_OF) - seconds)


@pytest.mark.parametrize("data", [lsat6, lsat7], ids=["LSAT6", "LSAT7"])
def test_the_default_settings_reproduce_the_published_estimates_of_the_lsat_data(engine, data):
    with engine.begin() as conn:
        load_answers(conn, dense_to_responses(data.response_matrix()), days=10)

    summary = calibrate(engine, SETTINGS, REQUEST)

    assert summary.status == "succeeded", summary.error
    assert summary.fit["item_priors"] == {"setting": "auto", "used": False,
                                          "why": "auto: the median item has 1000 answers, at least 500"}
    items = [r[0] for r in rows(engine, "SELECT params FROM mirt_item_params ORDER BY item_id")]
    published = ((lsat6.PUBLISHED_2PL_A, lsat6.PUBLISHED_2PL_B, lsat6.PUBLISHED_2PL_LOGLIK) if data is lsat6
                 else (lsat7.MIRT_2PL_A, lsat7.MIRT_2PL_B, lsat7.MIRT_2PL_LOGLIK))
    np.testing.assert_allclose([p["a"] for p in items], published[0], atol=3e-3)
    np.testing.assert_allclose([p["b"] for p in items], published[1], atol=3e-3)
    assert summary.fit["loglik"] == pytest.approx(published[2], abs=0.01)


@pytest.mark.parametrize("priors", ["auto", "false"])
def test_thin_data_from_the_default_cap_on_a_big_bank_writes_only_usable_numbers(engine, priors):
    # 30 answers per student over 50 days; the cap keeps the newest third: about 10 answers per
    # student and 100 per item, what MIRT_MAX_OBS=500000 leaves of a busy platform's big bank.
    truth = simulate(10_000, 1_000, 30, seed=23)
    with engine.begin() as conn:
        load_answers(conn, truth.responses, days=50, seed=23)
    settings = Settings.load({"MIRT_MAX_OBS": "100000", "MIRT_ITEM_PRIORS": priors})

    summary = calibrate(engine, settings, REQUEST)

    assert summary.status == "succeeded", summary.error
    assert summary.counts["observations"] == 100_000
    assert summary.fit["item_priors"]["used"] is (priors == "auto")
    # (Plain ML needs more passes than the priors: its items near a bound converge slowly, and are held
    # back only when their own path heads onto it.)
    assert summary.fit["converged"] and summary.fit["iterations"] <= 200
    items = rows(engine, "SELECT item_id, params FROM mirt_item_params ORDER BY item_id")
    written = np.array([r[0] for r in items]) - FIRST_QUESTION_ID
    params = {key: np.array([r[1][key] if r[1][key] is not None else np.nan for r in items], dtype=float)
              for key in ("a", "b", "a_se", "b_se")}
    # Every written parameter is finite, inside the bounds, and has standard errors.
    assert all(np.isfinite(v).all() for v in params.values())
    assert (params["a"] > 0.02).all() and (params["a"] < 10).all() and (np.abs(params["b"]) <= 6).all()
    assert (params["a_se"] > 0).all() and (params["b_se"] > 0).all()
    # What was held back is listed with its reason, and not written.
    (spec,) = rows(engine, "SELECT model_spec FROM mirt_fit_meta")[0]
    held_back = {int(k) for k in spec["held_back_items"]}
    assert held_back.isdisjoint(set(written + FIRST_QUESTION_ID))
    assert len(written) + len(spec["excluded_items"]) == summary.counts["items"]
    error_a = params["a"] - truth.params.a[written]
    error_b = params["b"] - truth.params.b[written]
    if priors == "auto":  # the default: priors on thin data, no item lost
        assert not held_back
        assert np.sqrt(np.mean(error_a**2)) < 0.35 and np.sqrt(np.mean(error_b**2)) < 0.35
    else:  # plain ML: the items it cannot pin down are held back, the rest written
        assert held_back and all(reason.startswith("not ") for reason in spec["held_back_items"].values())


def test_a_short_window_with_two_answers_per_student_calibrates_without_numerical_trouble(engine, caplog):
    # What --lookback-days 1 gives on a busy platform: many students, about two answers each.
    truth = simulate(20_000, 300, 2, seed=29)
    with engine.begin() as conn:
        load_answers(conn, truth.responses, days=1, seed=29)

    summary = calibrate(engine, SETTINGS, REQUEST)

    assert summary.status == "succeeded", summary.error
    assert summary.fit["item_priors"]["used"] and summary.fit["converged"]
    items = [r[0] for r in rows(engine, "SELECT params FROM mirt_item_params")]
    assert len(items) == summary.counts["items_estimated"] > 250
    assert all(p["a_se"] is not None and p["b_se"] is not None for p in items)
    assert not [r for r in caplog.records if "Warning" in r.getMessage() or "Error" in r.getMessage()]
