"""Everything the review page shows, assembled from a few reads (``db.review``: the SQL, read only).

A database without runs is not given the service's tables; a database
migrated before calibration scopes (no ``scope`` column) reads as the whole
bank. Item parameters and abilities come back as numpy arrays, so that a
bank of 20,000 items and 400,000 students costs a few arrays, not millions
of Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import sqlalchemy as sa

from ..db import review as reads
from ..errors import ServiceError
from ..irt.model import ItemParameters

#: Runs shown in the history of linking constants and ability distributions (this one included).
HISTORY_RUNS = 8
_ELSEWHERE = "a run of the demo is read with --demo"
_ITEM_FIELDS = ("a", "b", "c", "a_se", "b_se", "c_se", "n_responses", "rmsd")
_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class RunNotFound(ServiceError):
    """No run with that id."""


@dataclass(frozen=True)
class ItemResults:
    """One run's item parameters (linked scale) as its history holds them, one entry per item, sorted by question id.

    A dry run's are its estimates, recorded in the history only and not written as current parameters.
    """

    question_ids: np.ndarray
    values: dict[str, np.ndarray]  # _ITEM_FIELDS -> float array (NaN where not stored)

    @property
    def params(self) -> ItemParameters:
        return ItemParameters(self.values["a"], self.values["b"], np.nan_to_num(self.values["c"]))

    def __len__(self) -> int:
        return int(self.question_ids.size)


@dataclass(frozen=True)
class RunRecord:
    """One row of mirt_fit_meta."""

    run_id: str
    status: str
    request_id: str | None
    scope: str
    model_spec: dict
    fit_stats: dict
    summary: dict
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    fitted_at: datetime | None

    @property
    def dry_run(self) -> bool:
        return bool(self.model_spec.get("dry_run"))

    @property
    def constants(self) -> dict:
        return self.model_spec.get("linking_constants") or self.summary.get("linking_constants") or {}


@dataclass(frozen=True)
class AbilitySummary:
    """A run's ability distribution in a few numbers (linked scale)."""

    run_id: str
    fitted_at: datetime | None
    constants: dict
    model: str
    students: int
    mean: float
    sd: float
    quantiles: tuple[float, ...]  # at _QUANTILES


@dataclass(frozen=True)
class BankPopulation:
    """Where one weekly bank run put its window's students on the bank's scale."""

    run_id: str
    fitted_at: datetime | None
    mean: float
    sd: float
    mean_se: float
    sd_se: float


@dataclass(frozen=True)
class DriftEstimate:
    """One run's drift watch of one operational item: its free estimate on the bank's scale, against its bank value."""

    run_id: str
    fitted_at: datetime | None
    a: float
    b: float
    a_se: float
    b_se: float
    a_bank: float
    b_bank: float
    z_b: float
    z_a: float
    flagged: bool


@dataclass
class BankHistory:
    """What the bank's earlier runs tell about a bank run (scope with a bank); this run is the last of each list."""

    populations: list[BankPopulation] = field(default_factory=list)  # oldest first
    #: The drift watch of the items this run flagged or suspended, by question id, oldest first.
    drift: dict[int, list[DriftEstimate]] = field(default_factory=dict)
    #: (status, params) of those items in the bank now.
    items: dict[int, tuple[str, dict]] = field(default_factory=dict)


@dataclass
class Review:
    """What the review page of one run is made from."""

    run: RunRecord
    items: ItemResults
    theta: np.ndarray
    theta_se: np.ndarray
    previous: RunRecord | None = None
    previous_items: ItemResults | None = None
    #: The run before the previous one (its id and items): the previous run's own change is shown beside this one's.
    before_previous: str | None = None
    before_previous_items: ItemResults | None = None
    history: list[AbilitySummary] = field(default_factory=list)  # oldest first, this run last
    #: question.meta->'irt' of this run's anchors as the platform holds it now (empty without a question table).
    anchor_meta: dict[int, dict] = field(default_factory=dict)
    #: For a run of a scope with a bank (its fit_stats hold ``bank``): the bank's recent runs; else None.
    bank: BankHistory | None = None


def find_run(engine: sa.Engine, run_id: str | None = None, *, scope: str | None = None) -> str:
    """The full id of the run ``run_id`` names (a whole id, or an unambiguous start of one), or of the latest run
    (of ``scope`` when given) when ``run_id`` is None. ``RunNotFound`` says why none or which ones."""
    from ..db.engine import describe
    with engine.connect() as conn:
        if not reads.has_table(conn, "mirt_fit_meta"):
            raise RunNotFound(f"no calibration run {run_id + ' ' if run_id else ''}in {describe(engine)}: it has no "
                              "mirt_fit_meta table, so no runs at all", f"check DATABASE_URL{_elsewhere(engine)}")
        if run_id is None:
            found = reads.latest_run_id(conn, scope, reads.runs_have_scopes(conn))
            if found is None:
                raise RunNotFound(f"no calibration run{'' if scope is None else ' of that scope'} in "
                                  f"{describe(engine)} yet", f"run one: python -m consumer calibrate{_here(engine)}{_elsewhere(engine)}")
            return found
        matches = reads.run_ids_starting(conn, run_id.strip())
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFound(f"no calibration run {run_id} in {describe(engine)}",
                          f"list the runs with: python -m consumer runs{_here(engine)}{_elsewhere(engine)}")
    raise RunNotFound(f"{run_id!r} starts the ids of {len(matches)}{'+' if len(matches) >= 6 else ''} runs "
                      f"({', '.join(m[:13] + '…' for m in matches[:5])})", "give more of the run id")


