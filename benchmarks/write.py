"""The run's write alone, at scale: 2M abilities and 20k items into tables that already hold earlier runs.

A database of its own on the tests' server (``mirt_bench_write``, kept for
the next run; ``--drop`` drops it after) holds the service's tables,
migrated, with ``--runs-before`` earlier runs already written by SQL: every
student's current ability and history row, every item's. Then the write of
one more run, as ``steps.write.write`` does it (one transaction: the fence,
item parameters, abilities, the run's record), timed statement by statement
(SQLAlchemy's cursor events; the COPY is the rest of each call), and its
commit. The upsert rewrites every current row, as a weekly run does.

    python benchmarks/write.py --students 400000            # the 20M run's write
    python benchmarks/write.py --students 2000000 --repeat 2  # the 100M run's (the issue's goal: 20 s)

Figures on a shared machine are upper bounds: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATABASE = "mirt_bench_write"
FIRST_QUESTION_ID = 100_000


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def prepare(admin, students: int, items: int, runs_before: int):
    """The database with ``runs_before`` earlier runs of ``students`` and ``items`` (made again if different)."""
    import sqlalchemy as sa
    from consumer.db.migrations import migrate
    with admin.connect() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": DATABASE}).scalar()
        if not exists:
            conn.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
    engine = sa.create_engine(admin.url.set(database=DATABASE))
    migrate(engine)
    shape = f"{students}/{items}/{runs_before}"
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_made (shape text)")
        if conn.exec_driver_sql("SELECT shape FROM bench_made").scalar() == shape:
            return engine
        print(f"filling {shape} (students/items/earlier runs) ...", file=sys.stderr, flush=True)
        conn.exec_driver_sql("TRUNCATE mirt_ability, mirt_ability_history, mirt_item_params, "
                             "mirt_item_params_history, mirt_plausible_values, mirt_fit_meta CASCADE")
        conn.exec_driver_sql("DELETE FROM bench_made")
        for _ in range(runs_before):
            run_id = str(uuid.uuid4())
            conn.exec_driver_sql(f"INSERT INTO mirt_fit_meta (run_id, status) VALUES ('{run_id}', 'succeeded')")
            conn.exec_driver_sql(
                "INSERT INTO mirt_ability_history (run_id, user_id, theta, theta_se, method, fitted_at, scope) "
                f"SELECT '{run_id}', 's' || lpad(s::text, 7, '0'), random(), random(), 'EAP', now(), '' "
                f"FROM generate_series(0, {students} - 1) s")
            conn.exec_driver_sql(
                "INSERT INTO mirt_item_params_history (run_id, item_id, model, params, fitted_at, scope) "
                f"SELECT '{run_id}', {FIRST_QUESTION_ID} + j, '2PL', jsonb_build_object('a', random()), now(), '' "
                f"FROM generate_series(0, {items} - 1) j")
        conn.exec_driver_sql(
            "INSERT INTO mirt_ability (user_id, scope, theta, theta_se, method, run_id, fitted_at) "
            f"SELECT user_id, scope, theta, theta_se, method, run_id, fitted_at FROM mirt_ability_history "
            f"WHERE run_id = '{run_id}'")
        conn.exec_driver_sql(
            "INSERT INTO mirt_item_params (item_id, model, params, run_id, fitted_at, scope) "
            f"SELECT item_id, model, params, run_id, fitted_at, scope FROM mirt_item_params_history "
            f"WHERE run_id = '{run_id}'")
        conn.execute(sa.text("INSERT INTO bench_made VALUES (:s)"), {"s": shape})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    return engine


def write_once(engine, students: int, items: int) -> tuple[list[tuple[str, float]], float, float]:
    """One run's write as steps.write does it; (statement, seconds) in order, the whole call, the commit."""
    import sqlalchemy as sa
    from consumer.db import queries
    from consumer.scope import WHOLE_BANK
    rng = np.random.default_rng(7)
    run_id = uuid.uuid4()
    user_ids = [f"s{s:07d}" for s in range(students)]
    theta, se = rng.normal(size=students), rng.uniform(0.2, 0.5, size=students)
    se[::1000] = np.nan
    item_ids = np.arange(FIRST_QUESTION_ID, FIRST_QUESTION_ID + items)
    params = [{"a": float(a), "b": float(b), "c": 0.0, "a_se": 0.05, "b_se": 0.06, "n_responses": 5000,
               "rmsd": 0.01} for a, b in rng.normal(size=(items, 2))]
    with engine.begin() as conn:
        queries.insert_run(conn, run_id, "bench", WHOLE_BANK, {})
    timings: list[tuple[str, float]] = []
    started: dict[int, float] = {}

    def before(conn, cursor, statement, parameters, context, executemany):
        started[id(cursor)] = time.perf_counter()

    def after(conn, cursor, statement, parameters, context, executemany):
        timings.append((" ".join(statement.split())[:70], time.perf_counter() - started.pop(id(cursor))))

    sa.event.listen(engine, "before_cursor_execute", before)
    sa.event.listen(engine, "after_cursor_execute", after)
    fitted_at = datetime.now(timezone.utc)
    try:
        conn = engine.connect()
        whole = time.perf_counter()
        transaction = conn.begin()
        mark = time.perf_counter()
        queries.write_item_params(conn, run_id, fitted_at, "2PL", WHOLE_BANK, item_ids, params)
        timings.append(("write_item_params, whole call", time.perf_counter() - mark))
        mark = time.perf_counter()
        queries.write_abilities(conn, run_id, fitted_at, WHOLE_BANK, user_ids, theta, se)
        timings.append(("write_abilities, whole call", time.perf_counter() - mark))
        queries.finish_run(conn, run_id, "succeeded", {}, {}, {}, fitted_at=fitted_at)
        mark = time.perf_counter()
        transaction.commit()
        commit = time.perf_counter() - mark
        whole = time.perf_counter() - whole
        conn.close()
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
        sa.event.remove(engine, "after_cursor_execute", after)
    return timings, whole, commit


def main(argv: list[str] | None = None) -> None:
    import sqlalchemy as sa
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=400_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--runs-before", type=int, default=2, help="earlier runs already in the tables")
    parser.add_argument("--repeat", type=int, default=1, help="writes, one after the other")
    parser.add_argument("--drop", action="store_true", help="drop the database afterwards")
    args = parser.parse_args(argv)
    url = sa.make_url(os.environ.get("BENCH_SERVER_URL", "postgresql+pg8000://postgres@127.0.0.1:5432/postgres"))
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    engine = prepare(admin, args.students, args.items, args.runs_before)
    for repeat in range(args.repeat):
        load = load_average()
        timings, whole, commit = write_once(engine, args.students, args.items)
        print(f"\n### write {repeat + 1}: {args.students:,} abilities, {args.items:,} items "
              f"(load average {load} before, {load_average()} after)\n")
        print("| statement | seconds |\n|---|---:|")
        for statement, seconds in timings:
            print(f"| {statement} | {seconds:.2f} |")
        print(f"| commit | {commit:.2f} |\n| **whole write** | **{whole:.2f}** |", flush=True)
    engine.dispose()
    if args.drop:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin.dispose()


if __name__ == "__main__":
    main()
