"""The tag-anchors command: tags and reference parameters added to the latest run's best-measured items."""

from __future__ import annotations

import json

import sqlalchemy as sa

from consumer.irt.simulate import simulate
from consumer.run import calibrate
from consumer.settings import Settings

from tests.support.cli import cli
from tests.support.platform_data import FIRST_QUESTION_ID, load_simulation
from tests.support.runs import REQUEST


def metas(engine) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT id, meta FROM question")).all())


def test_tag_anchors_adds_tags_and_reference_parameters_and_keeps_existing_ones(database_url):
    engine = sa.create_engine(database_url)
    from consumer.db.migrations import migrate
    migrate(engine)
    with engine.begin() as conn:
        load_simulation(conn, simulate(6000, 80, 40, seed=4), anchors=[0, 1, 2, 3, 4, 5])
        conn.execute(sa.text("UPDATE question SET meta = CAST(:m AS jsonb) WHERE id = :id"),
                     {"m": json.dumps({"tags": ["geometry"], "source": "book"}), "id": FIRST_QUESTION_ID + 10})
    assert calibrate(engine, Settings.load({}), REQUEST).status == "succeeded"
    before = metas(engine)

    dry = cli("tag-anchors", "--max-candidates", "10", "--json", "--dry-run", env={"DATABASE_URL": database_url})
    assert dry.returncode == 0, dry.stderr
    choice = json.loads(dry.stdout)
    assert len(choice["chosen"]) == 10 and choice["existing_anchors"] == 6 and choice["tagged"] == 0
    assert metas(engine) == before

    real = cli("tag-anchors", "--max-candidates", "10", "--json", env={"DATABASE_URL": database_url})
    result = json.loads(real.stdout)
    assert result["tagged"] == 10
    after = metas(engine)
    for row in result["chosen"]:
        meta = after[row["question_id"]]
        assert "anchor" in meta["tags"] and meta["irt"]["run_id"] == result["run_id"]
        assert meta["irt"]["b_se"] > 0 and meta["irt"]["model"] == "2PL"
        assert row["question_id"] - FIRST_QUESTION_ID not in range(6)  # existing anchors are not re-picked
    for position in range(6):  # existing anchors and their reference parameters are untouched
        assert after[FIRST_QUESTION_ID + position] == before[FIRST_QUESTION_ID + position]
    if FIRST_QUESTION_ID + 10 in {r["question_id"] for r in result["chosen"]}:
        assert after[FIRST_QUESTION_ID + 10]["tags"] == ["geometry", "anchor"]
        assert after[FIRST_QUESTION_ID + 10]["source"] == "book"
    engine.dispose()


def test_tag_anchors_without_a_calibration_says_what_to_do(database_url):
    engine = sa.create_engine(database_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE question (id bigint PRIMARY KEY, meta jsonb)")
    engine.dispose()
    result = cli("tag-anchors", env={"DATABASE_URL": database_url})
    assert result.returncode == 1
    assert "no succeeded calibration run to take anchors from" in result.stderr