def _here(engine: sa.Engine) -> str:
    """' --demo' in the demo's database: the commands a hint names must read the same database."""
    from ..db.embedded import DEMO_DATABASE
    return " --demo" if engine.url.database == DEMO_DATABASE else ""


def _elsewhere(engine: sa.Engine) -> str:
    """The hint that the demo's runs are read with --demo, unless this is the demo's database."""
    from ..db.embedded import DEMO_DATABASE
    return "" if engine.url.database == DEMO_DATABASE else f"; {_ELSEWHERE}"


def load_review(engine: sa.Engine, run_id: str, history_runs: int = HISTORY_RUNS) -> Review:
    """The run, its results, the previous run of its scope and the last runs' history."""
    from ..db.engine import describe
    with engine.connect() as conn:
        if not reads.has_table(conn, "mirt_fit_meta"):
            raise RunNotFound(f"no calibration run {run_id} in {describe(engine)}: it has no mirt_fit_meta table, "
                              "so no runs at all", f"check DATABASE_URL{_elsewhere(engine)}")
        scoped = reads.runs_have_scopes(conn)
        run = _run(conn, run_id, scoped)
        if run is None:
            raise RunNotFound(f"no calibration run {run_id} in {describe(engine)}",
                              f"list the runs with: python -m consumer runs{_here(engine)}{_elsewhere(engine)}")
        review = Review(run, _items(conn, run.run_id), *_abilities(conn, run.run_id))
        earlier = reads.earlier_run_ids(conn, run.run_id, run.scope, scoped, history_runs)
        if earlier:
            review.previous = _run(conn, earlier[0], scoped)
            review.previous_items = _items(conn, earlier[0])
        if len(earlier) > 1:
            review.before_previous, review.before_previous_items = earlier[1], _items(conn, earlier[1])
        # A dry run's estimates sit in the history too (marked dry): it is shown beside the runs before it.
        shown = list(reversed(earlier[:history_runs - 1])) + ([run.run_id] if len(review.items) else [])
        review.history = _ability_history(conn, shown)
        review.anchor_meta = reads.anchor_meta(conn, [int(x["question_id"]) for x in
                                                      run.model_spec.get("anchor_table") or []])
        if isinstance(run.fit_stats.get("bank"), dict) and scoped:
            review.bank = _bank_history(conn, run, history_runs)
    return review


def _bank_history(conn: sa.Connection, run: RunRecord, runs: int) -> BankHistory:
    """The population over the scope's last weekly bank runs, and the drift watch of the items this run
    flagged or suspended, each up to this run."""
    bank = run.fit_stats["bank"]
    until = run.fitted_at or run.finished_at or run.started_at
    if until is None:
        return BankHistory()
    populations = [BankPopulation(r[0], r[1], *(_number((r[2] or {}).get(k)) for k in ("mean", "sd", "mean_se",
                                                                                         "sd_se")))
                   for r in reads.bank_populations(conn, run.scope, until, runs)]
    watched = sorted({int(q) for q in (bank.get("flagged") or {})} | {int(q) for q in (bank.get("suspended") or {})})
    drift: dict[int, list[DriftEstimate]] = {}
    for r in reads.bank_drift_rows(conn, run.scope, watched, until, runs):
        drift.setdefault(int(r[0]), []).append(DriftEstimate(r[1], r[2], *(_number(v) for v in r[3:11]), bool(r[11])))
    return BankHistory(populations, drift, reads.bank_item_params(conn, run.scope, watched))


def _run(conn: sa.Connection, run_id: str, scoped: bool) -> RunRecord | None:
    row = reads.run_row(conn, run_id, scoped)
    if row is None:
        return None
    return RunRecord(row[0], row[1], row[2], row[3], row[4] or {}, row[5] or {}, row[6] or {}, row[7], *row[8:])


def _items(conn: sa.Connection, run_id: str) -> ItemResults:
    rows = reads.item_rows(conn, run_id, _ITEM_FIELDS)
    table = np.array([[np.nan if v is None else v for v in row[1:]] for row in rows], float).reshape(
        len(rows), len(_ITEM_FIELDS))
    return ItemResults(np.array([row[0] for row in rows], np.int64),
                       {name: table[:, k] for k, name in enumerate(_ITEM_FIELDS)})


def _abilities(conn: sa.Connection, run_id: str) -> tuple[np.ndarray, np.ndarray]:
    return tuple(np.frombuffer(blob, dtype=">f8").astype(float) for blob in reads.ability_blobs(conn, run_id))


def _ability_history(conn: sa.Connection, run_ids: list[str]) -> list[AbilitySummary]:
    return [AbilitySummary(r[0], r[1], r[2] or {}, r[3] or "", int(r[4]), _number(r[5]), _number(r[6]),
                           tuple(_number(v) for v in (r[7] or [None] * len(_QUANTILES))))
            for r in reads.ability_summaries(conn, run_ids, _QUANTILES)]


def _number(value) -> float:
    return float("nan") if value is None else float(value)
