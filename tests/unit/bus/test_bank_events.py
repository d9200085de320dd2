"""The completed event of a scope with a bank: its mode, the population, what it did, and nothing for others."""

from __future__ import annotations

import pytest

from consumer.bus.events import completed_body
from consumer.calibration import RunSummary


def summary(**fit) -> RunSummary:
    return RunSummary(run_id="0b3e4f5a-6c7d-4e8f-9a0b-1c2d3e4f5a6b", request_id="weekly", status="succeeded",
                      model="2PL", counts={"observations": 100, "users": 10, "items": 5, "items_estimated": 5,
                                           "anchors": 4, "items_promoted": 2, "items_flagged": 1,
                                           "items_suspended": 1, "items_held_back": 0},
                      linking_constants={"method": "fipc", "slope": 1.18, "intercept": 0.48, "n_anchors": 4,
                                         "slope_se": 0.02, "intercept_se": 0.03},
                      durations={"total": 1.5}, fit=fit)


def test_a_weekly_bank_run_tells_its_mode_the_population_and_the_banks_changes():
    body = completed_body(summary(bank={"mode": "weekly", "population": {"mean": 0.48, "sd": 1.18, "mean_se": 0.03,
                                                                         "sd_se": 0.02}}))

    assert body["mode"] == "bank"
    assert body["population"] == {"mean": 0.48, "sd": 1.18, "mean_se": 0.03, "sd_se": 0.02}
    assert body["bank"] == {"items_promoted": 2, "items_flagged": 1, "items_suspended": 1, "items_held_back": 0}
    assert body["linking_constants"]["method"] == "fipc"  # an old subscriber reads the constants as before


def test_a_recalibration_tells_its_impact_on_scores():
    body = completed_body(summary(bank={"mode": "recalibration", "impact": {"students_scored": 10,
                                                                             "moved_more_than_se": 3}}))
    assert body["mode"] == "recalibration"
    assert body["bank"] == {"students_moved_more_than_se": 3, "students_scored": 10}
    assert "population" not in body


def test_a_run_without_a_bank_publishes_the_event_it_always_did():
    body = completed_body(summary())
    assert not {"mode", "population", "bank"} & set(body)


def test_a_population_with_no_spread_is_refused_before_it_is_published():
    with pytest.raises(ValueError, match="calibration-completed"):
        completed_body(summary(bank={"mode": "weekly", "population": {"mean": 0.1, "sd": 0.0}}))
