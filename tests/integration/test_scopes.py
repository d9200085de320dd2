"""Calibration scopes against a real PostgreSQL: one scale per item bank, each run in its own scope.

The replicas that calibrate scopes in parallel are in tests/e2e/test_scopes.py.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from consumer import scope as scopes
from consumer.db import migrations, queries
from consumer.errors import ConfigError, RunLockBusy
from consumer.irt.simulate import simulate
from consumer.run import CalibrationRequest, calibrate
from consumer.settings import Settings

from tests.support.database import rows
from tests.support.platform_data import AS_OF, SCOPE_SCALES, load_scoped_simulation, load_simulation, simulated_banks

SCOPED = Settings.load({"MIRT_SCOPE_KEY": "subject"})


def request(scope=None, request_id=None):
    return CalibrationRequest(request_id=request_id, requested_by="tests", as_of=AS_OF, scope=scope)


# --- one run, one scope ------------------------------------------------------------------------

def test_a_run_calibrates_its_scope_only_links_on_its_own_anchors_and_keeps_abilities_per_scope(engine):
    with engine.begin() as conn:
        ids = load_scoped_simulation(conn, simulated_banks(["math", "english"]))

    math = calibrate(engine, SCOPED, request("math", "weekly/math"))
    english = calibrate(engine, SCOPED, request("english", "weekly/english"))

    for summary, name in ((math, "math"), (english, "english")):
        assert summary.status == "succeeded" and summary.scope == name
        # Each scope is linked onto its own old scale, through its own 12 anchors only.
        slope, intercept = SCOPE_SCALES[name]
        assert summary.linking_constants["n_anchors"] == 12
        assert summary.linking_constants["slope"] == pytest.approx(slope, abs=0.15)
        assert summary.linking_constants["intercept"] == pytest.approx(intercept, abs=0.15)
        assert summary.counts["observations"] == 24000 and summary.counts["items"] == 60
        written = {r[0] for r in rows(engine, "SELECT item_id FROM mirt_item_params WHERE scope = :s", s=name)}
        assert written == set(ids[name].tolist())
        ((stored_scope, spec),) = rows(engine, "SELECT scope, model_spec->'scope' FROM mirt_fit_meta "
                                               "WHERE run_id = CAST(:r AS uuid)", r=summary.run_id)
        assert stored_scope == name and spec == {"key": "subject", "value": name}
    # A student has one ability per scope: the English run did not overwrite the math abilities.
    per_student = rows(engine, "SELECT user_id, count(*), count(DISTINCT scope) FROM mirt_ability GROUP BY user_id")
    assert len(per_student) == 1200 and all(n == 2 and distinct == 2 for _, n, distinct in per_student)
    history = dict(rows(engine, "SELECT scope, count(*) FROM mirt_ability_history GROUP BY scope"))
    assert history == {"math": 1200, "english": 1200}


def test_tag_anchors_of_a_scope_come_from_its_own_latest_run_and_stay_in_it(engine, database_url):
    from consumer.anchors import AnchorCriteria
    from consumer.tagging import tag_anchors
    from tests.support.cli import cli
    with engine.begin() as conn:
        ids = load_scoped_simulation(conn, simulated_banks(["math", "english"]), anchor_every=12)  # five anchors each
    math = calibrate(engine, SCOPED, request("math"))
    calibrate(engine, SCOPED, request("english"))  # the latest run of all, but another scope's

    result = tag_anchors(engine, AnchorCriteria(max_candidates=10, min_responses=100), scopes.Scope("subject", "math"))

    assert result.run_id == math.run_id and result.existing_anchors == 5
    tagged = {row["question_id"] for row in result.chosen}
    assert len(tagged) == 10 and tagged <= set(ids["math"].tolist())
    # Scopes configured: tag-anchors must be told which one, in one line.
    refused = cli("tag-anchors", env={"DATABASE_URL": database_url, "MIRT_SCOPE_KEY": "subject"})
    assert refused.returncode == 2 and "a run calibrates one scope, and none was named" in refused.stderr


def test_the_same_request_id_is_answered_once_per_scope(engine):
    with engine.begin() as conn:
        load_scoped_simulation(conn, simulated_banks(["math", "english"], n_persons=300, n_items=25, per_person=10))
    first = calibrate(engine, SCOPED, request("math", "ad-hoc"), once_per_request=True)
    again = calibrate(engine, SCOPED, request("math", "ad-hoc"), once_per_request=True)
    other = calibrate(engine, SCOPED, request("english", "ad-hoc"), once_per_request=True)
    assert again.duplicate and again.run_id == first.run_id
    assert not other.duplicate and other.run_id != first.run_id and other.scope == "english"


def test_one_scopes_lock_does_not_hold_back_another_scope(engine):
    with engine.begin() as conn:
        load_scoped_simulation(conn, simulated_banks(["math", "english"], n_persons=300, n_items=25, per_person=10))
    with engine.connect() as holder:
        assert queries.try_run_lock(holder, scopes.Scope("subject", "math"))
        with pytest.raises(RunLockBusy, match="scope math"):
            calibrate(engine, SCOPED, request("math"))
        assert calibrate(engine, SCOPED, request("english")).status == "succeeded"
        queries.release_run_lock(holder, scopes.Scope("subject", "math"))
    assert calibrate(engine, SCOPED, request("math")).status == "succeeded"


def test_a_run_left_running_in_another_scope_is_not_taken_for_stale(engine):
    with engine.begin() as conn:
        load_scoped_simulation(conn, simulated_banks(["math", "english"], n_persons=300, n_items=25, per_person=10))
        conn.execute(sa.text("INSERT INTO mirt_fit_meta (run_id, status, scope) VALUES "
                             "('00000000-0000-0000-0000-000000000001', 'running', 'english'), "
                             "('00000000-0000-0000-0000-000000000002', 'running', 'math')"))
    assert calibrate(engine, SCOPED, request("math")).status == "succeeded"
    # The math run holds math's lock only: english's run may be going on elsewhere, and is left alone.
    assert dict(rows(engine, "SELECT scope, status FROM mirt_fit_meta WHERE run_id::text LIKE '00000000%'")) == \
        {"english": "running", "math": "abandoned"}


def test_a_whole_bank_run_left_running_from_before_scopes_is_abandoned_once_its_lock_is_free(engine):
    """Scopes configured, no whole-bank run comes again to clear it: a scope's run does, when nothing holds it."""
    with engine.begin() as conn:
        load_scoped_simulation(conn, simulated_banks(["math", "english"], n_persons=300, n_items=25, per_person=10))
        conn.execute(sa.text("INSERT INTO mirt_fit_meta (run_id, status, scope) VALUES "
                             "('00000000-0000-0000-0000-000000000003', 'running', '')"))
    whole_bank_run = "SELECT status, error FROM mirt_fit_meta WHERE run_id = '00000000-0000-0000-0000-000000000003'"
    with engine.connect() as older_replica:  # a replica without scopes, its whole-bank run still going on
        assert queries.try_run_lock(older_replica, scopes.WHOLE_BANK)
        assert calibrate(engine, SCOPED, request("math")).status == "succeeded"
        assert rows(engine, whole_bank_run)[0][0] == "running"
        queries.release_run_lock(older_replica, scopes.WHOLE_BANK)

    english = calibrate(engine, SCOPED, request("english"))

    assert english.status == "succeeded"
    ((status, error),) = rows(engine, whole_bank_run)
    assert status == "abandoned" and error == queries.STALE_RUN
    assert any("run 00000000-0000-0000-0000-000000000003 was left 'running'" in w for w in english.warnings)
    # Its check took the whole bank's lock for that transaction only: a whole-bank run may start now.
    with engine.connect() as conn:
        assert queries.try_run_lock(conn, scopes.WHOLE_BANK)
        queries.release_run_lock(conn, scopes.WHOLE_BANK)


