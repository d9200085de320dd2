"""``export``: a scope's bank written as CSV and JSON, read back against the database, and run as an adaptive test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from consumer.__main__ import main
from consumer.export import BANK, ITEM_PARAMS, export_bank, read_csv, read_json, to_csv, to_json
from consumer.irt.simulate import simulate
from consumer.run import calibrate
from consumer.scope import WHOLE_BANK
from consumer.settings import Settings

from tests.support.bank_data import N_NEW, N_OPERATIONAL, SETTINGS, adopt_base_week, drifted, put_week, week_request
from tests.support.database import rows
from tests.support.platform_data import FIRST_QUESTION_ID, load_simulation
from tests.support.runs import REQUEST


def exported(engine, database_url, monkeypatch, capsys, fmt: str, tmp_path=None):
    """What ``python -m consumer export --format FMT`` prints (or writes to -o) on the test database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    args = ["export", "--format", fmt] + (["-o", str(tmp_path / f"bank.{fmt}")] if tmp_path else [])
    assert main(args) == 0
    text = (tmp_path / f"bank.{fmt}").read_text() if tmp_path else capsys.readouterr().out
    return (read_csv if fmt == "csv" else read_json)(text)


def assert_items_are_the_rows(items: list[dict], db_rows) -> None:
    """Each exported item against its database row: (item id, status, params, run id, answers)."""
    assert [i["item_id"] for i in items] == [r[0] for r in db_rows]
    for item, (item_id, status, params, run_id, answers) in zip(items, db_rows):
        assert (item["status"], item["run_id"], item["n_responses"]) == (status, run_id, answers), item_id
        for key in ("a", "b", "c", "a_se", "b_se"):
            assert item[key] == pytest.approx(params.get(key, 0.0 if key == "c" else None), rel=1e-12), (item_id, key)


def test_without_a_bank_the_export_is_the_current_parameters_in_both_formats(engine, database_url, monkeypatch,
                                                                             capsys, tmp_path):
    data = simulate(2000, 60, 20, seed=31)
    with engine.begin() as conn:
        load_simulation(conn, data, anchors=range(0, 60, 5), old_scale=(1.2, 0.3))
    summary = calibrate(engine, Settings.load({}), REQUEST)
    assert summary.status == "succeeded", summary.error
    db_rows = rows(engine, "SELECT item_id, 'operational', params, run_id::text, (params->>'n_responses')::bigint "
                           "FROM mirt_item_params ORDER BY item_id")

    from_csv = exported(engine, database_url, monkeypatch, capsys, "csv")
    from_json = exported(engine, database_url, monkeypatch, capsys, "json", tmp_path)

    for bank in (from_csv, from_json):
        assert_items_are_the_rows(bank.items, db_rows)
        meta = bank.meta
        assert meta["source"] == ITEM_PARAMS and meta["scale"]["kind"] == "linked"
        assert "no bank has been adopted" in meta["scale"]["meaning"]
        assert meta["n_items"] == meta["operational"] == 60 and meta["pretest"] == 0
        assert meta["model"] == "2PL" and "D = 1" in meta["metric"]
        run = meta["runs"][summary.run_id]
        assert run["linking_constants"]["slope"] == pytest.approx(summary.linking_constants["slope"])
        assert all(i["fitted_at"] == run["fitted_at"] for i in bank.items)
    assert from_csv.items == from_json.items


def test_nothing_calibrated_is_nothing_to_export(engine, database_url, monkeypatch, capsys):
    data = simulate(200, 60, 20, seed=31)
    with engine.begin() as conn:
        load_simulation(conn, data)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["export", "--format", "csv"]) == 1
    assert capsys.readouterr().out == ""


@pytest.fixture
def bank_with_pretest_items(engine):
    """A bank adopted from a base week, then a weekly run that entered N_NEW pretest items; the truth's items."""
    _, params = adopt_base_week(engine)
    with engine.begin() as conn:
        put_week(conn, 1, drifted(params), 0.3, 1.1, n_items=N_OPERATIONAL + N_NEW)
    week = calibrate(engine, SETTINGS, week_request(1))
    assert week.status == "succeeded", week.error
    return params


