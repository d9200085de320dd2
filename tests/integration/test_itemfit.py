"""RMSD item fit in a run: the misfitting item is flagged and every item's RMSD is stored."""

import sqlalchemy as sa

from consumer.run import calibrate
from consumer.settings import Settings

from tests.support.misfit import with_a_misfitting_item
from tests.support.platform_data import FIRST_QUESTION_ID, load_simulation
from tests.support.runs import REQUEST


def test_runs_flag_misfitting_items_and_store_every_items_rmsd(engine):
    truth, responses = with_a_misfitting_item()
    with engine.begin() as conn:
        load_simulation(conn, type(truth)(responses, truth.params, truth.theta))
    summary = calibrate(engine, Settings.load({}), REQUEST)
    assert summary.status == "succeeded"
    assert list(summary.counts["misfitting_items"]) == [str(FIRST_QUESTION_ID + 7)]
    assert any("items misfit" in w for w in summary.warnings)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT item_id, (params->>'rmsd')::float8 FROM mirt_item_params")).all())
    assert stored[FIRST_QUESTION_ID + 7] > 0.12 and len(stored) == 60