def test_a_request_for_a_scope_no_question_has_is_rejected_with_the_banks_scopes_and_never_run(engine, database_url):
    from tests.support.publisher import RecordingPublisher
    from consumer.bus import events
    from consumer.bus.handler import Delivery, Outcome, RequestHandler
    with engine.begin() as conn:
        load_scoped_simulation(conn, simulated_banks(["math", "english"], n_persons=300, n_items=25, per_person=10))
    settings = Settings.load({"DATABASE_URL": database_url, "MIRT_SCOPE_KEY": "subject"})
    handler = RequestHandler(engine, settings, RecordingPublisher())

    outcome = handler.handle(Delivery("m-1", events.encode({"request_id": "typo", "scope": "nosuchscope"}), {}))

    assert outcome is Outcome.ACK
    (answer,) = handler.publisher.completed_events
    assert answer["rejected"] and answer["status"] == "failed" and answer["scope"] == "nosuchscope"
    assert answer["error"].startswith("scope 'nosuchscope' is not in the bank: no question has it under meta.subject "
                                      "(MIRT_SCOPE_KEY); the bank's scopes are english, math")
    assert rows(engine, "SELECT count(*) FROM mirt_fit_meta") == [(0,)]
    assert rows(engine, "SELECT message_id FROM mirt_rejected_message") == [("m-1",)]
    # A scope with questions but no answers in the window is a quiet week: run, and skipped.
    quiet = calibrate(engine, SCOPED, CalibrationRequest(as_of=AS_OF - timedelta(days=30), scope="math"))
    assert quiet.status == "skipped"