def test_a_bank_exports_its_operational_and_pretest_items_and_reads_back_as_the_database_holds_them(
        engine, bank_with_pretest_items):
    db_rows = rows(engine, "SELECT b.item_id, b.status, b.params, b.run_id::text, (p.params->>'n_responses')::bigint "
                           "FROM mirt_bank_item b LEFT JOIN mirt_item_params p USING (item_id) "
                           "WHERE b.status <> 'suspended' ORDER BY b.item_id")
    bank = export_bank(engine, WHOLE_BANK)

    assert bank.meta["source"] == BANK and bank.meta["scale"]["kind"] == "bank"
    assert bank.meta["scale"]["adopted"]["by"] == "tester"
    assert bank.meta["pretest"] == N_NEW and bank.meta["operational"] + bank.meta["suspended_left_out"] == N_OPERATIONAL
    for read in (read_csv(to_csv(bank)), read_json(to_json(bank))):
        assert_items_are_the_rows(read.items, db_rows)
        assert read.meta["scale"] == json.loads(json.dumps(bank.meta["scale"]))
    pretest = [i for i in bank.items if i["status"] == "pretest"]
    assert {i["item_id"] for i in pretest} == set(range(FIRST_QUESTION_ID + N_OPERATIONAL,
                                                       FIRST_QUESTION_ID + N_OPERATIONAL + N_NEW))


def test_catsim_runs_an_adaptive_test_on_the_exported_bank_and_finds_the_examinees_theta(
        engine, bank_with_pretest_items):
    """catsim (max-information selection, ML estimation) on the bank as exported; examinees answer by the truth.

    The bank's scale is the base week's population N(0, 1), the truth's own
    scale, so a true theta needs no conversion. With 80 items of a ~ 1, a
    25-item test chosen by information gives an SE of about 0.35 to 0.45
    (information 5 to 8, a^2/4 per item near theta at most): the estimates'
    RMSE must be of that size (plus the bank's own estimation error), and
    about 95% must lie within two of their own standard errors (at least 85%
    asked, for 100 examinees).
    """
    from catsim.estimation.numerical import NumericalSearchEstimator
    from catsim.irt import icc, see
    from catsim.item_bank import ItemBank
    from catsim.initialization.initialization import FixedPointInitializer
    from catsim.selection.selection import MaxInfoSelector
    from catsim.stopping.stopping import TestLengthStopper

    params = bank_with_pretest_items
    bank = read_json(to_json(export_bank(engine, WHOLE_BANK)))
    operational = [i for i in bank.items if i["status"] == "operational"]
    matrix = np.array([[i["a"], i["b"], i["c"], 1.0] for i in operational])
    item_bank = ItemBank(matrix)
    positions = np.array([i["item_id"] - FIRST_QUESTION_ID for i in operational])  # into the truth's items
    rng = np.random.default_rng(7)
    selector, estimator, stopper = MaxInfoSelector(), NumericalSearchEstimator(), TestLengthStopper(max_items=25)
    true_theta = rng.uniform(-2.0, 2.0, 100)
    estimates, errors, closeness = [], [], []
    for theta in true_theta:
        estimate, given, answers = FixedPointInitializer(0.0).initialize(), [], []
        while not stopper.stop(administered_items=matrix[given], theta=estimate):
            k = selector.select(item_bank=item_bank, administered_items=given, est_theta=estimate)
            j = positions[k]
            answers.append(bool(rng.random() < icc(theta, params.a[j], params.b[j], params.c[j])))
            given.append(k)
            estimate = estimator.estimate(item_bank=item_bank, administered_items=given, response_vector=answers,
                                          est_theta=estimate)
        assert len(set(given)) == 25 and all(0 <= k < len(operational) for k in given)
        estimates.append(estimate)
        errors.append(see(estimate, matrix[given]))
        # Max information picked items near the examinee: closer in b than the bank's items on average.
        closeness.append(np.mean(np.abs(matrix[given, 1] - estimate)) < np.mean(np.abs(matrix[:, 1] - estimate)))
    estimates, errors = np.array(estimates), np.array(errors)
    assert np.median(errors) < 0.5
    assert np.sqrt(np.mean((estimates - true_theta) ** 2)) < 0.55
    assert np.mean(np.abs(estimates - true_theta) < 2 * errors) >= 0.85
    assert np.mean(closeness) > 0.9
