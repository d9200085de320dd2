"""Steps 1 and 2 of a run: the window's observations, and the scope's anchors."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import anchors as anchor_io
from ..db import platform, queries
from ..db.cancel import cancelled_when
from ..db.connection import opened
from ..db.queries import Observations
from .context import RunContext, id_list


@dataclass(frozen=True)
class Anchors:
    """The scope's valid anchors, and the tagged ones skipped (question id -> why)."""

    valid: list[anchor_io.Anchor]
    skipped: dict[int, str] = field(default_factory=dict)


def load_observations(run: RunContext) -> Observations:
    """The first answers of each student to each question of the scope inside the window, at most MIRT_MAX_OBS.

    A shutdown while the load's statement runs cancels it (``db.cancel``): the run is abandoned within the grace.
    """
    s = run.summary
    with run.step("load") as span, opened(run.engine, transaction=True) as conn, \
            cancelled_when(conn, run.should_stop, stopped=run.abandoned):
        platform.check_platform_schema(conn)
        group_column = run.settings.dif_group_column
        if group_column:
            platform.check_group_column(conn, group_column)
        time_column = run.settings.response_time_column
        if time_column:
            platform.check_response_time_column(conn, time_column)
        observations = queries.load_observations(conn, run.since, run.until, run.settings.max_obs, run.scope,
                                                 group_column=group_column,
                                                 response_time_column=time_column)
        span.set_attributes({"observations": observations.n_obs, "users": observations.responses.n_persons,
                             "items": int(observations.question_ids.size)})
    s.counts.update(observations=observations.n_obs, users=observations.responses.n_persons,
                    items=int(observations.question_ids.size))
    s.window.update(first_at=observations.first_at.isoformat() if observations.first_at else None,
                    last_at=observations.last_at.isoformat() if observations.last_at else None)
    s.counts["attempts_in_window"] = observations.attempts_in_window
    capped = (f" (capped at MIRT_MAX_OBS={run.settings.max_obs}: the most recent first answers kept)"
              if observations.capped else "")
    run.log.info("loaded %d observations%s from %d users on %d items (first answers of %d attempts), "
                 "completed %s to %s, in %.2fs", observations.n_obs, capped, s.counts["users"], s.counts["items"],
                 observations.attempts_in_window, s.window["first_at"] or "-", s.window["last_at"] or "-",
                 s.durations["load"])
    return observations


def load_anchors(run: RunContext) -> Anchors:
    """The scope's anchors: questions tagged "anchor" with valid reference parameters in meta.irt."""
    with run.step("anchors") as span, opened(run.engine) as conn:
        valid, skipped = anchor_io.parse_anchors(queries.load_anchor_rows(conn, run.scope))
        span.set_attributes({"anchors": len(valid), "anchors_skipped": len(skipped)})
    for question_id, reason in skipped.items():
        run.warn("anchor question %d skipped: %s; fix its meta.irt or remove its anchor tag", question_id, reason)
    run.summary.counts["anchors_tagged"] = len(valid) + len(skipped)
    run.summary.counts["anchors_skipped"] = {str(k): v for k, v in skipped.items()}
    if not valid:
        run.warn("no anchors found (questions tagged \"anchor\" with parameters in meta.irt): the run goes on "
                 "unlinked (slope 1, intercept 0) and this calibration defines the scale")
    else:
        run.log.info("loaded %d anchors: %s", len(valid), id_list([x.question_id for x in valid]))
    return Anchors(valid, skipped)