def test_calibrate_names_a_scope_no_question_has_and_exits_2_with_no_run_recorded(engine, database_url):
    from tests.support.cli import cli, error_lines
    with engine.begin() as conn:
        load_scoped_simulation(conn, simulated_banks(["math", "english"], n_persons=300, n_items=25, per_person=10))
    result = cli("calibrate", "--scope", "nosuchscope",
                 env={"DATABASE_URL": database_url, "MIRT_SCOPE_KEY": "subject", "LOG_FORMAT": "json"})
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = error_lines(result)
    assert "scope 'nosuchscope' is not in the bank" in line and "the bank's scopes are english, math" in line
    assert rows(engine, "SELECT count(*) FROM mirt_fit_meta") == [(0,)]


def test_a_scope_the_settings_do_not_make_is_a_clear_error():
    with pytest.raises(ConfigError, match="MIRT_SCOPE_KEY is not set"):
        scopes.resolve("", "math")
    with pytest.raises(ConfigError, match="a run calibrates one scope, and none was named"):
        scopes.resolve("subject", None)
    with pytest.raises(ConfigError, match="not a scope name"):
        scopes.resolve("subject", " math")
    # Every scope of a bank without scopes is the whole bank; with scopes, it is a fan-out.
    assert scopes.resolve("", "*") == scopes.WHOLE_BANK and scopes.resolve("", None) == scopes.WHOLE_BANK
    assert scopes.fans_out("subject", "*") and scopes.fans_out("subject", None)
    assert not scopes.fans_out("subject", "math") and not scopes.fans_out("", "*")
    # Derived request ids are stable, and fit the schema's 200 characters whatever the parent's length.
    assert scopes.child_request_id("weekly-48", "math") == "weekly-48/math"
    long = scopes.child_request_id("x" * 200, "math")
    assert long == scopes.child_request_id("x" * 200, "math") != scopes.child_request_id("x" * 200, "art")
    assert len(long) <= 200


def test_without_scopes_the_bank_is_one_scale_as_before(engine):
    with engine.begin() as conn:
        load_simulation(conn, simulate(1200, 60, 20, seed=5), anchors=range(0, 60, 5), old_scale=(1.2, 0.3),
                        days_before=1)
    summary = calibrate(engine, Settings.load({}), request("*"))
    assert summary.status == "succeeded" and summary.scope is None
    assert rows(engine, "SELECT scope, model_spec->'scope' FROM mirt_fit_meta") == [("", None)]
    assert rows(engine, "SELECT DISTINCT scope FROM mirt_ability") == [("",)]
    from consumer.bus.events import completed_body
    assert "scope" not in completed_body(summary) and "fan_out" not in completed_body(summary)


def test_the_migration_keeps_every_row_written_before_scopes(database_url, monkeypatch):
    """Rows written by the version before scopes (migrations up to 0003) stay, as the whole bank's."""
    engine = sa.create_engine(database_url)
    before = [m for m in migrations.available() if m.version < 4]
    monkeypatch.setattr(migrations, "available", lambda: before)
    migrations.migrate(engine)
    run_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO mirt_fit_meta (run_id, request_id, status, model_spec, fitted_at) "
                             "VALUES (:r, 'old', 'succeeded', '{\"model\": \"2PL\"}', now())"), {"r": run_id})
        conn.execute(sa.text("INSERT INTO mirt_item_params VALUES (42, '2PL', '{\"a\": 1.1, \"b\": 0.2}', :r, now())"),
                     {"r": run_id})
        conn.execute(sa.text("INSERT INTO mirt_item_params_history VALUES (:r, 42, '2PL', '{\"a\": 1.1}', now())"),
                     {"r": run_id})
        conn.execute(sa.text("INSERT INTO mirt_ability VALUES ('u00001', 0.5, 0.3, :r, now())"), {"r": run_id})
        conn.execute(sa.text("INSERT INTO mirt_ability_history VALUES (:r, 'u00001', 0.5, 0.3, now())"),
                     {"r": run_id})
        conn.execute(sa.text("INSERT INTO mirt_run_fence VALUES (7246113002, 3, :r, now())"), {"r": run_id})
    monkeypatch.undo()

    assert [m.version for m in migrations.migrate(engine)][0] == 4  # then the later ones (the bank: 5)

    assert rows(engine, "SELECT request_id, status, scope FROM mirt_fit_meta") == [("old", "succeeded", "")]
    assert rows(engine, "SELECT item_id, params->>'a', scope FROM mirt_item_params") == [(42, "1.1", "")]
    assert rows(engine, "SELECT count(*), min(scope) FROM mirt_item_params_history") == [(1, "")]
    assert rows(engine, "SELECT user_id, theta, scope FROM mirt_ability") == [("u00001", 0.5, "")]
    assert rows(engine, "SELECT count(*), min(scope) FROM mirt_ability_history") == [(1, "")]
    assert rows(engine, "SELECT token, scope FROM mirt_run_fence") == [(3, "")]
    # The whole bank's lock keeps its key: a replica of the old version and one of this agree on it.
    assert scopes.WHOLE_BANK.lock_key == 7246113002
    engine.dispose()


# --- many replicas, many scopes ----------------------------------------------------------------


def test_the_load_reads_a_scope_whose_name_and_key_hold_quotes_as_text(engine):
    # The load's COPY takes no parameters: the scope's key and name are written into it as literals.
    odd = "o'brien'; DROP TABLE attempt; --"
    with engine.begin() as conn:
        load_scoped_simulation(conn, simulated_banks(["math", "english"]), key="sub'ject")
        conn.execute(sa.text("UPDATE question SET meta = meta || jsonb_build_object('sub''ject', CAST(:odd AS text)) "
                             "WHERE meta->>'sub''ject' = 'english'"), {"odd": odd})
    with engine.begin() as conn:
        loaded = {name: queries.load_observations(conn, AS_OF - timedelta(days=30), AS_OF, 10**9,
                                                  scopes.Scope("sub'ject", name))
                  for name in ("math", odd)}
    assert rows(engine, "SELECT count(*) FROM attempt")[0][0] == 2 * 24000
    for name in ("math", odd):
        expected = rows(engine, "SELECT count(*) FROM attempt a JOIN question q ON q.id = a.question_id "
                                "WHERE q.meta->>'sub''ject' = :s", s=name)[0][0]
        assert loaded[name].n_obs == expected == 24000 and loaded[name].attempts_in_window == expected
    assert not set(loaded["math"].question_ids.tolist()) & set(loaded[odd].question_ids.tolist())
